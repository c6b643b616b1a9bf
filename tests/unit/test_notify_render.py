"""The pure part of erlmcp.dr.notify: routing, channel settings, secrets, the shipped templates, the payloads and the
retry rules; and that the templates ship in the collection tarball (and so in the wheel, which unpacks it)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._notify import engine, send  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._notify import render as r  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.datetime(2026, 11, 25, 14, 0, tzinfo=datetime.timezone.utc)  # noqa: UP017 (plugins' 3.8 style)
CHANNELS = {"slack": {"type": "slack", "webhook_url": "https://hooks.slack.com/services/T1/B2/sekret-token"},
            "pd": {"type": "pagerduty", "routing_key": "0123456789abcdef0123456789abcdef"}}


def ctx(phase: str = "declared", severity: str = "sev1", renotify: int | None = 900, **fields: Any) -> dict[str, Any]:
    return r.context("INC-9", phase, severity, "Region a is down", fields, NOW, renotify)


def test_routing_picks_the_severity_s_channels_and_interval():
    routing = {"sev1": {"channels": ["pd", "slack", "pd"], "renotify_minutes": 15}, "sev3": {"channels": []}}
    assert r.route("sev1", routing, None, CHANNELS) == (["pd", "slack"], 900)
    assert r.route("sev3", routing, None, CHANNELS) == ([], None)
    assert r.route("sev1", routing, ["slack"], CHANNELS) == (["slack"], 900)


@pytest.mark.parametrize(("severity", "routing", "explicit", "message"), [
    ("sev2", {"sev1": {"channels": ["pd"]}}, None,
     "no route for sev2: the routing has sev1; add dr_notify_routing.sev2"),
    ("sev1", {"sev1": {"channels": ["pager"]}}, None, "channel(s) pager are not defined: the channels defined are pd, "
                                                      "slack (dr_notify_channels)"),
    ("sev1", {"p0": {}}, None, "routing has severities p0: expected only sev1, sev2, sev3, sev4"),
    ("sev1", {"sev1": {"channels": ["pd"], "renotify_minutes": 0}}, None, "renotify_minutes is 0: expected a positive"),
    ("sev1", {"sev1": {"channels": "pd"}}, None, "channels is 'pd': expected a list of channel names"),
    ("sev1", {"sev1": {"chanels": ["pd"]}}, None, "has chanels: expected only channels and renotify_minutes"),
    ("sev1", {}, ["nope"], "channel(s) nope are not defined"),
])
def test_routing_mistakes_name_the_variable_to_fix(severity, routing, explicit, message):
    with pytest.raises(r.NotifyError, match=None) as failure:
        r.route(severity, routing, explicit, CHANNELS)
    assert message in str(failure.value)


@pytest.mark.parametrize(("settings", "message"), [
    ({"type": "teams"}, "channel c has type 'teams': expected one of email, pagerduty, slack, webhook"),
    ({"type": "slack"}, "channel c (slack) lacks webhook_url (dr_notify_channels.c)"),
    ({"type": "pagerduty", "routing_key": "k", "severity": "x"}, "has option(s) severity: expected only"),
    ({"type": "email", "host": "h", "sender": "s", "to": 5}, "to is a int: expected an address or a list"),
    ({"type": "webhook", "url": "u", "headers": ["a"]}, "headers is a list: expected a mapping"),
    ("slack", "channel c is a str: expected a mapping with a type"),
    ({"type": "webhook", "url": "u", "method": "GET"}, "method is 'GET': expected one of POST, PUT, PATCH"),
    ({"type": "slack", "webhook_url": "u", "timeout": "soon"}, "timeout is 'soon': expected a positive number"),
    ({"type": "slack", "webhook_url": "u", "timeout": 0}, "timeout is 0: expected a positive number of seconds"),
    ({"type": "email", "host": "h", "sender": "s", "to": "t", "port": 70000}, "port is 70000: expected an integer"),
    ({"type": "email", "host": "h", "sender": "s", "to": "t", "starttls": "no"}, "starttls is 'no': expected true"),
])
def test_channel_settings_are_checked_before_anything_is_sent(settings, message):
    with pytest.raises(r.NotifyError) as failure:
        r.check_channel("c", settings)
    assert message in str(failure.value)


def test_good_channel_settings_pass():
    assert r.check_channel("m", {"type": "email", "host": "h", "sender": "s", "to": ["t"], "port": "2525",
                                 "timeout": "2.5", "starttls": False})["port"] == "2525"
    assert r.check_channel("w", {"type": "webhook", "url": "u", "method": "put", "timeout": 1})


def test_secrets_are_masked_everywhere_they_could_leak():
    channels = dict(CHANNELS, hook={"type": "webhook", "url": "https://status.example/api?key=abcd1234",
                                    "headers": {"Authorization": "Bearer tok-999"}},
                    mail={"type": "email", "host": "smtp", "sender": "a@b", "to": "c@d", "password": "pw-123456"})
    secrets = r.secrets_of(channels)
    assert set(secrets) == {CHANNELS["slack"]["webhook_url"], CHANNELS["pd"]["routing_key"],
                            "https://status.example/api?key=abcd1234", "Bearer tok-999", "pw-123456"}
    assert r.scrub("POST https://status.example/api?key=abcd1234 failed, pw-123456", secrets) == (
        "POST ******** failed, ********")
    assert r.masked_url("https://user:pw@hooks.slack.com/services/T1/B2/x") == "https://hooks.slack.com/********"
    assert r.target_of(channels["mail"]) == "smtp://smtp:587 to c@d"
    assert r.target_of(dict(channels["mail"], ssl=True)) == "smtp://smtp:465 to c@d"
    assert "0123456789abcdef" not in r.target_of(CHANNELS["pd"])


def test_context_makes_lists_fills_next_update_and_drops_fields_not_given():
    c = ctx(affected="api", status=None, eta="5 min")
    assert c["affected"] == ["api"] and "status" not in c
    assert (c["next_update"], c["severity_label"], c["pagerduty_severity"]) == (
        "2026-11-25 14:15 UTC", "SEV1 (critical)", "critical")
    assert "next_update" not in ctx("resolved", root_cause="x")
    assert ctx(next_update="at 15:00")["next_update"] == "at 15:00"
    assert [r.PAGERDUTY_SEVERITY[s] for s in r.SEVERITIES] == ["critical", "error", "warning", "info"]


def test_every_missing_field_is_named_at_once_and_optional_ones_are_not():
    with pytest.raises(r.NotifyError) as failure:
        r.render(r.DEFAULT_TEMPLATE_DIR, "update", ctx("update", renotify=None, status="failing over"))
    text = str(failure.value)
    assert "refers to field(s) affected, actions_taken, next_steps, eta, next_update that were not given" in text
    assert "previous_status" not in text and "Fields given: status" in text

    message = r.render(r.DEFAULT_TEMPLATE_DIR, "resolved", ctx("resolved", affected=["api"], root_cause="power"))
    assert message["headline"] == "INCIDENT RESOLVED: Region a is down"
    assert "Root cause: power" in message["body"] and "Post-mortem" not in message["body"]


@pytest.mark.parametrize(("phase", "fields", "lines"), [
    ("declared", {"affected": ["api", "db"], "status": "investigating", "eta": "30 min", "commander": "Jane"},
     ["Severity: SEV1 (critical)", "Affected systems: api, db", "Status: investigating",
      "Estimated time to resolution: 30 min", "Incident commander: Jane", "Next update: 2026-11-25 14:15 UTC"]),
    ("update", {"affected": ["api"], "status": "failing over", "previous_status": "investigating", "eta": "5 min",
                "actions_taken": ["fenced pg-a"], "next_steps": ["promote pg-b"]},
     ["Previous status: investigating", "Current status: failing over", "Actions taken:\n- fenced pg-a",
      "Next steps:\n- promote pg-b", "ETA: 5 min"]),
    ("resolved", {"affected": ["api"], "root_cause": "power", "resolution_time": "4 min", "prevention": "2 PSUs",
                  "postmortem_url": "https://wiki/pm/9"},
     ["Status: resolved", "Resolution time: 4 min", "Root cause: power", "Prevention: 2 PSUs",
      "Post-mortem: https://wiki/pm/9"]),
])
def test_the_shipped_templates_carry_the_seeds_fields(phase, fields, lines):
    message = r.render(r.DEFAULT_TEMPLATE_DIR, phase, ctx(phase, **fields))
    assert message["headline"] == f"INCIDENT {phase.upper()}: Region a is down"
    for line in lines:
        assert line in message["body"]


def test_a_broken_or_missing_template_is_named(tmp_path):
    (tmp_path / "declared.j2").write_text("{{ title }\n")
    with pytest.raises(r.NotifyError, match=r"declared.j2 does not parse \(line 1\)"):
        r.render(str(tmp_path), "declared", ctx())
    with pytest.raises(r.NotifyError, match="no template update.j2 in .*dr_notify_template_dir"):
        r.render(str(tmp_path), "update", ctx("update"))
    (tmp_path / "resolved.j2").write_text("x {{ title.__class__.__mro__ }}\n")
    with pytest.raises(r.NotifyError, match="sandbox refuses: access to attribute '__class__'"):
        r.render(str(tmp_path), "resolved", ctx("resolved"))
    (tmp_path / "resolved.j2").write_text("{{ ' ' }}\n{{ title }}\n")
    with pytest.raises(r.NotifyError, match="rendered an empty first line"):
        r.render(str(tmp_path), "resolved", ctx("resolved"))


def test_payloads():
    message = {"headline": "INCIDENT DECLARED: <x> & y", "body": "a < b", "text": "t"}
    c = ctx(affected=["api"], status="investigating", eta="5 min")
    slack = r.slack_payload(message, c)
    assert slack["blocks"][0]["text"]["text"] == "INCIDENT DECLARED: <x> & y"  # plain_text: no escaping
    assert slack["blocks"][2]["text"]["text"] == "a &lt; b"  # mrkdwn: Slack's three escapes
    trigger = r.pagerduty_event(message, c, CHANNELS["pd"], "trigger", NOW)
    assert (trigger["payload"]["severity"], trigger["payload"]["timestamp"], trigger["dedup_key"]) == (
        "critical", "2026-11-25T14:00:00+00:00", "INC-9")
    assert "payload" not in r.pagerduty_event(message, c, CHANNELS["pd"], "resolve", NOW)
    assert r.masked_payload("pagerduty", trigger)["routing_key"] == r.MASK
    assert [r.pagerduty_action(p, None) for p in r.PHASES] == ["trigger", "trigger", "resolve"]
    mail = r.email_message(message, c, {"sender": "a@b", "to": "c@d", "subject_prefix": ""})
    assert (mail["subject"], mail["to"], mail["cc"]) == ("INCIDENT DECLARED: <x> & y", ["c@d"], [])
    assert r.email_message(message, c, {"sender": "a@b", "to": "c@d"})["subject"].startswith("[SEV1] ")


def test_retry_rules():
    assert [send.retryable_http(code) for code in (400, 401, 403, 404, 410, 429, 500, 502, 503)] == [
        False, False, False, False, False, True, True, True, True]
    assert [send.retryable_smtp(code) for code in (421, 451, 535, 550, 554)] == [True, True, False, False, False]
    outcomes = iter([send.Attempt(False, 503, "x", retry=True), send.Attempt(False, 400, "bad")])
    last, count = send.with_retries(lambda: next(outcomes), deadline=5, interval=0)
    assert (last.status, count) == (400, 2)
    last, count = send.with_retries(lambda: send.Attempt(False, error="down", retry=True), deadline=0, interval=0)
    assert count == 1 and last.error == "down"


def test_input_errors_fail_before_sending_and_hide_secrets():
    params = {"incident_id": "INC 9", "phase": "declared", "severity": "sev1", "title": "t", "fields": {},
              "channels": CHANNELS, "routing": {"sev1": {"channels": ["slack"]}}, "send_to": None,
              "template_dir": None, "pagerduty_action": None, "timeout": 1.0, "deadline": 0.0, "retry_interval": 0.0}
    with pytest.raises(engine.ModuleFailure, match="incident_id 'INC 9' is not an incident id") as failure:
        engine.run(params)
    summary = failure.value.facts["summary"]
    assert summary["details"]["outcome"].startswith("not sent: incident_id")
    assert not summary["completed"] and summary["end_state"]["ok"] is False and summary["runbook"] == "incident_notify"
    bad = dict(params, incident_id="INC-9", channels=dict(CHANNELS, slack=dict(CHANNELS["slack"], typo=1)))
    with pytest.raises(engine.ModuleFailure) as failure:
        engine.run(bad)
    assert "has option(s) typo" in str(failure.value) and "sekret-token" not in str(failure.value)


def test_the_templates_ship_in_the_collection_tarball():
    """ansible-galaxy's own file list for the tarball (galaxy.yml's build_ignore applied); the wheel unpacks it."""
    from ansible.galaxy.collection import _build_files_manifest_walk

    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    manifest = _build_files_manifest_walk(str(REPO).encode(), "erlmcp", "dr", galaxy["build_ignore"])
    shipped = {entry["name"] for entry in manifest["files"]}
    assert {f"plugins/notify_templates/{phase}.j2" for phase in r.PHASES} <= shipped
    assert "plugins/action/notify.py" in shipped and "plugins/modules/notify.py" in shipped
    assert "graft plugins" in (REPO / "MANIFEST.in").read_text()  # the sdist the wheel is built from


def test_a_plan_refused_for_its_input_still_says_it_was_a_plan():
    params = {"incident_id": "INC 9", "phase": "declared", "severity": "sev1", "title": "t", "fields": {},
              "channels": CHANNELS, "routing": {"sev1": {"channels": ["slack"]}}, "send_to": None,
              "template_dir": None, "pagerduty_action": None, "timeout": 1.0, "deadline": 0.0, "retry_interval": 0.0}
    with pytest.raises(engine.ModuleFailure) as failure:
        engine.run(params, check_mode=True)
    assert failure.value.facts["summary"]["check_mode"] is True
