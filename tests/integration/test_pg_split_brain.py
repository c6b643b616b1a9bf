"""Divergence is never hidden (issue 16 row 2), on the real lab.

Two standbys promoted while the old primary is down both make timeline 2: a split brain pg_rewind cannot see (it
compares timeline ids and finds nothing to do). erlmcp.dr.pg_standby_follow must refuse such a node naming what it
found, re-clone it only with allow_reclone, and call no node rejoined before it replayed a marker the primary wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_module, sql, state
from runbook_helpers import topology
from test_pg_standby_follow import MODULE, follow_args, promote, stop, wait_rows

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402

pytestmark = pytest.mark.integration

ROWS = "SELECT id, origin FROM t ORDER BY id"


def split_brain(cfg: lab.LabConfig, rows_on_c: int = 1) -> None:
    """pg-a stopped, then pg-b AND pg-c promoted: both on timeline 2, each with rows the other lacks."""
    sql(cfg, "pg-a", "CREATE TABLE t (id int PRIMARY KEY, origin text)")
    sql(cfg, "pg-a", "INSERT INTO t VALUES (1, 'before')")
    for node in ("pg-b", "pg-c"):
        wait_rows(cfg, node, ROWS, [(1, "before")])
    stop(cfg, "pg-a")
    promote(cfg, "pg-b")
    promote(cfg, "pg-c")
    assert state(cfg, "pg-b")["timeline"] == state(cfg, "pg-c")["timeline"] == 2
    sql(cfg, "pg-b", "INSERT INTO t VALUES (2, 'written on pg-b')")
    sql(cfg, "pg-c", "INSERT INTO t SELECT g, 'written on pg-c' FROM generate_series(100, 99 + %s) AS g",
        (rows_on_c,))


def rows(cfg: lab.LabConfig, node: str) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in sql(cfg, node, ROWS)]


def config_files(path: Path) -> dict[str, bytes | None]:
    names = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "standby.signal", "PG_VERSION")
    return {name: (path / name).read_bytes() if (path / name).exists() else None for name in names}


def test_split_brain_primary_is_refused_naming_it_and_left_as_it_was(fresh_lab):
    cfg = fresh_lab
    split_brain(cfg)
    before_rows, before_topology = rows(cfg, "pg-c"), topology(cfg)
    files_before = config_files(cfg.node("pg-c").data_dir)

    for check in (True, False):
        result = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b", allow_stop_primary=True), check=check)

        assert result["failed"], result
        message = result["msg"]
        assert "runs as a primary on timeline 2, the primary's own timeline" in message, message
        assert "split brain" in message and "allow_reclone=true" in message and "nothing was changed" in message
        assert result["split_brain"] and result["changed"] is False
    assert rows(cfg, "pg-c") == before_rows
    assert topology(cfg) == before_topology
    assert config_files(cfg.node("pg-c").data_dir) == files_before


def test_split_brain_node_rewound_by_a_no_op_is_refused_not_called_streaming(fresh_lab):
    """The state the issue's rejoin left: pg-c started as a standby of pg-b on the same timeline, its WAL ahead."""
    cfg = fresh_lab
    split_brain(cfg, rows_on_c=2000)
    stop(cfg, "pg-c")
    server = cfg.node("pg-c").server()
    server.set_auto_conf({"primary_conninfo": lab.standby_conninfo(cfg.node("pg-c"), cfg.node("pg-b"))})
    server.write_standby_signal()
    server.start()
    assert state(cfg, "pg-c")["in_recovery"]
    before_topology = topology(cfg)

    result = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"))

    assert result["failed"], result
    assert "past the primary's current WAL end" in result["msg"] or "two promotions made timeline 2" in result["msg"], (
        result["msg"])
    assert "allow_reclone=true" in result["msg"]
    assert _without_c_upstream(topology(cfg)) == _without_c_upstream(before_topology)
    assert len(rows(cfg, "pg-c")) == 2001


def _without_c_upstream(found: dict) -> dict:
    """The topology but pg-c's upstream: the diverged pg-c's WAL receiver connects to pg-b, is refused (its WAL is
    ahead of pg-b's) and retries, so whether a sample sees it connected flips by itself (a CI run saw None before
    and pg-b after, with nothing changed by the refused run)."""
    return {name: {key: value for key, value in node.items() if not (name == "pg-c" and key == "upstream")}
            for name, node in found.items()}


def test_split_brain_stopped_node_is_refused_then_recloned_with_allow_reclone(fresh_lab):
    cfg = fresh_lab
    split_brain(cfg, rows_on_c=500)
    stop(cfg, "pg-c")  # a clean shutdown as a primary: the control file says "shut down" on timeline 2
    data_dir = cfg.node("pg-c").data_dir
    own_conf = (data_dir / "postgresql.conf").read_text()
    files_before = config_files(data_dir)

    refused = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"))

    assert refused["failed"] and "last ran (cluster state 'shut down') as a primary on timeline 2" in refused["msg"], (
        refused["msg"])
    assert not cfg.node("pg-c").server().is_running()
    assert config_files(data_dir) == files_before

    result = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b", allow_reclone=True))

    assert not result["failed"], result["msg"]
    assert result["action"] == "reclone" and result["changed"] and result["streaming"], result
    # exactly the primary's rows: pg-c's own are gone from it, kept aside in its old data directory
    assert rows(cfg, "pg-c") == rows(cfg, "pg-b") == [(1, "before"), (2, "written on pg-b")]
    kept = Path(result["diverged_copy"])
    assert kept.parent == data_dir.parent and kept.name.startswith(data_dir.name + ".diverged-")
    assert (kept / "PG_VERSION").exists()
    assert (data_dir / "postgresql.conf").read_text() == own_conf  # its own port, not the primary's
    st = state(cfg, "pg-c")
    assert st["in_recovery"] and st["port"] == cfg.node("pg-c").port
    assert pg.parse_lsn(result["replay_lsn"]) >= pg.parse_lsn(result["marker_lsn"])
    sql(cfg, "pg-b", "INSERT INTO t VALUES (3, 'after the re-clone')")
    wait_rows(cfg, "pg-c", ROWS, [(1, "before"), (2, "written on pg-b"), (3, "after the re-clone")])

    again = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b", allow_reclone=True))
    assert not again["failed"] and again["action"] == "none" and again["changed"] is False, again


def test_a_streaming_node_that_does_not_replay_is_not_called_following(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-c", "SELECT pg_wal_replay_pause()")
    before_topology = topology(cfg)

    # Short deadline on purpose: the node never replays while paused; the deadline only bounds the wait.
    result = run_module(MODULE, follow_args(cfg, "pg-c", "pg-a", wait_timeout=3))

    assert result["failed"], result
    assert "is not rejoined: it did not replay the marker committed on the primary" in result["msg"], result["msg"]
    assert "PAUSED" in result["msg"] and "pg_wal_replay_resume()" in result["msg"]
    assert result["streaming"] is True and result["marker_lsn"]
    assert topology(cfg) == before_topology

    sql(cfg, "pg-c", "SELECT pg_wal_replay_resume()")
    resumed = run_module(MODULE, follow_args(cfg, "pg-c", "pg-a"))
    assert not resumed["failed"] and resumed["action"] == "none", resumed
    assert pg.parse_lsn(resumed["replay_lsn"]) >= pg.parse_lsn(resumed["marker_lsn"])
