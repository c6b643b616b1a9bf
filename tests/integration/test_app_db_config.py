"""erlmcp.dr.app_db_config on the real lab: the app's config from a live pg_replication_info result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import login_args, run_module

from erlmcp_dr import lab

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
