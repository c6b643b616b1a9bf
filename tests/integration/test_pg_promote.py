"""erlmcp.dr.pg_promote on the real lab: promotion, its gates and refusals, check mode, idempotence."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from armed_helpers import bin_dir_without_controldata, kill_postmaster
from conftest import login_args, run_module, sql, state
from runbook_helpers import closed_port

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402

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






@pytest.fixture
def foreign_node() -> Iterator[lab.LabNode]:
    """A running primary of another cluster (its own initdb: another system identifier)."""
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-foreign-"))
    other = lab.LabConfig(root=root, port_base=lab.free_port_base())
    try:
        lab.make_owned_dir(root, 0o755)
        lab.make_owned_dir(root / "pg", 0o755)
        lab._init_primary(other.node("pg-a"))
        yield other.node("pg-a")
    finally:
        lab.down(other)
        shutil.rmtree(root, ignore_errors=True)


def members(cfg: lab.LabConfig, *names: str) -> list[dict[str, Any]]:
    return [dict(name=n, host="127.0.0.1", port=cfg.node(n).port) for n in names or ("pg-a", "pg-b", "pg-c")]


def stop_fence(cfg: lab.LabConfig, node: str = "pg-a", check: bool = False) -> dict[str, Any]:
    n = cfg.node(node)
    result = run_module("erlmcp.dr.pg_fence", dict(method="stop", data_dir=str(n.data_dir), log_file=str(n.log_file)),
                        check=check)
    assert not result["failed"], result.get("msg")
    return result


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
    # No timed WAL segment switch on pg-a between the catch-up below and the promotion: the switch's padding, written
    # page by page, moved pg-a's WAL position 8.9 MB past what pg-b had received in one CI run, and the lag gate
    # rightly refused. This test is about a clean promotion, not the archive.
    sql(cfg, "pg-a", "ALTER SYSTEM SET archive_timeout = 0")
    sql(cfg, "pg-a", "SELECT pg_reload_conf()")
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
                                                     "replay_not_paused", "lag", "single_writer"]
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
        override = {"login_port": closed_port()}
    result = run_module(MODULE, promote_args(cfg, **override))

    assert result["failed"] and result["changed"] is False and message in result["msg"]
    assert "nothing was changed" in result["msg"]
    assert WRONG_PASSWORD not in str(result)
    assert_still_standby_of_a(cfg)


def test_invalid_final_lsn_is_refused(fresh_lab):
    result = run_module(MODULE, promote_args(fresh_lab, primary_final_lsn="yesterday"))

    assert result["failed"] and "'yesterday' is not an LSN" in result["msg"]


# ------------------------------------------------ single writer, fencing never forced (issue 5 A, row 2)


def test_promote_refuses_while_another_member_is_writable_even_with_force(fresh_lab):
    cfg = fresh_lab
    # Row 2: fence_method=none and force=true with a live primary made two writable primaries.
    no_fence = run_module(MODULE, promote_args(cfg, force=True, fence=dict(method="none"), members=members(cfg)))
    assert no_fence["failed"] and "old_primary_fenced" in no_fence["msg"] and "(no override)" in no_fence["msg"]
    assert check(no_fence, "old_primary_fenced")["overridden"] is False
    assert_still_standby_of_a(cfg)

    # The old primary "confirmed down" (it is not) and every gate forced: the re-check of the members still refuses.
    blind = run_module(MODULE, promote_args(cfg, primary=None, primary_confirmed_down=True, force=True,
                                            members=members(cfg)))
    assert blind["failed"] and "single_writer" in blind["msg"] and "not even force" in blind["msg"]
    assert f"pg-a (127.0.0.1:{cfg.node('pg-a').port}) is a writable primary" in blind["msg"]
    assert blind["promoted"] is False and check(blind, "single_writer")["ok"] is False
    assert [m["name"] for m in blind["members"] if m["candidate"]] == ["pg-b"]
    assert_still_standby_of_a(cfg)


def test_promote_refuses_when_a_member_belongs_to_another_cluster(fresh_lab, foreign_node):
    cfg = fresh_lab
    fence_read_only(cfg)
    others = members(cfg) + [dict(name="pg-x", host="127.0.0.1", port=foreign_node.port)]

    result = run_module(MODULE, promote_args(cfg, members=others))

    assert result["failed"] and "single_writer" in result["msg"] and "belongs to another cluster" in result["msg"]
    assert result["foreign_members"] == ["pg-x"]
    assert_still_standby_of_a(cfg)


def test_promote_lists_unreachable_members_and_goes_on(fresh_lab):
    cfg = fresh_lab
    cfg.node("pg-a").server().stop(timeout=DEADLINE)

    result = run_module(MODULE, promote_args(cfg, primary_confirmed_down=True, members=members(cfg)))

    assert not result["failed"], result.get("msg")
    assert result["promoted"] is True and result["members_unreachable"] == ["pg-a"]
    assert check(result, "single_writer")["ok"] is True
    unreachable = next(m for m in result["members"] if m["name"] == "pg-a")
    assert unreachable["error_kind"] == "refused" and unreachable["reachable"] is False
    assert any("not reachable right before promoting" in w for w in result.get("warnings", []))


def test_force_does_not_replace_confirming_the_old_primary_is_down(fresh_lab):
    cfg = fresh_lab
    cfg.node("pg-a").server().stop(timeout=DEADLINE)

    result = run_module(MODULE, promote_args(cfg, force=True))

    assert result["failed"] and "old_primary_state" in result["msg"] and "never force" in result["msg"]
    assert check(result, "old_primary_state")["overridden"] is False
    assert_still_standby_of_a(cfg)


def test_stop_fence_result_confirms_the_old_primary_down_and_gives_its_final_lsn(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-a", "CREATE TABLE t AS SELECT g FROM generate_series(1, 5000) g")
    fence = stop_fence(cfg)

    result = run_module(MODULE, promote_args(cfg, fence=dict(method="stop", result=fence), members=members(cfg),
                                             max_lag_bytes=0, catchup_timeout=DEADLINE))

    assert not result["failed"], result.get("msg")
    assert result["promoted"] is True and result["reference_lsn"] == fence["final_lsn"] and result["lag_bytes"] == 0
    assert result["members_unreachable"] == ["pg-a"]
    assert sql(cfg, "pg-b", "SELECT count(*) AS n FROM t")[0]["n"] == 5000


def test_check_mode_judges_as_after_the_announced_fence_but_a_real_run_trusts_only_reality(fresh_lab):
    cfg = fresh_lab
    announced = stop_fence(cfg, check=True)  # check mode: pg-a keeps running, writable
    assert announced["changed"] is True and announced["fenced"] is True and state(cfg, "pg-a")["role"] == "primary"
    args = promote_args(cfg, fence=dict(method="stop", result=announced), members=members(cfg), max_lag_bytes=0,
                        catchup_timeout=DEADLINE)

    plan = run_module(MODULE, args, check=True)
    assert not plan["failed"], plan.get("msg")
    assert plan["would_promote"] is True and check(plan, "old_primary_fenced")["ok"] is True
    assert plan["lag_bytes"] == 0 and plan["reference_lsn"] is not None

    without = run_module(MODULE, promote_args(cfg, members=members(cfg)), check=True)
    assert without["failed"] and "old_primary_fenced" in without["msg"]

    # Outside check mode a result claiming "fenced" does not beat a live writable primary.
    real = run_module(MODULE, args)
    assert real["failed"] and "old_primary_fenced" in real["msg"]
    assert_still_standby_of_a(cfg)
    assert state(cfg, "pg-a")["role"] == "primary"


# ---------------------------------------------------------------- timeline (row 12)


def test_timeline_before_is_the_one_the_candidate_replays_after_two_switchovers(fresh_lab):
    cfg = fresh_lab
    switchover(cfg, "pg-a", "pg-b", rejoin=("pg-a", "pg-c"))
    switchover(cfg, "pg-b", "pg-a", rejoin=("pg-b", "pg-c"))
    primary_timeline = state(cfg, "pg-a")["timeline"]
    assert primary_timeline == 3

    fence = stop_fence(cfg, "pg-a")
    result = run_module(MODULE, promote_args(cfg, node="pg-c", fence=dict(method="stop", result=fence),
                                             members=members(cfg), max_lag_bytes=0, catchup_timeout=DEADLINE))

    assert not result["failed"], result.get("msg")
    assert result["timeline_before"] == primary_timeline and result["timeline_after"] == primary_timeline + 1
    assert f"timeline {primary_timeline} -> {primary_timeline + 1}" in result["msg"]


def switchover(cfg: lab.LabConfig, old: str, new: str, rejoin: tuple[str, ...]) -> None:
    fence = stop_fence(cfg, old)
    promoted = run_module(MODULE, promote_args(cfg, node=new, primary=old, fence=dict(method="stop", result=fence),
                                               max_lag_bytes=0, catchup_timeout=DEADLINE))
    assert not promoted["failed"], promoted.get("msg")
    for node in rejoin:
        n = cfg.node(node)
        follow = run_module("erlmcp.dr.pg_standby_follow", dict(
            login_args(cfg, node), data_dir=str(n.data_dir), log_file=str(n.log_file), primary_host="127.0.0.1",
            primary_port=cfg.node(new).port, replication_user=lab.REPLICATION_USER,
            replication_password=lab.LAB_PASSWORD, wait_timeout=DEADLINE))
        assert not follow["failed"], follow.get("msg")


def test_rerun_on_a_promoted_candidate_reports_a_second_writer_as_split_brain(fresh_lab):
    cfg = fresh_lab
    cfg.node("pg-a").server().stop(timeout=DEADLINE)
    first = run_module(MODULE, promote_args(cfg, primary_confirmed_down=True, members=members(cfg)))
    assert not first["failed"], first.get("msg")
    cfg.node("pg-a").server().start(timeout=DEADLINE)  # the old primary comes back, writable

    again = run_module(MODULE, promote_args(cfg, primary_confirmed_down=True, members=members(cfg)))

    assert again["failed"] and again["changed"] is False and "split brain" in again["msg"]
    assert f"pg-a (127.0.0.1:{cfg.node('pg-a').port}) is a writable primary" in again["msg"]


# ---------------------------------------------------------------- fence.perform: one step fences and promotes


def armed_args(cfg: lab.LabConfig, node: str = "pg-b", primary: str = "pg-a", **fence: Any) -> dict[str, Any]:
    """A switchover's promotion that fences the old primary itself (stop, clean shutdown required)."""
    old = cfg.node(primary)
    return promote_args(cfg, node, primary, members=members(cfg), max_lag_bytes=0, catchup_timeout=DEADLINE,
                        fence=dict(dict(method="stop", perform=True, data_dir=str(old.data_dir),
                                        log_file=str(old.log_file), require_clean_shutdown=True), **fence))


