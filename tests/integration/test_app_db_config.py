"""erlmcp.dr.app_db_config on the real lab: the app's config from a live pg_replication_info result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import login_args, run_module

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

MODULE = "erlmcp.dr.app_db_config"


def cluster(cfg: lab.LabConfig) -> dict[str, Any]:
    nodes = [{"name": n.name, "host": "127.0.0.1", "port": n.port} for n in cfg.nodes]
    result = run_module("erlmcp.dr.pg_replication_info", dict(nodes=nodes, login_user=lab.SUPERUSER,
                                                               login_password=lab.LAB_PASSWORD))
    assert not result["failed"], result.get("msg")
    return {k: v for k, v in result.items() if k not in ("failed", "changed", "invocation")}


def test_writes_the_live_primary_and_streaming_replicas_then_changes_nothing(fresh_lab, tmp_path):
    cfg = fresh_lab
    path = tmp_path / "database.json"
    live = cluster(cfg)

    planned = run_module(MODULE, dict(path=str(path), cluster=live), check=True, diff=True)
    assert not planned["failed"] and planned["changed"] is True and not path.exists()

    written = run_module(MODULE, dict(path=str(path), cluster=live))
    again = run_module(MODULE, dict(path=str(path), cluster=cluster(cfg)))

    assert not written["failed"], written.get("msg")
    port = {n.name: n.port for n in cfg.nodes}
    assert json.loads(path.read_text()) == {"database": {
        "primary": f"127.0.0.1:{port['pg-a']}",
        "replicas": [f"127.0.0.1:{port['pg-b']}", f"127.0.0.1:{port['pg-c']}"],
        "primary_node": "pg-a", "replica_nodes": ["pg-b", "pg-c"]}}
    assert written["changed"] is True and again["changed"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["database.json"]


def test_a_read_only_fenced_primary_is_refused_and_nothing_is_written(fresh_lab, tmp_path):
    cfg = fresh_lab
    fenced = run_module("erlmcp.dr.pg_fence", dict(login_args(cfg, "pg-a"), method="read_only"))
    assert not fenced["failed"], fenced.get("msg")
    path: Path = tmp_path / "database.json"

    result = run_module(MODULE, dict(path=str(path), cluster=cluster(cfg)))

    assert result["failed"] and "no single writable primary" in result["msg"] and "pg-a" in result["msg"]
    assert not path.exists()


def test_reads_the_cluster_itself_and_checks_the_end_state_on_that_read(fresh_lab, tmp_path):
    """With nodes (no cluster) it reads the cluster in the same task; end_state is judged on that read and never
    fails the task: the file follows the live primary either way."""
    cfg = fresh_lab
    path = tmp_path / "database.json"
    nodes = [{"name": n.name, "host": "127.0.0.1", "port": n.port} for n in cfg.nodes]
    login = dict(login_user=lab.SUPERUSER, login_password=lab.LAB_PASSWORD)

    holds = run_module(MODULE, dict(login, path=str(path), nodes=nodes, end_state={"primary": "pg-a"}))
    missing = run_module(MODULE, dict(login, path=str(path), nodes=nodes,
                                      end_state={"primary": "pg-b", "left_out": [{"node": "pg-c"}]}))

    assert not holds["failed"], holds.get("msg")
    assert holds["end_state"] == {"ok": True, "problems": [], "primary": "pg-a"}
    assert holds["cluster"]["primary"] == "pg-a" and sorted(holds["cluster"]["nodes"]) == ["pg-a", "pg-b", "pg-c"]
    assert holds["changed"] is True and json.loads(path.read_text())["database"]["primary_node"] == "pg-a"
    assert not missing["failed"] and missing["changed"] is False, missing.get("msg")
    assert missing["end_state"]["ok"] is False and missing["end_state"]["problems"] == [
        "the writable primaries are pg-a, expected only pg-b",
        "pg-a is a primary, expected it to stream from pg-b"], missing["end_state"]
    assert lab.LAB_PASSWORD not in json.dumps([holds, missing])


def test_must_hold_fails_the_task_once_the_file_follows_the_live_primary_and_says_what_does_not_hold(fresh_lab,
                                                                                                    tmp_path):
    """end_state.must_hold: the runbook's verification in the same task. The end state holds: the task succeeds as
    without it. It does not: the file is written all the same (it names the live primary), then the task fails with
    the problems, the other failures given (also) and how to finish (hint); its facts stay (end_state, cluster)."""
    cfg = fresh_lab
    path = tmp_path / "database.json"
    nodes = [{"name": n.name, "host": "127.0.0.1", "port": n.port} for n in cfg.nodes]
    login = dict(login_user=lab.SUPERUSER, login_password=lab.LAB_PASSWORD)
    hint = "Run database_switchover again to finish it (it does only what is missing)."

    holds = run_module(MODULE, dict(login, path=str(path), nodes=nodes,
                                    end_state={"primary": "pg-a", "must_hold": True, "hint": hint}))
    path.unlink()
    broken = run_module(MODULE, dict(login, path=str(path), nodes=nodes, end_state={
        "primary": "pg-b", "must_hold": True, "also": ["pg-c: no route to pg-b.", ""], "hint": hint}))

    assert not holds["failed"] and holds["end_state"]["ok"] is True, holds.get("msg")
    assert broken["failed"] and broken["changed"] is True, broken
    assert json.loads(path.read_text())["database"]["primary_node"] == "pg-a"  # written: the live primary
    assert broken["msg"] == (
        "The end state does not hold: the writable primaries are pg-a, expected only pg-b; pg-a is a primary, "
        "expected it to stream from pg-b; pg-c is a standby streaming from pg-a, expected it to stream from pg-b. "
        f"pg-c: no route to pg-b. {hint} Meanwhile {path} now names primary pg-a and replicas [pg-b, pg-c]."
    ), broken["msg"]
    assert broken["end_state"]["ok"] is False and broken["cluster"]["primary"] == "pg-a"
    assert lab.LAB_PASSWORD not in json.dumps([holds, broken])


def test_takes_the_cluster_or_the_nodes_to_read_not_both(tmp_path):
    path = tmp_path / "database.json"

    both = run_module(MODULE, dict(path=str(path), cluster={"nodes": {}}, nodes=[{"name": "pg-a"}]))
    neither = run_module(MODULE, dict(path=str(path)))

    assert both["failed"] and "mutually exclusive: cluster|nodes" in both["msg"], both["msg"]
    assert neither["failed"] and "one of the following is required: cluster, nodes" in neither["msg"], neither["msg"]
    assert not path.exists()
