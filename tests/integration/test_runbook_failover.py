"""database_failover end to end on the real lab, through the CLI and the Python API.

Every test gets its own lab (conftest.fresh_lab) and its own run folders (ERLMCP_DR_HOME).
"""

from __future__ import annotations

import json

import pytest
from conftest import lab_inventory
from runbook_helpers import (
    DEADLINE,
    as_int,
    changed_steps,
    failure_message,
    has_row,
    node_state,
    pg,
    primary_on,
    run_json,
    sql,
    step,
    streaming_from,
    summary,
    takes_no_writes,
    topology,
    wait_for,
    wait_topology,
    write_row,
)

import erlmcp_dr
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.result import REPORT_FILE, RESULT_FILE, RunResult

pytestmark = pytest.mark.integration




def endpoint(cfg, node: str) -> str:
    return f"127.0.0.1:{cfg.node(node).port}"


def app_config_backups(cfg) -> list:
    """The previous config kept beside it (erlmcp.dr.app_db_config writes <path>.previous)."""
    return sorted(cfg.app_config_path.parent.glob(cfg.app_config_path.name + ".previous"))


def stop_receiving_wal(cfg, node: str) -> None:
    """The standby keeps running but its WAL receiver stops: it falls behind the others."""
    sql(cfg, node, "ALTER SYSTEM SET primary_conninfo = ''")
    sql(cfg, node, "SELECT pg_reload_conf()")
    wait_topology(cfg, {node: {"role": "standby", "upstream": None}}, f"{node} without a WAL receiver")


# ---------------------------------------------------------------- CLI


def test_cli_failover_promotes_the_most_advanced_standby_and_a_second_run_changes_nothing(fresh_lab, home):
    cfg = fresh_lab
    inventory = str(lab_inventory(cfg))
    # pg-b stops receiving WAL and a row is committed after that: pg-c is the most advanced
    # standby (a tie would be broken by name, in pg-b's favour).
    stop_receiving_wal(cfg, "pg-b")
    write_row(cfg, "pg-a", "before the failover")
    wait_for(lambda: has_row(cfg, "pg-c", "before the failover"), DEADLINE, what="pg-c has the row")
    assert pg.lsn_diff(node_state(cfg, "pg-c")["receive_lsn"], node_state(cfg, "pg-b")["receive_lsn"]) > 0
    # The application's config as it was before the incident: the runbook must keep a backup of it.
    initial_config = json.dumps({"database": {"primary": endpoint(cfg, "pg-a"), "primary_node": "pg-a",
                                              "replicas": [endpoint(cfg, "pg-b"), endpoint(cfg, "pg-c")],
                                              "replica_nodes": ["pg-b", "pg-c"]}}, indent=4) + "\n"
    cfg.app_config_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.app_config_path.write_text(initial_config)

    cli, result = run_json("run", "database_failover", "-i", inventory, "--yes", expect_rc=0)

    # The result: on stdout and in the run folder, with a timed step list and the summary.
    assert result["status"] == "successful" and result["succeeded"] is True, failure_message(result)
    assert RunResult.load(result["run_dir"]).to_dict() == result
    assert result["steps"] and all(isinstance(s["duration"], (int, float)) and s["duration"] >= 0
                                   for s in result["steps"]), [(s["task"], s["duration"]) for s in result["steps"]]
    # One step fences and promotes (no task switch while writes are unavailable); the fence's result is in it.
    fenced_and_promoted = step(result, "Fence the old primary, promote the candidate")
    assert fenced_and_promoted["changed"] is True
    assert fenced_and_promoted["data"]["promoted"] is True, fenced_and_promoted["data"]
    assert fenced_and_promoted["data"]["fence_result"]["fenced"] is True, fenced_and_promoted["data"]
    assert "fenced pg-a by stop" in " ".join(summary(result)["did"]), summary(result)
    facts = summary(result)
    assert facts["action"] == "promote", facts
    assert facts["old_primary"] == "pg-a" and facts["new_primary"] == "pg-c", facts
    assert as_int(facts["timeline_before"]) == 1 and as_int(facts["timeline_after"]) == 2, facts
    assert facts["streaming"] == ["pg-b"] and facts["completed"] and facts["end_state"]["ok"], facts

    # The old primary is fenced (stopped) and takes no writes.
    topo = topology(cfg)
    assert topo["pg-a"]["state"] == "stopped", topo
    assert takes_no_writes(cfg, "pg-a").startswith("connection refused")
    # pg-c is the primary on timeline 2, has what pg-a had, and takes writes.
    assert topo["pg-c"] == dict(topo["pg-c"], **primary_on(2)), topo
    assert has_row(cfg, "pg-c", "before the failover")
    write_row(cfg, "pg-c", "after the failover")
    # pg-b streams from pg-c on timeline 2 and receives what pg-b had missed and what came after.
    wait_topology(cfg, {"pg-b": streaming_from("pg-c", 2)}, "pg-b streaming from pg-c")
    wait_for(lambda: has_row(cfg, "pg-b", "before the failover") and has_row(cfg, "pg-b", "after the failover"),
             DEADLINE, what="pg-b replays pg-c's rows")

    # The application is pointed at the new primary and its replica; the old config was kept.
    app = json.loads(cfg.app_config_path.read_text())["database"]
    assert app["primary"] == endpoint(cfg, "pg-c") and app["primary_node"] == "pg-c", app
    assert app["replicas"] == [endpoint(cfg, "pg-b")] and app["replica_nodes"] == ["pg-b"], app
    backups = app_config_backups(cfg)
    assert len(backups) == 1 and backups[0].read_text() == initial_config, backups
    config_after_first = cfg.app_config_path.read_bytes()
    topo_after_first = topology(cfg)

    # The same command again: it sees the failover done and changes nothing.
    _, again = run_json("run", "database_failover", "-i", inventory, "--yes", expect_rc=0)

    assert again["status"] == "successful", failure_message(again)
    assert summary(again)["action"] == "none", summary(again)
    assert summary(again)["new_primary"] == "pg-c", summary(again)
    assert changed_steps(again) == []
    assert topology(cfg) == topo_after_first
    assert cfg.app_config_path.read_bytes() == config_after_first
    assert app_config_backups(cfg) == backups
    assert again["run_id"] != result["run_id"]


