"""erlmcp.dr.notify's engine against real local receivers: a recording HTTP server (Slack, PagerDuty, webhook) and
a real SMTP server with STARTTLS and AUTH. Payloads are checked field by field; bad receivers (down, 4xx, 5xx,
hanging, an invalid routing key, a wrong password) are reported per delivery and never raise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from receivers import Answer, HttpReceiver, SmtpReceiver, closed_url, http_receiver, smtp_receiver

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._notify import engine as _notify  # noqa: E402

pytestmark = pytest.mark.integration

SLACK_PATH = "/services/T0000/B0000/slack-token-XXXXXXXXXXXXXXXX"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"
STATUS_TOKEN = "Bearer status-page-token-123456"
PD_ACCEPTED = Answer(202, b'{"status":"success","message":"Event processed","dedup_key":"INC-42"}',
                     "application/json")
FIELDS = {"affected": ["api", "sessions"], "status": "investigating", "eta": "30 minutes",
          "actions_taken": ["paged on-call"], "next_steps": ["fail over to region b"]}


def params(channels: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "incident_id": "INC-42", "phase": "declared", "severity": "sev1", "title": "Region a is down",
        "fields": dict(FIELDS), "channels": channels,
        "routing": {"sev1": {"channels": sorted(channels), "renotify_minutes": 15}},
        "send_to": None, "template_dir": None, "pagerduty_action": None,
        "timeout": 2.0, "deadline": 2.0, "retry_interval": 0.05,
    }
    base.update(overrides)
    return base


def run(p: dict[str, Any], check_mode: bool = False) -> tuple[dict[str, Any], list[str]]:
    warnings: list[str] = []
    result = _notify.run(p, check_mode=check_mode, diff=False, warn=warnings.append)
    return result, warnings


def no_secret_in(result: dict[str, Any], warnings: list[str], *secrets: str) -> None:
    text = json.dumps(result) + json.dumps(warnings)
    for secret in secrets:
        assert secret not in text, f"secret {secret[:6]}... in the result or warnings"


@pytest.fixture
def slack() -> Iterator[HttpReceiver]:
    with http_receiver() as receiver:
        yield receiver


@pytest.fixture
def pagerduty() -> Iterator[HttpReceiver]:
    with http_receiver() as receiver:
        receiver.answer(PD_ACCEPTED)
        yield receiver


@pytest.fixture
def status_page() -> Iterator[HttpReceiver]:
    with http_receiver() as receiver:
        yield receiver


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpReceiver]:
    with smtp_receiver(tmp_path) as receiver:
        yield receiver


def http_channels(slack: HttpReceiver, pagerduty: HttpReceiver, status_page: HttpReceiver) -> dict[str, Any]:
    return {
        "slack_incidents": {"type": "slack", "webhook_url": slack.url(SLACK_PATH)},
        "pagerduty_oncall": {"type": "pagerduty", "routing_key": ROUTING_KEY,
                             "events_url": pagerduty.url("/v2/enqueue"), "component": "postgres"},
        "status_page": {"type": "webhook", "url": status_page.url("/api/incidents?token=url-token-987654"),
                        "headers": {"Authorization": STATUS_TOKEN}},
    }


def test_declared_reaches_slack_pagerduty_and_the_webhook_field_by_field(slack, pagerduty, status_page):
    result, warnings = run(params(http_channels(slack, pagerduty, status_page)))

    assert result["changed"] and result["failed_deliveries"] == 0 and result["sent"] == 3, result
    assert [(d["channel"], d["ok"], d["attempts"]) for d in result["deliveries"]] == [
        ("pagerduty_oncall", True, 1), ("slack_incidents", True, 1), ("status_page", True, 1)]
    assert {d["channel"]: d["status"] for d in result["deliveries"]} == {
        "pagerduty_oncall": 202, "slack_incidents": 200, "status_page": 200}
    assert result["next_update"] and result["renotify_seconds"] == 900

    (post,) = slack.wait_requests(1)
    assert (post.method, post.path, post.headers["Content-Type"]) == ("POST", SLACK_PATH, "application/json")
    body = post.json
    assert body["text"].endswith("INCIDENT DECLARED: Region a is down")
    header, fields, text, context = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "INCIDENT DECLARED: Region a is down",
                                                 "emoji": True}}
    assert [f["text"] for f in fields["fields"]] == [
        "*Severity*\nSEV1 (critical)", "*Status*\ninvestigating", "*Affected*\napi, sessions",
        "*ETA*\n30 minutes", f"*Next update*\n{result['next_update']}"]
    assert "Affected systems: api, sessions" in text["text"]["text"]
    assert "- fail over to region b" in text["text"]["text"]
    assert "INC-42" in context["elements"][0]["text"]

    (event_post,) = pagerduty.wait_requests(1)
    event = event_post.json
    assert event_post.path == "/v2/enqueue"
    assert {k: event[k] for k in ("routing_key", "event_action", "dedup_key")} == {
        "routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "INC-42"}
    payload = event["payload"]
    assert (payload["summary"], payload["severity"], payload["source"], payload["component"]) == (
        "INCIDENT DECLARED: Region a is down", "critical", "erlmcp.dr", "postgres")
    assert payload["custom_details"]["affected"] == ["api", "sessions"]
    assert payload["custom_details"]["next_steps"] == ["fail over to region b"]

    (hook,) = status_page.wait_requests(1)
    assert hook.headers["Authorization"] == STATUS_TOKEN
    assert hook.path == "/api/incidents?token=url-token-987654"
    doc = hook.json
    assert {k: doc[k] for k in ("incident_id", "phase", "severity", "pagerduty_severity", "title", "status", "eta",
                                "next_update", "affected", "actions_taken", "next_steps", "headline")} == {
        "incident_id": "INC-42", "phase": "declared", "severity": "sev1", "pagerduty_severity": "critical",
        "title": "Region a is down", "status": "investigating", "eta": "30 minutes",
        "next_update": result["next_update"], "affected": ["api", "sessions"], "actions_taken": ["paged on-call"],
        "next_steps": ["fail over to region b"], "headline": "INCIDENT DECLARED: Region a is down"}

    assert not warnings
    no_secret_in(result, warnings, ROUTING_KEY, "slack-token-XXXXXXXXXXXXXXXX", "url-token-987654", STATUS_TOKEN)


def test_pagerduty_update_acknowledge_and_resolve_share_the_dedup_key(pagerduty):
    channels = {"oncall": {"type": "pagerduty", "routing_key": ROUTING_KEY, "events_url": pagerduty.url("/v2/enqueue")}}
    run(params(channels, phase="update", severity="sev2", routing={"sev2": {"channels": ["oncall"]}},
               fields=dict(FIELDS, next_update="15:00 UTC")))
    run(params(channels, phase="update", pagerduty_action="acknowledge", fields=dict(FIELDS)))
    result, _ = run(params(channels, phase="resolved", fields={"affected": ["api"], "root_cause": "power loss"}))

    update, ack, resolve = [r.json for r in pagerduty.wait_requests(3)]
    assert (update["event_action"], update["payload"]["severity"], update["dedup_key"]) == (
        "trigger", "error", "INC-42")
    assert update["payload"]["summary"] == "INCIDENT UPDATE: Region a is down"
    assert (ack["event_action"], ack["dedup_key"], "payload" in ack) == ("acknowledge", "INC-42", False)
    assert (resolve["event_action"], resolve["dedup_key"], "payload" in resolve) == ("resolve", "INC-42", False)
    assert result["deliveries"][0]["ok"] and result["next_update"] is None


def test_email_goes_over_starttls_with_auth(smtp, tmp_path):
    channels = {"dev_notify": {"type": "email", "host": "127.0.0.1", "port": smtp.port, "username": smtp.username,
                               "password": smtp.password, "sender": "dr@erlmcp.example",
                               "to": ["dev-notify@erlmcp.example"], "cc": "cto@erlmcp.example",
                               "ca_file": str(smtp.cert)}}
    result, warnings = run(params(channels))

    assert result["failed_deliveries"] == 0 and result["deliveries"][0]["status"] == 250, result
    (mail,) = smtp.wait_mails(1)
    assert (mail.tls, mail.authenticated, mail.mail_from) == (True, True, "dr@erlmcp.example")
    assert smtp.logins == [("notifier", True)]
    assert sorted(mail.rcpt_tos) == ["cto@erlmcp.example", "dev-notify@erlmcp.example"]
    message = mail.message()
    assert message["Subject"] == "[SEV1] INCIDENT DECLARED: Region a is down"
    assert (message["To"], message["Cc"]) == ("dev-notify@erlmcp.example", "cto@erlmcp.example")
    text = message.get_content()
    for line in ("Severity: SEV1 (critical)", "Affected systems: api, sessions", "Status: investigating",
                 "Estimated time to resolution: 30 minutes", f"Next update: {result['next_update']}"):
        assert line in text
    no_secret_in(result, warnings, smtp.password)


def test_smtp_failures_are_reported_and_only_transient_ones_retried(smtp):
    base = {"type": "email", "host": "127.0.0.1", "port": smtp.port, "username": smtp.username,
            "sender": "dr@erlmcp.example", "to": ["oncall@erlmcp.example"], "ca_file": str(smtp.cert)}
    smtp.reject_rcpt["busy@erlmcp.example"] = "451 4.3.0 try again later"
    channels = {"wrong_password": dict(base, password="not-the-password"),
                "untrusted": dict(base, password=smtp.password, ca_file=None),
                "greylisted": dict(base, password=smtp.password, to=["busy@erlmcp.example"])}
    # one overall deadline (issue 16): long enough for a TLS session on a busy machine, short for the retries
    result, warnings = run(params(channels, deadline=2.0))

    by = {d["channel"]: d for d in result["deliveries"]}
    assert (by["wrong_password"]["ok"], by["wrong_password"]["status"], by["wrong_password"]["attempts"]) == (
        False, 535, 1)
    assert "TLS failed" in by["untrusted"]["error"] and by["untrusted"]["attempts"] == 1
    assert by["greylisted"]["status"] == 451 and by["greylisted"]["attempts"] >= 2, by["greylisted"]
    assert result["failed_deliveries"] == 3 and result["changed"] is False and not smtp.mails
    assert "3 of 3 notification(s)" in warnings[0]
    no_secret_in(result, warnings, smtp.password, "not-the-password")


def test_down_5xx_4xx_and_hanging_receivers_are_reported_never_raised(slack, pagerduty, status_page):
    slack.answer(Answer(404, b"no_service"))
    pagerduty.answer(Answer(503, b"unavailable"), Answer(502, b"bad gateway"), PD_ACCEPTED)
    status_page.answer(Answer(hang=True))
    channels = {
        "slack_gone": {"type": "slack", "webhook_url": slack.url(SLACK_PATH)},
        "pagerduty_flaky": {"type": "pagerduty", "routing_key": ROUTING_KEY,
                            "events_url": pagerduty.url("/v2/enqueue")},
        "status_hangs": {"type": "webhook", "url": status_page.url("/hook"), "timeout": 0.3},
        "receiver_down": {"type": "webhook", "url": closed_url("/hook")},
    }
    result, warnings = run(params(channels, deadline=0.6))

    by = {d["channel"]: d for d in result["deliveries"]}
    assert (by["slack_gone"]["ok"], by["slack_gone"]["status"], by["slack_gone"]["attempts"]) == (False, 404, 1)
    assert "no_service" in by["slack_gone"]["error"] and "not retried" in by["slack_gone"]["gave_up"]
    assert (by["pagerduty_flaky"]["ok"], by["pagerduty_flaky"]["status"], by["pagerduty_flaky"]["attempts"]) == (
        True, 202, 3)
    assert not by["status_hangs"]["ok"] and by["status_hangs"]["status"] is None
    assert "no answer within 0.3s" in by["status_hangs"]["error"] or "timed out" in by["status_hangs"]["error"]
    assert not by["receiver_down"]["ok"] and "could not reach" in by["receiver_down"]["error"]
    assert by["receiver_down"]["attempts"] >= 2 and "deadline" in by["receiver_down"]["gave_up"]
    assert result["failed_deliveries"] == 3 and result["sent"] == 1 and result["changed"] is True
    assert "3 of 4 notification(s) for incident INC-42 were not delivered" in warnings[0]
    no_secret_in(result, warnings, ROUTING_KEY, "slack-token-XXXXXXXXXXXXXXXX")


def test_an_invalid_routing_key_is_reported_not_retried(pagerduty):
    pagerduty.answer(Answer(400, b'{"status":"invalid event","message":"Event object is invalid","errors":'
                                 b'["Length of \'routing_key\' is incorrect (should be 32 characters)"]}',
                            "application/json"))
    channels = {"oncall": {"type": "pagerduty", "routing_key": "short-key-1234",
                           "events_url": pagerduty.url("/v2/enqueue")}}
    result, warnings = run(params(channels))

    (delivery,) = result["deliveries"]
    assert (delivery["ok"], delivery["status"], delivery["attempts"]) == (False, 400, 1)
    assert "Length of 'routing_key' is incorrect" in delivery["error"]
    assert len(pagerduty.requests) == 1 and warnings
    no_secret_in(result, warnings, "short-key-1234")


def test_a_template_field_not_given_fails_before_anything_is_sent(slack, tmp_path):
    for phase in ("declared", "update", "resolved"):
        (tmp_path / f"{phase}.j2").write_text("{{ title }}\nCustomer impact: {{ customer_impact }} ({{ region }})\n")
    channels = {"slack": {"type": "slack", "webhook_url": slack.url(SLACK_PATH)}}
    with pytest.raises(ModuleFailure) as failure:
        run(params(channels, template_dir=str(tmp_path)))
    message = str(failure.value)
    assert "refers to field(s) customer_impact, region that were not given; nothing was sent" in message
    assert str(tmp_path / "declared.j2") in message and "slack-token" not in message
    assert not slack.requests

    with pytest.raises(ModuleFailure, match="actions_taken, next_steps"):  # the shipped update template
        run(params(channels, phase="update", fields={"affected": "api", "status": "failing over", "eta": "5 min"}))
    assert not slack.requests


def test_check_mode_renders_and_sends_nothing(slack, pagerduty, status_page):
    result, _ = run(params(http_channels(slack, pagerduty, status_page)), check_mode=True)

    assert result["changed"] and result["deliveries"] == [] and result["failed_deliveries"] == 0
    would = {item["channel"]: item for item in result["would_send"]}
    assert would["pagerduty_oncall"]["payload"]["routing_key"] == "********"
    assert would["pagerduty_oncall"]["payload"]["payload"]["severity"] == "critical"
    assert would["slack_incidents"]["target"] == f"http://127.0.0.1:{slack.port}/********"
    assert would["status_page"]["payload"]["incident_id"] == "INC-42"
    assert result["message"]["headline"] == "INCIDENT DECLARED: Region a is down"
    assert not (slack.requests or pagerduty.requests or status_page.requests)
    no_secret_in(result, [], ROUTING_KEY, "slack-token-XXXXXXXXXXXXXXXX", "url-token-987654", STATUS_TOKEN)


def test_an_empty_route_sends_nothing_and_says_so(slack):
    channels = {"slack": {"type": "slack", "webhook_url": slack.url(SLACK_PATH)}}
    result, warnings = run(params(channels, severity="sev4", routing={"sev4": {"channels": []}}, fields={}))

    assert (result["changed"], result["deliveries"], result["channels"]) == (False, [], [])
    assert result["summary"]["details"]["outcome"] == "no channel is routed for sev4: nothing was sent"
    assert warnings == ["no channel is routed for sev4 (dr_notify_routing.sev4.channels is empty): nothing was sent"]
    assert not slack.requests
