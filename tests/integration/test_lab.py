"""The lab itself: built, copied, repaired, reported and stopped for real."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from runbook_helpers import DEADLINE, FRESH, new_lab, sql, topology, untouched_guard

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402


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


def test_a_node_maps_no_shared_memory_in_dev_shm_that_a_kill_would_leave_behind(fresh_lab):
    """A postmaster killed with -9 cannot remove its POSIX segments: they must live in the data directory."""
    pid = int((fresh_lab.node("pg-a").data_dir / "postmaster.pid").read_text().split()[0])
    mapped = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}
    assert not [path for path in mapped if path.startswith("/dev/shm/PostgreSQL.")], sorted(mapped)
    assert [path for path in mapped if "/pg_dynshmem/" in path], sorted(mapped)


def test_a_copy_listens_on_its_own_ports_and_streams_from_its_own_primary(fresh_lab, lab_template):
    assert fresh_lab.port_base != lab_template.port_base
    assert topology(fresh_lab) == {name: dict(topology(fresh_lab)[name], **want) for name, want in FRESH.items()}
    for node in fresh_lab.nodes:
        assert sql(fresh_lab, node.name, "SHOW port")[0]["port"] == str(node.port)
        assert not (lab_template.node(node.name).data_dir / "postmaster.pid").exists()  # the template stays down
    conninfo = fresh_lab.node("pg-b").server().auto_conf_setting("primary_conninfo")
    assert f"port='{fresh_lab.port_base}'" in conninfo and str(fresh_lab.root) in conninfo


def test_copies_share_the_template_identity_unless_built_on_their_own(fresh_lab, lab_template):
    template_id = json.loads((lab_template.root / lab.TEMPLATE_MARKER).read_text())["system_identifier"]
    assert str(state_id(fresh_lab)) == template_id
    with new_lab(own_system_identifier=True) as own:
        assert str(state_id(own)) != template_id
        assert lab.status(own)["ok"]


def state_id(cfg: lab.LabConfig) -> int:
    return sql(cfg, "pg-a", "SELECT system_identifier FROM pg_control_system()")[0]["system_identifier"]


def test_clone_refuses_what_is_not_a_stopped_template_or_an_empty_folder(fresh_lab, lab_template, tmp_path):
    target = lab.LabConfig(root=tmp_path / "copy", port_base=lab.free_port_base())
    with pytest.raises(RuntimeError, match="not a lab template"):
        lab.clone(fresh_lab, target)
    (fresh_lab.root / lab.TEMPLATE_MARKER).write_text(json.dumps({"primary": "pg-a"}))
    with pytest.raises(RuntimeError, match="is running .*pg-a"):
        lab.clone(fresh_lab, target)
    with pytest.raises(RuntimeError, match="expected an empty folder"):
        lab.clone(lab_template, lab.LabConfig(root=fresh_lab.root, port_base=lab.free_port_base()))
    assert not target.root.joinpath("pg").exists()


def test_standbys_read_the_replication_password_from_a_passfile_never_inline(fresh_lab, lab_template):
    """Part D: no replication password in postgresql.auto.conf, nor in the log after a reload that changes
    primary_conninfo (PostgreSQL logs the new value); the standby still streams, with the passfile."""
    user = lab.lab_os_user()
    for cfg in (lab_template, fresh_lab):  # as built (initdb + basebackup) and as copied
        for node in cfg.nodes:
            info = os.stat(node.passfile)
            assert (oct(info.st_mode & 0o777), info.st_uid) == ("0o600", user.pw_uid), node.passfile
            assert node.passfile.read_text() == f"127.0.0.1:*:replication:replicator:{lab.LAB_PASSWORD}\n"
            assert lab.LAB_PASSWORD not in (node.data_dir / "postgresql.auto.conf").read_text()
        conninfo = cfg.node("pg-c").server().auto_conf_setting("primary_conninfo")
        assert f"passfile='{cfg.node('pg-c').passfile}'" in conninfo and "password" not in conninfo

    pid = lab.status(fresh_lab)["nodes"][2]["pid"]
    changed = lab.standby_conninfo(fresh_lab.node("pg-c"), fresh_lab.node("pg-a")) + " connect_timeout='7'"
    sql(fresh_lab, "pg-c", f"ALTER SYSTEM SET primary_conninfo = {pg_literal(changed)}")
    sql(fresh_lab, "pg-c", "SELECT pg_reload_conf()")

    def restreamed() -> bool:
        rows = sql(fresh_lab, "pg-a", "SELECT count(*) AS n FROM pg_stat_replication "
                                      "WHERE application_name = 'pg-c' AND state = 'streaming'")
        log = fresh_lab.node("pg-c").log_file.read_text()
        return rows[0]["n"] == 1 and "connect_timeout" in log

    wait_for(restreamed, DEADLINE, interval=0.2, what="pg-c streaming again with its new primary_conninfo")
    assert lab.status(fresh_lab)["nodes"][2]["pid"] == pid  # a reload, not a restart
    for log in sorted(fresh_lab.root.rglob("*.log")):
        assert lab.LAB_PASSWORD not in log.read_text(errors="replace"), log


def test_up_moves_an_inline_replication_password_of_an_older_lab_to_the_passfile(fresh_lab):
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import conninfo

    node = fresh_lab.node("pg-b")
    lab.down(fresh_lab)
    node.passfile.unlink()
    node.server().set_auto_conf({"primary_conninfo": conninfo(  # as labs were built before passfiles
        host="127.0.0.1", port=fresh_lab.port_base, user=lab.REPLICATION_USER, password=lab.LAB_PASSWORD,
        application_name="pg-b")})
    assert lab.up(fresh_lab)["ok"]
    lab.wait_streaming(fresh_lab)
    assert lab.LAB_PASSWORD not in (node.data_dir / "postgresql.auto.conf").read_text()
    assert node.server().auto_conf_setting("primary_conninfo") == lab.standby_conninfo(node, fresh_lab.node("pg-a"))
    assert oct(node.passfile.stat().st_mode & 0o777) == "0o600"


def pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_labs_made_for_tests_have_their_own_lock_dir(fresh_lab):
    import yaml

    written = yaml.safe_load((fresh_lab.root / "inventory" / "hosts.yml").read_text())
    assert written["all"]["vars"]["dr_lock_dir"] == f"{fresh_lab.root}/locks"


def test_the_untouched_guard_sees_a_restart(fresh_lab):
    with pytest.raises(AssertionError, match="changed a shared lab"):
        with untouched_guard(fresh_lab, "this test"):
            fresh_lab.node("pg-c").server().stop()
            lab.up(fresh_lab)


def test_a_shared_lab_is_fresh(untouched):
    assert topology(untouched) == {name: dict(topology(untouched)[name], **want) for name, want in FRESH.items()}


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
