"""A corpus of runs seeded with 20 known secrets, in every place a run's data can hold one: the extra vars, step
messages and data, the summary, the run's error, the audit records' parameters and facts, the inventory, and
secret-shaped text (a URL's password, a bearer token, a Slack webhook path). None may appear in the Markdown or
the HTML draft, raw or HTML-escaped. The runs are written the way the runner writes them (audit.append, RunResult)."""

from __future__ import annotations

import html

import pytest

from erlmcp_dr import audit
from erlmcp_dr.reporting import postmortem, postmortem_render
from erlmcp_dr.result import RunResult, Step

SECRETS = {
    # 1-8: under a secret-named key of result.json, and leaked into its free text
    "pg_login_password": "pg-login-Pw-0001",
    "token": "tok-0002-abcdef",
    "api_key": "apikey-0003-xyz",
    "routing_key": "pd-routing-0004-key",
    "client_secret": "cs-0005-secret&<\"'",  # HTML-special characters: escaped forms must not leak either
    "vault_passphrase": "vault-0006-phrase",
    "smtp_password": "smtp-0007-pass",
    "access_key": "AKIA0008EXAMPLE",
    # 9-12: under a secret-named key of an audit record, leaked into result.json's text
    "webhook_url": "https://chat.example/hook/0009-webhook",
    "authorization": "Basic MDAxMDphdXRo",
    "private_key": "pk-0011-private",
    "integration_key": "int-0012-key",
    # 13-16: only in the inventory, leaked into the run's text
    "pg_replication_password": "repl-0013-pass",
    "redis_password": "redis-0014-pass",
    "dns_tsig_secret": "dHNpZy0wMDE1LXNlY3JldA==",
    "slack_webhook": "slack-0016-nested-url-token",
}
SHAPED = {
    "url_password": ("postgresql://dr:urlpass-0017@db.example:5432/postgres", "urlpass-0017"),
    "url_password_2": ("redis://:urlpass-0018x@cache.example:6379/0", "urlpass-0018x"),
    "bearer": ("Authorization: Bearer bearer-0019-token-value", "bearer-0019-token-value"),
    "slack_path": ("posted to https://hooks.slack.com/services/T0020/B0020/slackpath0020", "T0020/B0020/slackpath0020"),
}
ALL = list(SECRETS.values()) + [secret for _, secret in SHAPED.values()]