# ---------------------------------------------------------------- Python API


def test_api_failover_to_the_requested_candidate(fresh_lab, home):
    cfg = fresh_lab

    result = erlmcp_dr.run("database_failover", inventory=lab_inventory(cfg), extravars={"candidate": "pg-c"})

    assert result.succeeded, f"{result.status}: {result.failing_step and result.failing_step.message} {result.error}"
    facts = dict(result.summary["details"], action=result.summary["action"], reason=result.summary["reason"])
    assert facts["action"] == "promote" and facts["new_primary"] == "pg-c" and facts["old_primary"] == "pg-a", facts
    assert "requested" in facts["reason"], facts
    wait_topology(cfg, {"pg-c": primary_on(2), "pg-b": streaming_from("pg-c", 2)}, "pg-c primary, pg-b its standby")
    assert topology(cfg)["pg-a"]["state"] == "stopped"
    write_row(cfg, "pg-c", "pg-c takes writes")

    run_dir = home / "runs" / result.run_id
    assert result.run_dir == str(run_dir)
    assert (run_dir / RESULT_FILE).is_file() and (run_dir / REPORT_FILE).is_file()
    assert RunResult.load(run_dir).to_dict() == result.to_dict()
    assert result.run_id in (run_dir / REPORT_FILE).read_text()
    assert (run_dir / "artifacts" / result.run_id).is_dir()  # ansible-runner's own record of the run


# ---------------------------------------------------------------- the RPO gate


def pause_replay(cfg, node: str) -> None:
    sql(cfg, node, "SELECT pg_wal_replay_pause()")
    wait_for(lambda: sql(cfg, node, "SELECT pg_get_wal_replay_pause_state() AS s")[0]["s"] == "paused",
             DEADLINE, what=f"replay paused on {node}")


