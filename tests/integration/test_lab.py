"""The lab itself: built, repaired, reported and stopped for real."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from erlmcp_dr import lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils import _postgres as pg  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._wait import wait_for  # noqa: E402


def _pids(result: dict) -> dict[str, int]:
    return {row["name"]: row["pid"] for row in result["nodes"]}


def _streaming(cfg: lab.LabConfig) -> bool:
    result = lab.status(cfg)
    return all(row["lag_bytes"] is not None for row in result["nodes"] if row["role"] == "standby")


def test_fresh_lab_has_one_primary_and_two_streaming_standbys(fresh_lab):
    wait_for(lambda: _streaming(fresh_lab), timeout=30, what="both standbys streaming")
    result = lab.status(fresh_lab)
    assert result["ok"] and result["primary"] == "pg-a"
    roles = {row["name"]: (row["role"], row["timeline"]) for row in result["nodes"]}
    assert roles == {"pg-a": ("primary", 1), "pg-b": ("standby", 1), "pg-c": ("standby", 1)}
    upstreams = {row["name"]: row["upstream"] for row in result["nodes"]}
    assert upstreams["pg-b"] == upstreams["pg-c"] == f"127.0.0.1:{fresh_lab.port_base}"


def test_up_twice_changes_nothing(fresh_lab):
    before = _pids(lab.status(fresh_lab))
    again = lab.up(fresh_lab)
    assert again["ok"] and _pids(again) == before


def test_up_repairs_a_half_built_standby(fresh_lab):
    node = fresh_lab.node("pg-c")
    lab.down(fresh_lab)
    shutil.rmtree(node.data_dir)
    node.data_dir.mkdir()
    node.building_marker.write_text("")  # as if a basebackup had been cut off
    result = lab.up(fresh_lab)
    assert result["ok"]
    assert {row["name"]: row["role"] for row in result["nodes"]}["pg-c"] == "standby"


def test_up_leaves_a_former_primary_stopped(fresh_lab):
    fresh_lab.node("pg-a").server().stop()
    with pg.connect(fresh_lab.node("pg-b").conn_params()) as conn:
        conn.execute("SELECT pg_promote()")
    lab.down(fresh_lab)
    result = lab.up(fresh_lab)
    states = {row["name"]: row["state"] for row in result["nodes"]}
    assert result["primary"] == "pg-b"
    assert states["pg-a"] == "stopped"
    assert any("pg-a is a former primary" in w and "database_rejoin" in w for w in result["warnings"])


def test_down_stops_only_its_own_lab(fresh_lab):
    other = lab.LabConfig(root=Path(tempfile.mkdtemp(prefix="erlmcp-dr-lab-")), port_base=lab.free_port_base())
    try:
        lab.up(other)
        stopped = lab.down(fresh_lab)
        assert sorted(stopped["stopped"]) == ["pg-a", "pg-b", "pg-c"]
        assert all(row["state"] == "stopped" for row in lab.status(fresh_lab)["nodes"])
        assert lab.status(other)["ok"]
        assert lab.down(fresh_lab)["stopped"] == []
    finally:
        lab.down(other)
        shutil.rmtree(other.root, ignore_errors=True)


def test_lab_refuses_a_different_port_base(fresh_lab):
    moved = lab.LabConfig(root=fresh_lab.root, port_base=fresh_lab.port_base + 3)
    with pytest.raises(RuntimeError, match="port base"):
        lab.up(moved)


def test_cli_lab_status_json_and_down(fresh_lab, monkeypatch, capsys):
    from erlmcp_dr import cli

    monkeypatch.setenv(lab.LAB_DIR_ENV, str(fresh_lab.root))
    monkeypatch.setenv(lab.PORT_BASE_ENV, str(fresh_lab.port_base))
    assert cli.main(["lab", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["primary"] == "pg-a" and [row["port"] for row in status["nodes"]] == [
        fresh_lab.port_base, fresh_lab.port_base + 1, fresh_lab.port_base + 2]
    assert cli.main(["lab", "down"]) == 0
    assert "stopped pg-a, pg-b, pg-c" in capsys.readouterr().out
    assert cli.main(["lab", "status"]) == 1  # a stopped lab is not ok
    assert "stopped" in capsys.readouterr().out
    assert cli.main(["lab", "up", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