def leak(*values: str) -> str:
    return "; ".join(f"connect failed with {value}" for value in values)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("ERLMCP_DR_HOME", str(home))
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(tmp_path / "locks"))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost: {ansible_connection: local}\n  vars:\n"
        f"    pg_replication_password: {SECRETS['pg_replication_password']}\n"
        f"    redis_password: {SECRETS['redis_password']}\n"
        f"    dns_tsig_secret: {SECRETS['dns_tsig_secret']}\n"
        f"    dr_notify_channels: {{slack: {{type: slack, webhook_url: {SECRETS['slack_webhook']}}}}}\n")
    trail = home / "audit" / "audit.jsonl"
    run_id = "20261206T120000Z-database_failover-5ec1"
    parameters = {"pg_login_password": SECRETS["pg_login_password"], "candidate": "pg-b"}
    start = audit.append(audit.run_start(run_id, "database_failover", parameters, check=False, operator="alice",
                                         inventory=str(inventory)), trail)
    step = Step(task="Promote the candidate", host="pg-b", action="erlmcp.dr.pg_promote",
                start="2026-12-06T12:00:01+00:00", end="2026-12-06T12:00:02+00:00", duration=1.0, changed=True,
                message=leak(SECRETS["token"], SECRETS["webhook_url"], SECRETS["pg_replication_password"],
                             SHAPED["url_password"][0]),
                data={"token": SECRETS["token"], "api_key": SECRETS["api_key"]})
    record = audit.append(audit.step_record(run_id, "database_failover", dict(step.to_dict(), status="changed"),
                                            operator="alice", targets=["pg-b"]) | {
        "facts": {"webhook_url": SECRETS["webhook_url"], "authorization": SECRETS["authorization"],
                  "nested": {"private_key": SECRETS["private_key"], "list": [{"integration_key":
                                                                              SECRETS["integration_key"]}]}}}, trail)
    failed = Step(task="Repoint the application", host="localhost", action="erlmcp.dr.app_db_config",
                  start="2026-12-06T12:00:03+00:00", end="2026-12-06T12:00:04+00:00", duration=1.0, failed=True,
                  message=leak(SECRETS["routing_key"], SECRETS["client_secret"], SECRETS["authorization"],
                               SECRETS["redis_password"], SHAPED["slack_path"][0], SECRETS["slack_webhook"]))
    end = audit.append(audit.run_end(run_id, "database_failover", operator="alice", status="failed", rc=2,
                                     check=False, duration_seconds=4.0, failing_step=f"{failed.task} on {failed.host}",
                                     targets=["pg-b"]), trail)
    summary = {"schema": 1, "runbook": "database_failover", "action": "promote",
               "reason": leak(SECRETS["vault_passphrase"], SECRETS["private_key"], SHAPED["bearer"][0]),
               "completed": False, "check_mode": False,
               "did": [f"promoted pg-b with {SECRETS['smtp_password']} and {SECRETS['integration_key']}",
                       f"wrote {SHAPED['url_password_2'][0]}"],
               "end_state": {"ok": False, "problems": [leak(SECRETS["access_key"], SECRETS["dns_tsig_secret"])]},
               "lock": {"key": "postgres:1"}, "rollback": [], "point_of_no_return_passed": True, "served": None,
               "recovery_point": None, "plan": {"will_change": [], "may_lose": [], "guard": None, "confirm_guard": {}},
               "details": {"api_key": SECRETS["api_key"], "routing_key": SECRETS["routing_key"],
                           "client_secret": SECRETS["client_secret"], "vault_passphrase": SECRETS["vault_passphrase"],
                           "smtp_password": SECRETS["smtp_password"], "access_key": SECRETS["access_key"]}}
    result = RunResult(run_id=run_id, runbook="database_failover", status="failed", rc=2, check=False,
                       started_at=start["time"], ended_at=end["time"], duration_seconds=4.0, inventory=str(inventory),
                       extravars={"pg_login_password": SECRETS["pg_login_password"], "candidate": "pg-b"},
                       steps=[step, failed], facts={"summary": summary}, error=leak(SECRETS["pg_login_password"]),
                       audit_head=audit.anchor_of(end), operator="alice", os_user="sre")
    run_dir = home / "runs" / run_id
    run_dir.mkdir(parents=True)
    result.save(run_dir)
    assert record["seq"] == 2
    return run_id, home, inventory


def test_the_corpus_holds_twenty_distinct_secrets():
    assert len(set(ALL)) == 20


@pytest.mark.parametrize("form", ["md", "html"])
def test_no_seeded_secret_appears_in_the_draft(corpus, form):
    run_id, home, inventory = corpus
    text = postmortem_render.render(postmortem.build(run_id, home=home, inventory=inventory), form)
    leaked = [secret for secret in ALL if secret in text or html.escape(secret, quote=True) in text]
    assert leaked == [], f"secrets in the {form} draft: {leaked}"
    assert "********" in text
    assert "Promote the candidate" in text and "Repoint the application" in text  # the facts stay


def test_the_secrets_come_from_secret_named_keys_of_the_data_and_the_inventory(corpus):
    run_id, home, inventory = corpus
    found = postmortem.build(run_id, home=home, inventory=inventory).secrets
    assert set(SECRETS.values()) <= set(found)
    without_inventory = postmortem.build(run_id, home=home).secrets
    assert SECRETS["pg_replication_password"] not in without_inventory  # only the inventory names it
