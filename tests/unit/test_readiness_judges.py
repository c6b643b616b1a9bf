"""readiness's judges, pure (module_utils/_region/readiness_judge.py): every check at its boundaries (exactly at the
threshold passes, just past it fails), "not configured" is a warning and never a pass, the overall verdict and
exit code, thresholds from the inventory (dr_readiness) over the defaults, and the drill history's format
(module_utils/_region/readiness.read_drill_history). No server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness as engine  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness_judge as judge  # noqa: E402

LIMITS = judge.thresholds({})
DAY = 86400.0
KEYS = {"name", "measured", "unit", "threshold", "source", "verdict", "detail"}


def test_every_check_has_the_same_keys():
    assert set(judge.check("x", judge.PASS)) == KEYS
    with pytest.raises(ValueError, match="verdict 'ok'"):
        judge.check("x", "ok")


# ---------------------------------------------------------------- thresholds


def test_inventory_thresholds_override_defaults_and_name_their_source():
    limits = judge.thresholds({"rpo_seconds": 5, "drill_age_days": {"region": 365}})
    assert limits["rpo_seconds"] == (5, "inventory dr_readiness.rpo_seconds")
    assert limits["drill_age_days"][0]["region"] == 365.0
    assert limits["drill_age_days"][0]["database_primary"] == judge.DEFAULTS["drill_age_days"][0]["database_primary"]
    assert LIMITS["rpo_seconds"][1].startswith("tier 1 RPO")


@pytest.mark.parametrize("bad, message", [
    ({"rpo": 1}, "unknown threshold.*rpo.*expected some of"),
    ({"rpo_seconds": "1"}, r"dr_readiness.rpo_seconds: expected a number >= 0; found '1'"),
    ({"rpo_seconds": -1}, "found -1"),
    ({"rpo_seconds": True}, "found True"),
    ({"drill_age_days": {"region": 0}}, "drill kind to days"),
    ([1], "must be a mapping"),
])
def test_bad_thresholds_are_refused_naming_found_and_expected(bad, message):
    with pytest.raises(ValueError, match=message):
        judge.thresholds(bad)


# ---------------------------------------------------------------- overall


def test_overall_verdict_and_exit_code():
    passing, warning, failing = (judge.check("a", judge.PASS), judge.check("b", judge.WARN),
                                 judge.check("c", judge.FAIL))
    assert judge.overall([passing]) == ("ready", 0)
    assert judge.overall([passing, warning]) == ("warnings", 1)
    assert judge.overall([passing, warning, failing]) == ("not_ready", 2)
    assert judge.overall([]) == ("not_ready", 2)  # nothing checked is not a ready


# ---------------------------------------------------------------- 1, 2 PostgreSQL


def test_replay_lag_idle_standby_is_caught_up_however_old_its_last_transaction():
    found = judge.pg_replay_lag("pg-b", 0, 0.0, False, LIMITS)
    assert found["verdict"] == "pass" and found["detail"] == "caught up"


def test_replay_lag_seconds_boundary_is_the_rpo():
    assert judge.pg_replay_lag("pg-b", 10, 1.0, False, LIMITS)["verdict"] == "pass"
    assert judge.pg_replay_lag("pg-b", 10, 1.001, False, LIMITS)["verdict"] == "fail"
    assert judge.pg_replay_lag("pg-b", 10, None, False, LIMITS)["verdict"] == "fail"  # not replayed within the RPO


def test_replay_lag_bytes_boundary():
    limit = LIMITS["pg_lag_bytes"][0]
    assert judge.pg_replay_lag("pg-b", limit, 0.1, False, LIMITS)["verdict"] == "pass"
    assert judge.pg_replay_lag("pg-b", limit + 1, 0.1, False, LIMITS)["verdict"] == "fail"


def test_paused_replay_fails_when_behind_and_warns_when_nothing_is_missing():
    behind = judge.pg_replay_lag("pg-b", 100, None, True, LIMITS)
    assert behind["verdict"] == "fail" and "pg_wal_replay_resume" in behind["detail"]
    assert judge.pg_replay_lag("pg-b", 0, 0.0, True, LIMITS)["verdict"] == "warn"


def test_unreadable_replay_position_fails():
    assert judge.pg_replay_lag("pg-b", None, None, False, LIMITS)["verdict"] == "fail"


def test_standbys_per_target_region():
    assert judge.pg_standbys("b", ["pg-b"], LIMITS)["verdict"] == "pass"
    assert judge.pg_standbys("b", [], LIMITS)["verdict"] == "fail"
    two = judge.thresholds({"standbys_per_region": 2})
    assert judge.pg_standbys("b", ["pg-b"], two)["verdict"] == "fail"


# ---------------------------------------------------------------- 3, 4, 5 Redis


def test_redis_link_up_from_the_primary_only():
    assert judge.redis_links("r-b", "up", "r-a", "r-a")["verdict"] == "pass"
    assert judge.redis_links("r-b", "down", "r-a", "r-a")["verdict"] == "fail"
    assert judge.redis_links("r-b", "up", "r-c", "r-a")["verdict"] == "fail"
    assert judge.redis_links("r-b", None, None, "r-a")["verdict"] == "fail"


def test_redis_offset_boundary():
    limit = LIMITS["redis_offset_bytes"][0]
    assert judge.redis_offset("r-b", limit, LIMITS)["verdict"] == "pass"
    assert judge.redis_offset("r-b", limit + 1, LIMITS)["verdict"] == "fail"
    assert judge.redis_offset("r-b", None, LIMITS)["verdict"] == "fail"


def test_backup_age_boundary_and_missing_backup():
    assert judge.age_check("b", 300.0, "redis_backup_age_seconds", LIMITS, "none")["verdict"] == "pass"
    assert judge.age_check("b", 300.01, "redis_backup_age_seconds", LIMITS, "none")["verdict"] == "fail"
    missing = judge.age_check("b", None, "redis_backup_age_seconds", LIMITS, "no verified backup")
    assert missing["verdict"] == "fail" and missing["detail"] == "no verified backup"


def test_newest_verified_backup_ignores_unverified_ones():
    backups = [dict(id="old", lastsave=1, verified=True), dict(id="new", lastsave=3, verified=False),
               dict(id="mid", lastsave=2, verified=True)]
    assert judge.newest_verified(backups)["id"] == "mid"
    assert judge.newest_verified([dict(id="x", lastsave=1, verified=False)]) is None


def test_not_configured_is_a_warning_never_a_pass():
    found = judge.not_configured("pg_backup_age", "no PostgreSQL backup tool", "pgBackRest")
    assert found["verdict"] == "warn" and found["detail"].startswith("not configured")


# ---------------------------------------------------------------- 8, 9, 10 DNS


def _row(name, ttl=30, values=("127.0.1.1",), error=None):
    return dict(name=name, ttl=ttl, values=list(values), error=error)


def test_dns_ttl_boundary_at_every_server():
    assert judge.dns_ttl("api", [_row("p", 60), _row("s", 30)], LIMITS)["verdict"] == "pass"
    found = judge.dns_ttl("api", [_row("p", 30), _row("s", 61)], LIMITS)
    assert found["verdict"] == "fail" and found["measured"] == 61  # the worst server counts
    assert judge.dns_ttl("api", [_row("p"), _row("s", None, error="timeout")], LIMITS)["verdict"] == "fail"


def test_dns_servers_agree():
    assert judge.dns_agree("api", [_row("p"), _row("s")])["verdict"] == "pass"
    assert judge.dns_agree("api", [_row("p"), _row("s", values=("127.0.1.2",))])["verdict"] == "fail"
    assert judge.dns_agree("api", [_row("p"), _row("s", error="timeout")])["verdict"] == "fail"
    assert judge.dns_agree("api", [])["verdict"] == "fail"


@pytest.mark.parametrize("outcome, verdict", [
    ("NXRRSET", "pass"), ("YXRRSET", "pass"), ("NOERROR", "fail"),
    ("auth (NOTAUTH ...)", "fail"), ("PeerBadSignature: bad signature", "fail"), ("BADKEY", "fail"),
])
def test_dns_credentials_only_a_prerequisite_failure_proves_the_key(outcome, verdict):
    assert judge.dns_credentials("dns-primary", outcome)["verdict"] == verdict


# ---------------------------------------------------------------- 11, 12, 13


def test_reachable_needs_every_part():
    up = dict(part="app", target="http://x", ok=True, error=None)
    down = dict(part="redis", target="127.0.0.1:1", ok=False, error="refused")
    assert judge.reachable("a", [up])["verdict"] == "pass"
    found = judge.reachable("a", [up, down])
    assert found["verdict"] == "fail" and "refused" in found["detail"] and found["measured"] == "1/2"
    assert judge.reachable("a", [])["verdict"] == "fail"


def test_capacity_boundary_and_undeclared():
    assert judge.capacity("b", 80, 100, LIMITS)["verdict"] == "pass"
    assert judge.capacity("b", 79.9, 100, LIMITS)["verdict"] == "fail"
    assert judge.capacity("b", None, 100, LIMITS)["verdict"] == "warn"
    assert judge.capacity("b", 10, None, LIMITS)["verdict"] == "warn"
    assert judge.capacity("b", 10, 0, LIMITS)["verdict"] == "pass"
    assert judge.capacity("b", "lots", 10, LIMITS)["verdict"] == "fail"


def test_certificate_boundary():
    assert judge.certificate("https://x", 30.0, None, LIMITS)["verdict"] == "pass"
    assert judge.certificate("https://x", 29.99, None, LIMITS)["verdict"] == "fail"
    assert judge.certificate("https://x", None, "no TLS answer", LIMITS)["verdict"] == "fail"


# ---------------------------------------------------------------- 14 drills, 17 contacts


def test_drills_per_kind_age_and_verdict():
    now = 1000 * DAY
    limit = LIMITS["drill_age_days"][0]["database_primary"]
    records = [dict(kind="database_primary", finished_at=now - limit * DAY, verdict="passed", run_id="d1"),
               dict(kind="redis_primary", finished_at=now - (limit + 0.1) * DAY, verdict="passed", run_id="d2"),
               dict(kind="app_instance", finished_at=now - DAY, verdict="failed", run_id="d3")]
    found = dict((c["name"], c) for c in judge.drills(records, now, LIMITS))
    assert found["drill database_primary"]["verdict"] == "pass"
    assert found["drill redis_primary"]["verdict"] == "fail" and found["drill redis_primary"]["detail"].startswith(
        "overdue")
    assert found["drill app_instance"]["verdict"] == "fail" and "did not pass" in found["drill app_instance"]["detail"]
    assert found["drill region"]["verdict"] == "warn"  # none recorded


def test_drill_history_format(tmp_path: Path):
    path = tmp_path / "history.jsonl"
    lines = [json.dumps(dict(kind="region", verdict="passed", finished_at="2026-01-02T03:04:05Z", run_id="r1")),
             "", "not json", json.dumps(dict(kind="region", verdict="passed"))]
    path.write_text("\n".join(lines) + "\n")
    records, problems = engine.read_drill_history(str(path))
    assert [r["run_id"] for r in records] == ["r1"]
    assert records[0]["finished_at"] == 1767323045.0
    assert len(problems) == 2 and problems[0].startswith(f"{path}:3:")
    assert engine.read_drill_history(str(tmp_path / "none.jsonl")) == ([], [])


def test_contacts_age_boundary():
    limit = LIMITS["contacts_age_days"][0]
    assert judge.age_check("contacts_age", limit * DAY, "contacts_age_days", LIMITS, "", unit="days",
                           scale=DAY)["verdict"] == "pass"
    assert judge.age_check("contacts_age", (limit + 0.01) * DAY, "contacts_age_days", LIMITS, "", unit="days",
                           scale=DAY)["verdict"] == "fail"


def test_table_lists_failures_first_and_ends_with_the_verdict():
    checks = [judge.check("a", judge.PASS, 1, "s", "<= 2", "seed"), judge.check("b", judge.FAIL, 3, "s", "<= 2",
                                                                             "seed", "too old")]
    lines = judge.table(checks)
    assert lines[1].startswith("FAIL") and lines[2].startswith("PASS")
    assert lines[-1] == "readiness: not ready (1 passed, 0 warnings, 1 failed)"


ARCHIVER_ROW = dict(in_recovery=False, last_archived_wal="000000010000000000000041", failed_count=0,
                    last_failed_wal=None, archived_ago=900.0, failing=False, current_wal="000000010000000000000042")


def test_an_idle_primary_whose_completed_segments_are_all_archived_has_an_archive_age_of_zero():
    """Nothing waits to be archived however long ago the last segment went: an idle primary switches none."""
    status = engine.judge_archiver(ARCHIVER_ROW, "pg-a")
    assert status["wal_archive_age_seconds"] == 0.0 and "every completed segment archived" in status["archive_detail"]


def test_completed_segments_waiting_give_the_age_of_the_last_archived_one():
    status = engine.judge_archiver(dict(ARCHIVER_ROW, current_wal="000000010000000000000045"), "pg-a")
    assert status["wal_archive_age_seconds"] == 900.0


def test_a_failing_archive_command_is_no_age_at_all_and_says_why():
    status = engine.judge_archiver(dict(ARCHIVER_ROW, failing=True, failed_count=7,
                                        last_failed_wal="000000010000000000000042"), "pg-a")
    assert status["wal_archive_age_seconds"] is None
    assert "archive_command failing on pg-a (7 failures" in status["archive_detail"]


def test_no_stanza_in_the_inventory_is_not_configured():
    assert engine.pg_backup_status({"pg_backup": {}}) is None
    checks = engine._pg_backup_hook({"pg_backup": {"stanza": ""}}, judge.thresholds({}), 0.0)
    assert [(c["name"], c["verdict"]) for c in checks] == [("pg_backup_age", "warn"), ("wal_archive_age", "warn"),
                                                           ("pg_restore_verified_age", "warn")]


def test_each_target_region_is_judged_by_the_residency_guard_the_regional_failover_runs():
    data = {"regions": {"a": {"jurisdiction": "EU"}, "b": {"jurisdiction": "US"}},
            "datasets": {"customers": {"class": "PII"}}}
    checks = engine._residency_hook({"residency": data, "target_regions": ["a", "b"]}, judge.thresholds({}), 0.0)
    verdicts = {c["name"]: (c["verdict"], c["detail"]) for c in checks}
    assert verdicts["residency region a"][0] == "pass"
    assert verdicts["residency region b"][0] == "fail" and "dataset customers (class PII)" in verdicts[
        "residency region b"][1]
    unset = engine._residency_hook({"residency": {}, "target_regions": ["b"]}, judge.thresholds({}), 0.0)
    assert [c["verdict"] for c in unset] == ["warn"]


def test_the_rpo_and_rto_come_from_the_bia_tier_table_and_its_inventory_overrides():
    assert LIMITS["rpo_seconds"][0] == 1.0 and LIMITS["rto_seconds"][0] == 300.0
    limits = judge.thresholds({}, {1: {"rpo_seconds": 5}})
    assert limits["rpo_seconds"] == (5.0, "tier 1 RPO (inventory dr_tier_objectives)")
    assert judge.thresholds({"rpo_seconds": 2}, {1: {"rpo_seconds": 5}})["rpo_seconds"][0] == 2  # dr_readiness wins
    with pytest.raises(ValueError):
        judge.thresholds({}, {1: {"rpo_seconds": "five"}})


# ---------------------------------------------------------------- 16 the lock store on etcd


def _members(*oks: bool) -> list[dict]:
    return [{"endpoint": f"http://127.0.0.1:{2379 + 2 * i}", "ok": ok, "locks": 1 if ok else 0,
             "error": None if ok else "Connection refused"} for i, ok in enumerate(oks)]


def test_every_etcd_member_answering_passes_and_says_the_locks_held():
    found = judge.lock_store_etcd(_members(True, True, True), "/erlmcp-dr/locks/")
    assert (found["name"], found["verdict"], found["measured"]) == ("lock_store etcd", judge.PASS, "3/3")
    assert "linearizable read of /erlmcp-dr/locks/ works (1 run lock held now)" in found["detail"]


def test_an_etcd_members_error_is_its_reason_not_the_http_clients_wrapping():
    refused = ("HTTPConnectionPool(host='127.0.0.1', port=2381): Max retries exceeded with url: /v3/kv/range "
               "(Caused by NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=2381): Failed to establish a new "
               "connection: [Errno 111] Connection refused\"))")
    assert judge.short_error(refused) == "[Errno 111] Connection refused"
    assert judge.short_error("HTTPConnectionPool(host='h', port=1): Read timed out. (read timeout=1.0)") == \
        "Read timed out. (read timeout=1.0): no answer within the request timeout"
    assert judge.short_error("etcd refused the login of dr_lock_etcd_user 'root': x") == \
        "etcd refused the login of dr_lock_etcd_user 'root': x"


def test_a_quorum_of_etcd_members_warns_and_names_the_silent_one():
    found = judge.lock_store_etcd(_members(True, False, True), "/p/")
    assert (found["verdict"], found["measured"]) == (judge.WARN, "2/3")
    assert "not answering: http://127.0.0.1:2381 (Connection refused)" in found["detail"]
    assert "2379" not in found["detail"] and "2383" not in found["detail"]  # only the silent member is named


@pytest.mark.parametrize("oks", [(True, False, False), (False, False, False), (True, False), ()])
def test_fewer_etcd_members_than_a_quorum_is_automation_unavailable_and_databases_untouched(oks):
    found = judge.lock_store_etcd(_members(*oks), "/p/")
    assert found["verdict"] == judge.FAIL
    assert found["detail"].startswith(f"automation unavailable: {sum(oks)} of {len(oks)} etcd members answer")
    assert f"a quorum needs {len(oks) // 2 + 1}" in found["detail"]
    assert "never demotes or stops a database" in found["detail"]


def test_the_readiness_module_passes_the_run_locks_own_etcd_variables():
    params = {"lock_store": "etcd", "lock_dir": None, "lock_etcd_password": "s3cret",
              "lock_etcd": {"endpoints": ["a:1", "b:1"], "user": "dr", "timeout": 1.5, "ca_file": None}}
    assert engine.lock_variables(params) == {"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": ["a:1", "b:1"],
                                             "dr_lock_etcd_user": "dr", "dr_lock_etcd_password": "s3cret",
                                             "dr_lock_etcd_timeout": 1.5}
    assert engine.lock_variables({"lock_etcd": {}}) == {}  # the run lock's default store, as erlmcp.dr.run_lock's


@pytest.mark.parametrize(("etcd", "expected"), [
    ({}, "dr_lock_etcd_endpoints is empty"),
    ({"endpoints": ["ftp://x:1"]}, "dr_lock_etcd_endpoints has 'ftp://x:1'"),
    ({"endpoints": ["x:1"], "user": "dr"}, "dr_lock_etcd_user and dr_lock_etcd_password go together"),
    ({"endpoints": ["x:1"], "timeout": "soon"}, "dr_lock_etcd_timeout is 'soon': expected seconds per request"),
])
def test_unusable_etcd_settings_fail_as_the_run_lock_would_never_the_directory_store(etcd, expected, monkeypatch):
    monkeypatch.delenv("ERLMCP_DR_LOCK_ETCD_ENDPOINTS", raising=False)
    (found,) = engine.lock_store_checks({"lock_store": "etcd", "lock_etcd": etcd})
    assert (found["name"], found["verdict"]) == ("lock_store etcd", judge.FAIL)
    assert found["detail"].startswith("automation unavailable: " + expected), found["detail"]
