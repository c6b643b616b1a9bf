"""The incident_notify runbook through the `runbook` CLI, as an operator runs it, against real local receivers:
a run whose every channel fails still exits 0 and says what was not delivered; a plan sends nothing; a run
delivers to each routed channel; no secret reaches the run folder (an empty route: test_notify_channels)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from receivers import Answer, closed_url, http_receiver, smtp_receiver
from runbook_helpers import CLI_HANG_GUARD, VENV_BIN, files_containing, runbook_cli, venv_path

pytestmark = pytest.mark.integration

SLACK_TOKEN = "slack-hook-token-Zq81Xy"
ROUTING_KEY = "pd-routing-key-5f2e9c01ab34"
DECLARE = ["-e", "incident_id=INC-7", "-e", "phase=declared", "-e", "severity=sev1", "-e", "title=Region a is down",
           "-e", "fields={status: investigating, affected: [api, sessions], eta: 30 minutes}"]


def inventory(tmp_path: Path, channels: dict[str, Any], **extra: Any) -> Path:
    path = tmp_path / "inventory" / "hosts.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"all": {"hosts": {"localhost": {"ansible_connection": "local"}}, "vars": dict({
        "dr_notify_channels": channels,
        "dr_notify_routing": {"sev1": {"channels": sorted(channels), "renotify_minutes": 15},
                              "sev4": {"channels": []}},
    }, **extra)}}
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_channel_failing_still_exits_0_and_says_so(tmp_path, home):
    with http_receiver() as slack, http_receiver() as pagerduty:
        slack.answer(Answer(403, b"invalid_token"))
        pagerduty.answer(Answer(500, b"internal error"))
        channels = {
            "slack": {"type": "slack", "webhook_url": slack.url(f"/services/{SLACK_TOKEN}")},
            "pagerduty": {"type": "pagerduty", "routing_key": ROUTING_KEY, "events_url": pagerduty.url("/v2/enqueue")},
            "status_page": {"type": "webhook", "url": closed_url("/hook")},
        }
        cli = runbook_cli("run", "incident_notify", "-i", str(inventory(tmp_path, channels, dr_notify_deadline=0)),
                          *DECLARE)

    assert cli.rc == 0, cli
    text = " ".join(cli.stdout.split())
    assert "outcome=NOT DELIVERED to pagerduty, slack, status_page (3 of 3 failed)" in text, cli
    assert "send_to=pagerduty,slack,status_page" in text
    assert "HTTP 403 Forbidden: invalid_token" in text and "HTTP 500" in text and "Connection refused" in text
    assert len(slack.requests) == 1 and len(pagerduty.requests) == 1  # deadline 0: one attempt each
    for secret in (SLACK_TOKEN, ROUTING_KEY):
        assert secret not in cli.stdout + cli.stderr
        assert not files_containing(home, secret.encode()), f"{secret} written under {home}"


def test_plan_sends_nothing_and_a_run_delivers_to_every_routed_channel(tmp_path, home):
    with http_receiver() as slack, smtp_receiver(tmp_path) as smtp:
        channels = {
            "slack": {"type": "slack", "webhook_url": slack.url(f"/services/{SLACK_TOKEN}")},
            "email": {"type": "email", "host": "127.0.0.1", "port": smtp.port, "username": smtp.username,
                      "password": smtp.password, "sender": "dr@erlmcp.example", "to": ["dev-notify@erlmcp.example"],
                      "ca_file": str(smtp.cert)},
        }
        inv = str(inventory(tmp_path, channels))
        plan = runbook_cli("plan", "incident_notify", "-i", inv, *DECLARE)
        assert plan.rc == 0, plan
        assert "would send to email, slack; nothing was sent" in " ".join(plan.stdout.split())
        assert not slack.requests and not smtp.mails

        run = runbook_cli("run", "incident_notify", "-i", inv, *DECLARE)
        assert run.rc == 0, run
        assert "outcome=delivered to email, slack" in " ".join(run.stdout.split()), run
        (post,) = slack.wait_requests(1)
        assert post.json["blocks"][0]["text"]["text"] == "INCIDENT DECLARED: Region a is down"
        (mail,) = smtp.wait_mails(1)
        assert mail.tls and mail.authenticated
        assert "Affected systems: api, sessions" in mail.message().get_content()

    for secret in (SLACK_TOKEN, smtp.password):
        assert not files_containing(home, secret.encode()), f"{secret} written under {home}"


def test_the_module_reads_its_defaults_from_the_inventory_and_never_prints_a_secret(tmp_path):
    """erlmcp.dr.notify ad hoc, channels and routing from inventory variables whose secrets are templates (as
    vault references are), at -vvv: the secret reaches the receiver and nothing else."""
    with http_receiver() as hook:
        vars_file = tmp_path / "notify.yml"
        vars_file.write_text(yaml.safe_dump({
            "vault_status_token": "status-token-Kq93jd",
            "dr_notify_channels": {"status_page": {"type": "webhook", "url": hook.url("/incidents"),
                                                   "headers": {"Authorization": "Bearer {{ vault_status_token }}"}}},
            "dr_notify_routing": {"sev3": {"channels": ["status_page"], "renotify_minutes": 60}},
        }))
        args = {"incident_id": "INC-8", "phase": "declared", "severity": "sev3", "title": "Slow sessions",
                "fields": {"affected": ["sessions"], "status": "investigating", "eta": "1 hour"}}
        env = dict(os.environ, PATH=venv_path(), ANSIBLE_NOCOLOR="1")
        done = subprocess.run([str(VENV_BIN / "ansible"), "localhost", "-vvv", "-m", "erlmcp.dr.notify",
                               "-e", f"@{vars_file}", "-a", json.dumps(args)], capture_output=True, text=True,
                              env=env, timeout=CLI_HANG_GUARD, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        (post,) = hook.wait_requests(1)
    assert post.headers["Authorization"] == "Bearer status-token-Kq93jd"
    assert (post.json["incident_id"], post.json["severity"], post.json["pagerduty_severity"]) == (
        "INC-8", "sev3", "warning")
    assert "failed_deliveries: 0" in done.stdout and "renotify_seconds: 3600" in done.stdout
    assert "status-token-Kq93jd" not in done.stdout + done.stderr
