"""erlmcp.dr.pg_promote on the real lab: promotion, its gates and refusals, check mode, idempotence."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import login_args, run_module, sql, state

from erlmcp_dr import lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils import _postgres as pg  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._wait import wait_for  # noqa: E402

pytestmark = pytest.mark.integration

MODULE = "erlmcp.dr.pg_promote"
DEADLINE = 60
WRONG_PASSWORD = "Not-The-Lab-Password-7"


def promote_args(cfg: lab.LabConfig, node: str = "pg-b", primary: str | None = "pg-a", **extra: Any) -> dict[str, Any]:
    args = dict(login_args(cfg, node), wait_timeout=DEADLINE)
    if primary:
        args.update(primary_host="127.0.0.1", primary_port=cfg.node(primary).port)
    args.update(extra)
    return args






def fence_read_only(cfg: lab.LabConfig, node: str = "pg-a") -> None:
    result = run_module("erlmcp.dr.pg_fence", dict(login_args(cfg, node), method="read_only"))
    assert not result["failed"], result.get("msg")


def replayed_to(cfg: lab.LabConfig, node: str, lsn: str) -> bool:
    return pg.lsn_diff(state(cfg, node)["replay_lsn"], lsn) >= 0


def check(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["checks"] if c["name"] == name)


def assert_still_standby_of_a(cfg: lab.LabConfig, node: str = "pg-b") -> None:
    s = state(cfg, node)
    assert s["in_recovery"] is True and s["timeline"] == 1


# ---------------------------------------------------------------- promotion


def test_promotes_a_standby_then_reports_no_change(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-a", "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g")
    fence_read_only(cfg)
    a_lsn = state(cfg, "pg-a")["current_lsn"]
    wait_for(lambda: replayed_to(cfg, "pg-b", a_lsn), DEADLINE, what="pg-b caught up")

    result = run_module(MODULE, promote_args(cfg), diff=True)

    assert not result["failed"], result.get("msg")
    assert result["changed"] is True and result["promoted"] is True and result["role"] == "primary"
    assert result["timeline_before"] == 1 and result["timeline_after"] == 2
    assert pg.lsn_diff(result["lsn_before"], a_lsn) >= 0
    assert pg.lsn_diff(result["lsn_after"], result["lsn_before"]) > 0
    assert result["reference_lsn"] is not None and result["lag_bytes"] == 0 and result["lost_bytes_max"] == 0
    assert result["promote_seconds"] >= 0 and int(result["write_xid"]) > 0
    assert result["system_identifier"] == state(cfg, "pg-a")["system_identifier"]
    assert [c["name"] for c in result["checks"]] == ["target_is_standby", "system_identifier", "old_primary_fenced",
                                                     "replay_not_paused", "lag"]
    assert all(c["ok"] is True and c["overridden"] is False for c in result["checks"])
    assert result["old_primary"]["reachable"] is True and result["old_primary"]["read_only"] is True
    assert result["diff"]["before"] == {"role": "standby", "timeline": 1}
    assert result["diff"]["after"] == {"role": "primary", "timeline": 2}
    assert state(cfg, "pg-b")["role"] == "primary" and state(cfg, "pg-b")["timeline"] == 2
    sql(cfg, "pg-b", "INSERT INTO t VALUES (101)")
    assert sql(cfg, "pg-b", "SELECT count(*) AS n FROM t")[0]["n"] == 101

    again = run_module(MODULE, promote_args(cfg))
    assert not again["failed"], again.get("msg")
    assert again["changed"] is False and again["promoted"] is False
    assert again["timeline_after"] == 2 and "already is a primary on timeline 2" in again["msg"]

    same = run_module(MODULE, promote_args(cfg, expected_timeline=2))
    assert not same["failed"] and same["changed"] is False
    other = run_module(MODULE, promote_args(cfg, expected_timeline=3))
    assert other["failed"] and "timeline 2, expected 3 (expected_timeline)" in other["msg"]


def test_check_mode_runs_the_checks_and_changes_nothing(fresh_lab):
    cfg = fresh_lab
    fence_read_only(cfg)
    before = {n: state(cfg, n) for n in ("pg-a", "pg-b")}

    result = run_module(MODULE, promote_args(cfg), check=True)

    assert not result["failed"], result.get("msg")
    assert result["changed"] is True and result["would_promote"] is True and result["promoted"] is False
    assert result["timeline_after"] is None and result["lsn_after"] is None
    assert "would promote" in result["msg"] and all(c["ok"] for c in result["checks"])
    after = {n: state(cfg, n) for n in ("pg-a", "pg-b")}
    for node in ("pg-a", "pg-b"):
        assert after[node]["role"] == before[node]["role"] and after[node]["timeline"] == before[node]["timeline"]
    assert pg.lsn_diff(after["pg-b"]["replay_lsn"], before["pg-b"]["replay_lsn"]) >= 0
    assert pg.lsn_diff(after["pg-a"]["current_lsn"], after["pg-b"]["receive_lsn"]) >= 0
    # pg-b still follows pg-a: a new write on pg-a arrives there.
    sql(cfg, "pg-a", "BEGIN READ WRITE; CREATE TABLE after_check (i int); COMMIT")
    lsn = state(cfg, "pg-a")["current_lsn"]
    wait_for(lambda: replayed_to(cfg, "pg-b", lsn), DEADLINE, what="pg-b replays pg-a")
    assert sql(cfg, "pg-b", "SELECT to_regclass('after_check') IS NOT NULL AS there")[0]["there"]


def test_switchover_path_waits_for_final_lsn_after_a_stop_fence(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-a", "CREATE TABLE t AS SELECT g FROM generate_series(1, 5000) g")
    n = cfg.node("pg-a")
    fence = run_module("erlmcp.dr.pg_fence", dict(method="stop", data_dir=str(n.data_dir), log_file=str(n.log_file)))
    assert not fence["failed"], fence.get("msg")

    result = run_module(MODULE, promote_args(cfg, primary_final_lsn=fence["final_lsn"], max_lag_bytes=0,
                                             catchup_timeout=DEADLINE))

    assert not result["failed"], result.get("msg")
    assert result["promoted"] is True and result["lag_bytes"] == 0 and result["lost_bytes_max"] == 0
    assert result["reference_lsn"] == fence["final_lsn"] and result["old_primary"]["reachable"] is False
    assert check(result, "system_identifier")["ok"] is None  # old primary down, no expected_system_identifier
    assert sql(cfg, "pg-b", "SELECT count(*) AS n FROM t")[0]["n"] == 5000


# ---------------------------------------------------------------- gates


def test_lagging_standby_is_refused_then_forced(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-b", "SELECT pg_wal_replay_pause()")
    sql(cfg, "pg-a", "CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
    fence_read_only(cfg)
    a_lsn = state(cfg, "pg-a")["current_lsn"]
    wait_for(lambda: pg.lsn_diff(state(cfg, "pg-b")["receive_lsn"], a_lsn) >= 0, DEADLINE, what="pg-b received")

    refused = run_module(MODULE, promote_args(cfg))

    assert refused["failed"] and refused["changed"] is False and refused["promoted"] is False
    assert "refusing to promote" in refused["msg"] and "nothing was changed" in refused["msg"]
    assert "max_lag_bytes" in refused["msg"] and "force" in refused["msg"]
    assert refused["lag_bytes"] > 1048576
    lag = check(refused, "lag")
    assert lag["ok"] is False and "bytes behind" in lag["found"] and "1048576" in lag["expected"]
    assert_still_standby_of_a(cfg)

    forced = run_module(MODULE, promote_args(cfg, force=True))

    assert not forced["failed"], forced.get("msg")
    assert forced["promoted"] is True and forced["timeline_after"] == 2
    assert check(forced, "lag")["overridden"] is True and check(forced, "replay_not_paused")["overridden"] is True
    assert 0 <= forced["lost_bytes_max"] < forced["lag_bytes"]
    assert any("force overrode" in w for w in forced.get("warnings", []))
    # The WAL it had received but not replayed was replayed by the promotion: nothing lost.
    assert sql(cfg, "pg-b", "SELECT count(*) AS n FROM big")[0]["n"] == 20000


def test_paused_replay_is_refused(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-b", "SELECT pg_wal_replay_pause()")
    fence_read_only(cfg)

    result = run_module(MODULE, promote_args(cfg, max_lag_bytes=100_000_000))

    assert result["failed"] and "replay_not_paused: found replay paused" in result["msg"]
    assert "pg_wal_replay_resume" in result["msg"] and "(override: force)" in result["msg"]
    assert_still_standby_of_a(cfg)


def test_unfenced_old_primary_is_refused(fresh_lab):
    result = run_module(MODULE, promote_args(fresh_lab))

    assert result["failed"] and "old_primary_fenced" in result["msg"] and "taking writes" in result["msg"]
    assert_still_standby_of_a(fresh_lab)


def test_promoting_the_primary_itself_fails_clearly(fresh_lab):
    cfg = fresh_lab
    result = run_module(MODULE, promote_args(cfg, node="pg-a"))
    assert result["failed"] and "is the primary you are failing away from" in result["msg"]

    # Same server under another name: recognised by identity, not by the address.
    by_name = run_module(MODULE, promote_args(cfg, node="pg-a", login_host="localhost"))
    assert by_name["failed"] and "is the primary you are failing away from" in by_name["msg"]
    assert state(cfg, "pg-a")["timeline"] == 1


def test_old_primary_unreachable_needs_confirmation(fresh_lab):
    cfg = fresh_lab
    cfg.node("pg-a").server().stop(timeout=DEADLINE)

    refused = run_module(MODULE, promote_args(cfg))

    assert refused["failed"] and "old_primary_state" in refused["msg"]
    assert "primary_confirmed_down" in refused["msg"] and "connection refused" in refused["msg"]
    assert refused["lost_bytes_max"] is None and refused["lag_bytes"] is None
    assert_still_standby_of_a(cfg)

    wrong_cluster = run_module(MODULE, promote_args(cfg, primary_confirmed_down=True, force=True,
                                                    expected_system_identifier="123"))
    assert wrong_cluster["failed"] and "system_identifier" in wrong_cluster["msg"]
    assert "(no override)" in wrong_cluster["msg"]
    assert_still_standby_of_a(cfg)

    sysid = state(cfg, "pg-b")["system_identifier"]
    result = run_module(MODULE, promote_args(cfg, primary_confirmed_down=True, expected_system_identifier=sysid))

    assert not result["failed"], result.get("msg")
    assert result["promoted"] is True and result["timeline_after"] == 2
    assert result["lost_bytes_max"] is None and check(result, "system_identifier")["ok"] is True
    assert check(result, "old_primary_state")["ok"] is True


def test_fence_command_must_succeed_before_promoting(fresh_lab, tmp_path):
    cfg = fresh_lab
    cfg.node("pg-a").server().stop(timeout=DEADLINE)
    marker = tmp_path / "fenced"

    failing = run_module(MODULE, promote_args(cfg, fence_command="echo cannot reach the BMC; exit 3"))
    assert failing["failed"] and "fence_command exited with 3" in failing["msg"]
    assert "cannot reach the BMC" in failing["msg"] and "nothing was promoted" in failing["msg"]
    assert_still_standby_of_a(cfg)

    in_check = run_module(MODULE, promote_args(cfg, fence_command=f"touch {marker}"), check=True)
    assert not in_check["failed"] and in_check["would_promote"] and not marker.exists()

    result = run_module(MODULE, promote_args(cfg, fence_command=f"touch {marker}"))
    assert not result["failed"], result.get("msg")
    assert result["fence_command_rc"] == 0 and marker.exists() and result["promoted"] is True


# ---------------------------------------------------------------- connection failures


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"login_password": WRONG_PASSWORD}, "wrong or missing password (login_password)"),
        ({"login_host": "no-such-host.invalid"}, "cannot resolve host 'no-such-host.invalid' (login_host)"),
        ({"login_port": "closed"}, "connection refused"),
    ],
)
def test_connection_failures_are_clear(fresh_lab, override, message):
    cfg = fresh_lab
    if override.get("login_port") == "closed":
        override = {"login_port": cfg.port_base + 3}  # the three lab ports are base .. base + 2
    result = run_module(MODULE, promote_args(cfg, **override))

    assert result["failed"] and result["changed"] is False and message in result["msg"]
    assert "nothing was changed" in result["msg"]
    assert WRONG_PASSWORD not in str(result)
    assert_still_standby_of_a(cfg)


def test_invalid_final_lsn_is_refused(fresh_lab):
    result = run_module(MODULE, promote_args(fresh_lab, primary_final_lsn="yesterday"))

    assert result["failed"] and "'yesterday' is not an LSN" in result["msg"]
