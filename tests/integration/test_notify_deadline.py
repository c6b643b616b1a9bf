"""Notifications go out to every channel at once under one overall deadline (issue 16, "notifications go out
concurrently"; row 11: three broken channels took 104 s, deliveries in series, each retried up to 30 s).

Three broken receivers, all real and local: a Slack URL that never answers, PagerDuty answering 500, and an SMTP
server that sends its banner and then never answers. Every delivery is reported failed, PagerDuty is retried
inside the deadline, the deliveries overlap in time (each one's recorded start comes before any one's end), and
the engine stops waiting when the configured deadline passes: the durations compared are the engine's own
records against the deadline parameter, never a fixed number of seconds.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from receivers import Answer, HttpReceiver, http_receiver
from runbook_helpers import runbook_cli, summary

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._notify import engine as _notify  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.modules import notify as notify_module  # noqa: E402

pytestmark = pytest.mark.integration

DECLARE = ["-e", "incident_id=INC-9", "-e", "phase=declared", "-e", "severity=sev1", "-e", "title=Region a is down",
           "-e", "fields={status: investigating, affected: [api], eta: 30 minutes}"]


class HangingSmtp:
    """A TCP server on 127.0.0.1 that greets with an SMTP banner, then reads nothing and answers nothing, holding
    every connection open until it is closed; it counts the connections it accepted."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="hanging-smtp", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.sendall(b"220 hanging.example ESMTP ready\r\n")
            self.held.append(conn)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        for conn in self.held:
            conn.close()
        self.thread.join(5)


@contextmanager
def broken_channels() -> Iterator[tuple[dict[str, Any], HttpReceiver, HttpReceiver, HangingSmtp]]:
    smtp = HangingSmtp()
    try:
        with http_receiver() as slack, http_receiver() as pagerduty:
            slack.answer(Answer(hang=True))
            pagerduty.answer(Answer(500, b"internal error"))
            channels = {
                "slack": {"type": "slack", "webhook_url": slack.url("/services/T0/B0/never-answers")},
                "pagerduty": {"type": "pagerduty", "routing_key": "R0UT1NGKEY0123456789abcdef012345",
                              "events_url": pagerduty.url("/v2/enqueue")},
                "email": {"type": "email", "host": "127.0.0.1", "port": smtp.port, "sender": "dr@erlmcp.example",
                          "to": ["oncall@erlmcp.example"]},
            }
            yield channels, slack, pagerduty, smtp
    finally:
        smtp.close()


def assert_concurrent_and_bounded(deliveries: list[dict[str, Any]], waited: float, deadline: float) -> None:
    assert [d["ok"] for d in deliveries] == [False, False, False], deliveries
    # concurrently: every delivery had started before the first one ended
    assert max(d["started_s"] for d in deliveries) < min(d["ended_s"] for d in deliveries), deliveries
    # one overall deadline: the engine stopped waiting once it passed, not after one per channel
    assert waited < 2 * deadline, (waited, deadline)


def test_three_broken_channels_are_sent_to_at_once_and_given_up_at_the_one_deadline() -> None:
    deadline = 2.0
    with broken_channels() as (channels, slack, pagerduty, smtp):
        params = {"incident_id": "INC-9", "phase": "declared", "severity": "sev1", "title": "Region a is down",
                  "fields": {"status": "investigating", "affected": ["api"], "eta": "30 minutes"},
                  "channels": channels, "routing": {"sev1": {"channels": sorted(channels), "renotify_minutes": 15}},
                  "send_to": None, "template_dir": None, "pagerduty_action": None,
                  "timeout": 10.0, "deadline": deadline, "retry_interval": 0.05}
        warnings: list[str] = []
        result = _notify.run(params, warn=warnings.append)
        pagerduty_posts = len(pagerduty.wait_requests(2))  # retried: the receiver saw the attempts too
        slack_posts, smtp_connections = len(slack.wait_requests(1)), smtp.accepted

    by = {d["channel"]: d for d in result["deliveries"]}
    assert result["failed_deliveries"] == 3 and result["deadline_s"] == deadline
    assert_concurrent_and_bounded(result["deliveries"], result["waited_s"], deadline)
    assert by["pagerduty"]["status"] == 500 and by["pagerduty"]["attempts"] >= 2  # retried inside the deadline
    assert pagerduty_posts >= 2
    assert slack_posts >= 1 and by["slack"]["status"] is None
    assert smtp_connections >= 1 and by["email"]["status"] is None
    assert "3 of 3 notification(s) for incident INC-9 were not delivered" in warnings[0]


def test_incident_notify_with_three_broken_channels_exits_0_within_the_default_deadline(tmp_path: Path,
                                                                                        home: Path) -> None:
    with broken_channels() as (channels, _slack, _pagerduty, _smtp):
        path = tmp_path / "inventory" / "hosts.yml"
        path.parent.mkdir(parents=True)
        path.write_text("---\n" + yaml.safe_dump({"all": {
            "hosts": {"localhost": {"ansible_connection": "local"}},
            "vars": {"dr_notify_channels": channels,
                     "dr_notify_routing": {"sev1": {"channels": sorted(channels), "renotify_minutes": 15}}}}}))
        cli = runbook_cli("run", "incident_notify", "-i", str(path), *DECLARE, "--json")

    assert cli.rc == 0, cli
    facts = summary(cli.json)
    assert facts["not_delivered"] == ["email", "pagerduty", "slack"], facts
    assert facts["deadline_s"] == notify_module.argument_spec()["deadline"]["default"]
    assert_concurrent_and_bounded(facts["deliveries"], facts["waited_s"], facts["deadline_s"])