def test_perform_fences_then_promotes_in_one_step_losing_nothing(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-a", "CREATE TABLE armed_marker AS SELECT 1 AS n")

    result = run_module(MODULE, armed_args(cfg), diff=True)

    assert not result["failed"], result.get("msg")
    assert result["changed"] is True and result["promoted"] is True, result
    fence = result["fence_result"]
    assert fence["changed"] is True and fence["fenced"] is True and fence["clean_shutdown"] is True, fence
    assert result["reference_lsn"] == fence["final_lsn"] and result["lost_bytes_max"] == 0, result
    assert not cfg.node("pg-a").server().is_running()
    assert state(cfg, "pg-b")["in_recovery"] is False and state(cfg, "pg-b")["timeline"] == 2
    assert sql(cfg, "pg-b", "SELECT n FROM armed_marker") == [{"n": 1}]
    # diff: the fence's before/after, then the candidate's role
    assert result["diff"][0] == {"before": {"fenced": False}, "after": {"fenced": True}}, result["diff"]
    assert result["diff"][1]["after"]["role"] == "primary", result["diff"]


def test_perform_in_check_mode_touches_nothing_and_says_what_it_would_do(fresh_lab):
    cfg = fresh_lab
    before = state(cfg, "pg-a")["current_lsn"]

    result = run_module(MODULE, armed_args(cfg), check=True)

    assert not result["failed"], result.get("msg")
    assert result["would_promote"] is True and result["promoted"] is False and result["changed"] is True, result
    assert result["fence_result"]["changed"] is True and result["fence_result"]["fenced"] is True, result
    assert cfg.node("pg-a").server().is_running()
    assert state(cfg, "pg-a")["in_recovery"] is False and state(cfg, "pg-a")["current_lsn"] == before
    assert_still_standby_of_a(cfg)


def test_perform_refuses_before_fencing_when_the_candidate_replay_is_paused(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-b", "SELECT pg_wal_replay_pause()")

    result = run_module(MODULE, armed_args(cfg))

    assert result["failed"] and "nothing was fenced" in result["msg"] and "replay_not_paused" in result["msg"], result
    assert "fence_result" not in result, result  # armed checks refused: the fence never ran
    assert cfg.node("pg-a").server().is_running() and state(cfg, "pg-a")["in_recovery"] is False
    assert_still_standby_of_a(cfg)


def test_a_failed_fence_never_promotes_and_returns_the_fence_result(fresh_lab):
    """pg_ctl stops the old primary, then pg_controldata cannot run: the fence fails after stopping it."""
    cfg = fresh_lab

    result = run_module(MODULE, armed_args(cfg, bin_dir=str(bin_dir_without_controldata(cfg))))

    assert result["failed"] and "(fencing the old primary 127.0.0.1:" in result["msg"], result
    assert result["msg"].endswith("nothing was promoted") and "pg_controldata" in result["msg"], result
    assert result["promoted"] is False and result["fence_result"]["failed"] is True, result
    assert not cfg.node("pg-a").server().is_running()  # stopped: a rescue must start it again
    assert_still_standby_of_a(cfg)
    cfg.node("pg-a").server().start(timeout=DEADLINE)  # what the runbook's rescue does (unfence)


def test_an_unclean_stop_is_refused_when_a_clean_one_is_required(fresh_lab):
    cfg = fresh_lab
    kill_postmaster(cfg)

    result = run_module(MODULE, armed_args(cfg))

    assert result["failed"] and "not shut down cleanly" in result["msg"], result
    assert "nothing was promoted" in result["msg"], result
    fence = result["fence_result"]
    assert fence["fenced"] is True and fence["clean_shutdown"] is False and fence["changed"] is False, fence
    assert_still_standby_of_a(cfg)