def delay_replay(cfg, node: str) -> None:
    """Replay waits an hour behind each commit (not paused): the standby lags while it receives everything."""
    sql(cfg, node, "ALTER SYSTEM SET recovery_min_apply_delay = '1h'")
    sql(cfg, node, "SELECT pg_reload_conf()")
    wait_for(lambda: sql(cfg, node, "SHOW recovery_min_apply_delay")[0]["recovery_min_apply_delay"] == "1h",
             DEADLINE, what=f"recovery_min_apply_delay on {node}")


LAGGING = {
    # how pg-b is made to lag -> words the refusal must contain (besides the candidate and force)
    "replay_paused": (pause_replay, ("paused",)),
    "apply_delay": (delay_replay, ("max_lag_bytes", "bytes behind")),
}


@pytest.mark.parametrize("how", sorted(LAGGING))
def test_failover_refuses_a_lagging_candidate_touching_nothing_then_force_promotes_it(fresh_lab, home, how):
    """pg-b lags more than max_lag_bytes (1 MiB): refused, nothing changed. With force=true it is
    promoted anyway, its replay still paused / delayed (force overrides both gates; a promotion
    replays all WAL the standby received, so nothing it received is lost)."""
    cfg = fresh_lab
    inventory = str(lab_inventory(cfg))
    make_lag, words = LAGGING[how]
    make_lag(cfg, "pg-b")
    # A delayed standby replays up to the first commit record it must hold back: commit one
    # first, so that the 4 MB of WAL behind it stay unreplayed too.
    write_row(cfg, "pg-a", "the lag starts here")
    sql(cfg, "pg-a", "CREATE TABLE filler AS SELECT g, md5(g::text) AS h FROM generate_series(1, 40000) g")

    def lag_of_b():
        row = next(r for r in lab.status(cfg)["nodes"] if r["name"] == "pg-b")
        return row["lag_bytes"] if (row["lag_bytes"] or 0) > 1048576 else None

    lag, _ = wait_for(lag_of_b, DEADLINE, what="pg-b more than 1 MiB behind")
    before = topology(cfg)
    assert before == {name: dict(before[name], **want) for name, want in {
        "pg-a": primary_on(1), "pg-b": streaming_from("pg-a", 1), "pg-c": streaming_from("pg-a", 1)}.items()}

    _, refused = run_json("run", "database_failover", "-i", inventory, "-e", "candidate=pg-b", "--yes", expect_rc=1)

    message = failure_message(refused)
    assert refused["status"] == "failed"
    assert "pg-b" in message and "force" in message and all(word in message for word in words), message
    assert changed_steps(refused) == []
    assert topology(cfg) == before  # same roles, timelines, upstreams, pids: nothing restarted
    write_row(cfg, "pg-a", "pg-a still takes writes")
    assert not cfg.app_config_path.exists()

    _, forced = run_json("run", "database_failover", "-i", inventory, "-e", "candidate=pg-b", "-e", "force=true",
                         "--yes", expect_rc=0)

    facts = summary(forced)
    assert facts["action"] == "promote" and facts["new_primary"] == "pg-b", facts
    assert as_int(facts["lag_bytes_at_gate"]) > 1048576 and as_int(facts["timeline_after"]) == 2, facts
    assert as_int(facts["lost_bytes_max"]) == 0, facts
    topo = wait_topology(cfg, {"pg-b": primary_on(2), "pg-c": streaming_from("pg-b", 2)},
                         "pg-b primary, pg-c its standby")
    assert topo["pg-a"]["state"] == "stopped", topo
    assert lag > 1048576
    # Everything pg-b had received was replayed by the promotion.
    assert sql(cfg, "pg-b", "SELECT count(*) AS n FROM filler")[0]["n"] == 40000
    assert has_row(cfg, "pg-b", "pg-a still takes writes")
    write_row(cfg, "pg-b", "pg-b takes writes")
