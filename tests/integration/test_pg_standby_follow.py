"""erlmcp.dr.pg_standby_follow on the real lab: repoint after failover, rejoin, rewind, refusals."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from armed_helpers import kill_postmaster
from conftest import login_args, run_module, sql, state
from rewind_freeze import bin_dir_freezing_pg_rewind, kill_frozen_run, wait_frozen

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import follow as _follow  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.rewind_marker import marker_path  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import Server  # noqa: E402

pytestmark = pytest.mark.integration

MODULE = "erlmcp.dr.pg_standby_follow"
DEADLINE = 60
CONFIG_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf", "standby.signal")


# ---------------------------------------------------------------- helpers


def follow_args(cfg: lab.LabConfig, node: str, primary: str, **extra: Any) -> dict[str, Any]:
    n = cfg.node(node)
    args = dict(login_args(cfg, node), data_dir=str(n.data_dir), log_file=str(n.log_file),
                primary_host="127.0.0.1", primary_port=cfg.node(primary).port,
                replication_user=lab.REPLICATION_USER, replication_password=lab.LAB_PASSWORD, wait_timeout=DEADLINE)
    args.update(extra)
    return args






def files(cfg: lab.LabConfig, node: str) -> dict[str, str | None]:
    server = cfg.node(node).server()
    return {name: server.read_file(name) for name in CONFIG_FILES}


def promote(cfg: lab.LabConfig, node: str) -> None:
    """Promote with plain SQL and wait until the node leaves recovery."""
    sql(cfg, node, "SELECT pg_promote(true, 60)")
    wait_for(lambda: not state(cfg, node)["in_recovery"], DEADLINE, what=f"{node} promoted")


def stop(cfg: lab.LabConfig, node: str) -> None:
    cfg.node(node).server().stop(mode="fast")


def wait_rows(cfg: lab.LabConfig, node: str, query: str, expected: Any) -> None:
    def probe() -> bool:
        conn, _ = pg.try_connect(cfg.node(node).conn_params())
        if conn is None:
            return False
        with conn:
            try:
                return [tuple(r.values()) for r in pg.query_all(conn, query)] == expected
            except Exception as exc:
                if pg.is_driver_error(exc):
                    return False
                raise

    wait_for(probe, DEADLINE, what=f"{query} on {node}")


def assert_streams_from(cfg: lab.LabConfig, node: str, primary: str, timeline: int) -> dict[str, Any]:
    st = state(cfg, node)
    receiver = st["wal_receiver"] or {}
    assert st["in_recovery"], st
    assert receiver.get("status") == "streaming", receiver
    assert receiver.get("sender_port") == cfg.node(primary).port, receiver
    assert receiver.get("received_tli") == timeline, receiver
    assert st["port"] == cfg.node(node).port  # kept its own postgresql.conf
    return st


def assert_streamed_result(result: dict[str, Any], cfg: lab.LabConfig, primary: str, timeline: int) -> None:
    assert not result["failed"], result.get("msg")
    assert result["changed"] is True
    assert result["streaming"] is True
    assert result["upstream"] == f"127.0.0.1:{cfg.node(primary).port}"
    assert result["timeline_after"] == timeline == result["primary_timeline"]
    assert pg.parse_lsn(result["receive_lsn"]) > 0
    assert result["seconds"] >= 0
    assert lab.LAB_PASSWORD not in json.dumps(result)


def make_table(cfg: lab.LabConfig, replicas: tuple[str, ...] = ("pg-b", "pg-c")) -> None:
    sql(cfg, "pg-a", "CREATE TABLE t (id int PRIMARY KEY, origin text)")
    sql(cfg, "pg-a", "INSERT INTO t VALUES (1, 'before')")
    for node in replicas:
        wait_rows(cfg, node, "SELECT id, origin FROM t ORDER BY id", [(1, "before")])


def stop_cleanly_and_switch(cfg: lab.LabConfig) -> None:
    """Switchover shape: stop pg-a fast, wait until pg-b replayed its final checkpoint, promote pg-b."""
    stop(cfg, "pg-a")
    final = cfg.node("pg-a").server().controldata()["Latest checkpoint location"]
    wait_for(lambda: pg.parse_lsn(state(cfg, "pg-b")["replay_lsn"]) > pg.parse_lsn(final), DEADLINE,
             what="pg-b replayed pg-a's shutdown checkpoint")
    promote(cfg, "pg-b")


# ---------------------------------------------------------------- failover: repoint the other standby


def test_failover_repoints_standby_then_idempotent(fresh_lab):
    cfg = fresh_lab
    make_table(cfg)
    stop(cfg, "pg-a")
    promote(cfg, "pg-b")
    before = files(cfg, "pg-c")
    passfile = cfg.node("pg-c").passfile  # the lab writes one too: check mode must leave it as it is
    passfile_before = passfile.read_bytes() if passfile.exists() else None

    # check mode (through Ansible and in-process, where nothing would mask a leaked password)
    checked = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"), check=True, diff=True)
    assert not checked["failed"], checked.get("msg")
    assert checked["changed"] is True and checked["action"] == "follow"
    assert checked["role_before"] == "standby" and checked["timeline_before"] == 1
    assert checked["primary_timeline"] == 2
    assert checked["diff"]["before"]["role"] == "standby"
    assert f"port='{cfg.node('pg-a').port}'" in checked["diff"]["before"]["primary_conninfo"]
    assert f"port='{cfg.node('pg-b').port}'" in checked["diff"]["after"]["primary_conninfo"]
    assert "password" not in checked["diff"]["after"]["primary_conninfo"]
    assert "passfile=" in checked["diff"]["after"]["primary_conninfo"] and checked["passfile_changed"] is True
    assert "application_name='pg-c'" in checked["primary_conninfo"]
    direct = _follow.run(follow_args(cfg, "pg-c", "pg-b"), check_mode=True, diff=True)
    assert direct["action"] == "follow" and lab.LAB_PASSWORD not in json.dumps(direct)
    assert files(cfg, "pg-c") == before
    assert (passfile.read_bytes() if passfile.exists() else None) == passfile_before
    assert state(cfg, "pg-c")["in_recovery"]

    result = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"), diff=True)
    assert_streamed_result(result, cfg, "pg-b", 2)
    assert result["action"] == "follow" and result["rewind_output"] is None
    assert result["role_before"] == "standby"
    assert_streams_from(cfg, "pg-c", "pg-b", 2)
    assert cfg.node("pg-c").server().status()["pid"] is not None
    after = files(cfg, "pg-c")
    assert after["postgresql.conf"] == before["postgresql.conf"]
    assert f"port=''{cfg.node('pg-b').port}''" in after["postgresql.auto.conf"]

    # writes on the new primary reach pg-c
    sql(cfg, "pg-b", "INSERT INTO t VALUES (2, 'from pg-b')")
    wait_rows(cfg, "pg-c", "SELECT id, origin FROM t ORDER BY id", [(1, "before"), (2, "from pg-b")])
    stats = sql(cfg, "pg-b", "SELECT application_name FROM pg_stat_replication")
    assert {"application_name": "pg-c"} in stats

    again = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"))
    assert not again["failed"], again.get("msg")
    assert again["changed"] is False and again["action"] == "none"
    assert again["streaming"] is True and again["timeline_after"] == 2
    assert files(cfg, "pg-c") == after


def _follow_sessions(cfg: lab.LabConfig, node: str, offset: int) -> int:
    """Connections the follow opened to `node` since `offset` in its server log (log_connections on)."""
    with open(cfg.node(node).log_file, errors="replace") as log:
        log.seek(offset)
        text = log.read()
    return text.count(f"application_name={_follow.APPLICATION_NAME}")


def test_a_repoint_and_a_rejoin_each_open_one_connection_to_the_node(fresh_lab):
    # A connection costs a SCRAM handshake and a server backend: the probes and the marker check share one (the
    # node's own while a reload keeps it, else the one the probes opened once the node streams).
    cfg = fresh_lab
    for node in ("pg-a", "pg-c"):
        sql(cfg, node, "ALTER SYSTEM SET log_connections = on")
        sql(cfg, node, "SELECT pg_reload_conf()")
    make_table(cfg)
    stop_cleanly_and_switch(cfg)
    offsets = {node: cfg.node(node).log_file.stat().st_size for node in ("pg-a", "pg-c")}

    repointed = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"))
    rejoined = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b"))

    assert_streamed_result(repointed, cfg, "pg-b", 2)
    assert_streamed_result(rejoined, cfg, "pg-b", 2)
    assert repointed["marker_lsn"] and rejoined["marker_lsn"]  # both checked the marker on that one connection
    assert _follow_sessions(cfg, "pg-c", offsets["pg-c"]) == 1  # reloaded: its own connection throughout
    assert _follow_sessions(cfg, "pg-a", offsets["pg-a"]) == 1  # started: the probes' connection, kept for the check


def test_a_standby_past_the_fork_of_a_history_it_fetched_is_still_on_its_own_timeline(fresh_lab):
    # A standby whose WAL goes past where a new primary's timeline forked off, pointed at that primary, fetches the
    # new history file and shows "streaming" for a moment before the primary refuses its start point. Read in that
    # moment it looked like a standby on the new timeline holding WAL the primary never wrote (a split brain): a
    # restore in place refused to rejoin it (CI, round 19). The moment is the receiver's, so the test hands it to
    # the timeline function; the node, its WAL and its history files are real.
    cfg = fresh_lab
    make_table(cfg)
    promote(cfg, "pg-b")  # timeline 2 forks off here; pg-a goes on writing on timeline 1 and pg-c receives it
    sql(cfg, "pg-a", "INSERT INTO t SELECT g, 'after the fork' FROM generate_series(2, 2000) g")
    wait_rows(cfg, "pg-c", "SELECT count(*) FROM t", [(2000,)])
    conninfo = (f"host=127.0.0.1 port={cfg.node('pg-b').port} user={lab.REPLICATION_USER} "
                f"password={lab.LAB_PASSWORD} application_name=pg-c")
    sql(cfg, "pg-c", f"ALTER SYSTEM SET primary_conninfo = '{conninfo}'")
    sql(cfg, "pg-c", "SELECT pg_reload_conf()")
    history = "SELECT count(*) AS n FROM pg_ls_waldir() WHERE name = '00000002.history'"
    wait_for(lambda: sql(cfg, "pg-c", history)[0]["n"] == 1, DEADLINE, what="pg-c fetched timeline 2's history")

    with pg.connect(cfg.node("pg-c").conn_params()) as conn:
        node = pg.node_state(conn)
        moment = dict(node["wal_receiver"] or {}, status="streaming", received_tli=1)
        timeline = pg.standby_timeline(conn, moment, 1, node["replay_lsn"], node["receive_lsn"])
    assert timeline == 1, (timeline, node)
    # a standby at the fork itself (the switch of an idle cluster, what the newest history file is read for) does
    # follow onto the new timeline
    with pg.connect(cfg.node("pg-b").conn_params()) as conn:
        fork = pg.query_one(conn, "SELECT pg_read_file('pg_wal/00000002.history') AS content")["content"].split()[1]
    with pg.connect(cfg.node("pg-c").conn_params()) as conn:
        assert pg.standby_timeline(conn, {"status": "streaming", "received_tli": 1, "flushed_lsn": fork}, 1,
                                   fork, fork) == 2


# ---------------------------------------------------------------- rejoin after a clean switchover


def test_rejoin_former_primary_after_clean_switchover(fresh_lab):
    cfg = fresh_lab
    make_table(cfg)
    own = files(cfg, "pg-a")
    stop_cleanly_and_switch(cfg)

    checked = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b"), check=True, diff=True)
    assert not checked["failed"], checked.get("msg")
    # a clean shutdown the new primary replayed: no pg_rewind needed, it starts as a standby
    assert checked["changed"] and checked["action"] == "follow" and checked["role_before"] == "stopped"
    assert "cleanly shut down" in checked["msg"], checked["msg"]
    assert checked["diff"]["before"]["primary_conninfo"] is None
    assert checked["diff"]["after"]["role"] == "standby"
    assert not cfg.node("pg-a").server().is_running()
    assert files(cfg, "pg-a") == own

    result = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b"))
    assert_streamed_result(result, cfg, "pg-b", 2)
    assert result["action"] == "follow" and result["timeline_before"] == 1
    assert result["rewind_output"] is None
    assert_streams_from(cfg, "pg-a", "pg-b", 2)
    after = files(cfg, "pg-a")
    assert after["postgresql.conf"] == own["postgresql.conf"] and after["pg_hba.conf"] == own["pg_hba.conf"]
    assert after["standby.signal"] == ""
    assert "application_name=''pg-a''" in after["postgresql.auto.conf"]

    sql(cfg, "pg-b", "INSERT INTO t VALUES (2, 'from pg-b')")
    wait_rows(cfg, "pg-a", "SELECT id, origin FROM t ORDER BY id", [(1, "before"), (2, "from pg-b")])
    again = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b"))
    assert again["changed"] is False and again["action"] == "none", again


def test_nodes_repoints_the_old_primary_and_the_other_standby_at_once_and_reports_each(fresh_lab, tmp_path):
    """One task, several nodes (the nodes option): each goes through the one-node path in a thread of its own; a
    node that fails fails the task after the others ended, and each keeps its own result."""
    cfg = fresh_lab
    stop_cleanly_and_switch(cfg)
    nodes = [{"name": name, "data_dir": str(cfg.node(name).data_dir), "log_file": str(cfg.node(name).log_file),
              "login_port": cfg.node(name).port} for name in ("pg-a", "pg-c")]
    missing = {"name": "pg-x", "data_dir": str(tmp_path / "none"), "login_port": cfg.node("pg-a").port}
    shared = {k: v for k, v in follow_args(cfg, "pg-a", "pg-b").items() if k not in ("data_dir", "log_file")}

    result = run_module(MODULE, dict(shared, nodes=[*nodes, missing]))

    assert result["failed"] and "1 of 3 nodes" in result["msg"] and "pg-x: no PostgreSQL data directory" in result[
        "msg"], result["msg"]
    items = {item["item"]: item for item in result["results"]}
    assert list(items) == ["pg-a", "pg-c", "pg-x"] and items["pg-x"]["failed"] is True
    for name in ("pg-a", "pg-c"):
        assert items[name]["failed"] is False and items[name]["action"] == "follow", items[name]
        assert_streamed_result(items[name], cfg, "pg-b", 2)
        assert_streams_from(cfg, name, "pg-b", 2)
    assert lab.LAB_PASSWORD not in json.dumps(result)

    again = run_module(MODULE, dict(shared, nodes=nodes))
    assert not again["failed"] and again["changed"] is False, again
    assert [item["action"] for item in again["results"]] == ["none", "none"]


# ---------------------------------------------------------------- rejoin of a diverged former primary


def test_rejoin_diverged_former_primary_is_rewound(fresh_lab):
    cfg = fresh_lab
    make_table(cfg)
    promote(cfg, "pg-b")  # pg-a keeps running: from here on its WAL is its own (and pg-c's)
    sql(cfg, "pg-a", "INSERT INTO t SELECT g, 'only on pg-a' FROM generate_series(100, 199) g")
    wait_rows(cfg, "pg-c", "SELECT count(*) FROM t WHERE origin = 'only on pg-a'", [(100,)])
    sql(cfg, "pg-b", "INSERT INTO t VALUES (2, 'from pg-b')")
    stop(cfg, "pg-a")
    own = files(cfg, "pg-a")

    result = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b"))
    assert_streamed_result(result, cfg, "pg-b", 2)
    assert result["action"] == "rewind" and result["role_before"] == "stopped"
    assert "no rewind required" not in result["rewind_output"]
    assert "diverged" in result["rewind_output"]
    assert_streams_from(cfg, "pg-a", "pg-b", 2)
    assert files(cfg, "pg-a")["postgresql.conf"] == own["postgresql.conf"]
    # what rewind means: pg-a's own writes after the fork are gone, pg-b's are there
    wait_rows(cfg, "pg-a", "SELECT id, origin FROM t ORDER BY id", [(1, "before"), (2, "from pg-b")])

    # pg-c received pg-a's diverged WAL too: following is impossible, method=follow refuses up front ...
    c_before = files(cfg, "pg-c")
    refused = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b", method="follow"))
    assert refused["failed"] and "forked" in refused["msg"] and "method=rewind" in refused["msg"], refused
    assert files(cfg, "pg-c") == c_before and state(cfg, "pg-c")["in_recovery"]
    # ... and auto rewinds it without trying to follow first
    rewound = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"))
    assert_streamed_result(rewound, cfg, "pg-b", 2)
    assert rewound["action"] == "rewind" and rewound["role_before"] == "standby"
    assert "forked" in rewound["msg"]
    wait_rows(cfg, "pg-c", "SELECT id, origin FROM t ORDER BY id", [(1, "before"), (2, "from pg-b")])


def test_rewind_failure_leaves_node_stopped_and_config_as_it_was(fresh_lab):
    cfg = fresh_lab
    make_table(cfg)
    promote(cfg, "pg-b")
    sql(cfg, "pg-a", "INSERT INTO t SELECT g, 'only on pg-a' FROM generate_series(100, 199) g")
    stop(cfg, "pg-a")
    own = files(cfg, "pg-a")
    wal = cfg.node("pg-a").data_dir / "pg_wal"
    for segment in wal.iterdir():  # the WAL pg_rewind needs is gone
        if segment.is_file() and len(segment.name) == 24:
            segment.unlink()

    result = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b"))
    assert result["failed"]
    assert "pg_rewind" in result["msg"] and "pg_basebackup" in result["msg"] and "stopped" in result["msg"]
    assert result["action"] == "rewind" and result["streaming"] is False
    assert not cfg.node("pg-a").server().is_running()
    assert files(cfg, "pg-a") == own
    assert lab.LAB_PASSWORD not in json.dumps(result)


# ---------------------------------------------------------------- refusals


def test_refuses_running_primary_unless_allowed(fresh_lab):
    cfg = fresh_lab
    make_table(cfg)
    promote(cfg, "pg-b")  # split brain: pg-a still runs as a primary
    own = files(cfg, "pg-a")
    pid = cfg.node("pg-a").server().status()["pid"]

    for check in (True, False):
        result = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b"), check=check)
        assert result["failed"] and result["role_before"] == "primary", result
        assert "PRIMARY" in result["msg"] and "pg_fence" in result["msg"] and "allow_stop_primary" in result["msg"]
        assert files(cfg, "pg-a") == own
        assert cfg.node("pg-a").server().status()["pid"] == pid
        assert not state(cfg, "pg-a")["in_recovery"]

    result = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b", allow_stop_primary=True))
    assert_streamed_result(result, cfg, "pg-b", 2)
    assert result["action"] == "rewind" and result["role_before"] == "primary"
    assert_streams_from(cfg, "pg-a", "pg-b", 2)


def test_wrong_primary_or_credentials_fail_and_change_nothing(fresh_lab):
    cfg = fresh_lab
    stop(cfg, "pg-a")
    promote(cfg, "pg-b")
    before = files(cfg, "pg-c")
    pid = cfg.node("pg-c").server().status()["pid"]
    unused = lab.free_port_base()
    cases = [
        (dict(primary_port=unused), "nothing is listening"),
        (dict(primary_port=cfg.node("pg-c").port), "in recovery"),
        (dict(login_password="bad-secret-1"), "wrong or missing password (login_password)"),
        (dict(replication_password="bad-secret-2"), "wrong or missing password (replication_password)"),
        (dict(replication_user="nobody"), "replication login"),
    ]
    for extra, expected in cases:
        result = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b", **extra), diff=True)
        assert result["failed"], (extra, result)
        assert expected in result["msg"], (extra, result["msg"])
        assert files(cfg, "pg-c") == before
        assert cfg.node("pg-c").server().status()["pid"] == pid
        assert "bad-secret" not in json.dumps(result)
    assert state(cfg, "pg-c")["in_recovery"]


def test_node_of_another_cluster_is_refused(fresh_lab):
    cfg = fresh_lab
    other = cfg.root / "other"
    user = lab.lab_os_user()
    for folder in (other, other / "data"):
        folder.mkdir(mode=0o700)
        os.chown(folder, user.pw_uid, user.pw_gid)
    server = Server(str(other / "data"))
    server.run("initdb", ["-D", server.data_dir, "-U", lab.SUPERUSER, "--auth=trust"], timeout=120)
    before = _listing(other / "data")
    conf = server.read_file("postgresql.auto.conf")

    result = run_module(MODULE, dict(follow_args(cfg, "pg-b", "pg-a"), data_dir=server.data_dir,
                                     login_port=lab.free_port_base()))
    assert result["failed"]
    assert "system identifier" in result["msg"] and "another cluster" in result["msg"], result["msg"]
    assert server.controldata()["Database system identifier"] in result["msg"]
    assert _listing(other / "data") == before and server.read_file("postgresql.auto.conf") == conf
    assert not server.is_running()


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------- method=follow: started as is, or put back


def test_follow_starts_a_stopped_standby_without_rewind(fresh_lab):
    cfg = fresh_lab
    make_table(cfg)
    stop(cfg, "pg-c")
    stop(cfg, "pg-a")
    promote(cfg, "pg-b")
    sql(cfg, "pg-b", "INSERT INTO t VALUES (2, 'from pg-b')")

    result = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b", method="follow"), diff=True)
    assert_streamed_result(result, cfg, "pg-b", 2)
    assert result["action"] == "follow" and result["role_before"] == "stopped" and result["rewind_output"] is None
    assert result["diff"]["before"]["role"] == "stopped" and result["diff"]["after"]["role"] == "standby"
    assert_streams_from(cfg, "pg-c", "pg-b", 2)
    wait_rows(cfg, "pg-c", "SELECT id, origin FROM t ORDER BY id", [(1, "before"), (2, "from pg-b")])


def test_follow_that_does_not_stream_is_put_back(fresh_lab):
    cfg = fresh_lab
    stop(cfg, "pg-a")
    promote(cfg, "pg-b")
    # No password anywhere (option, passfile, inline): the WAL receiver cannot log in, it never streams.
    plain = f"host=127.0.0.1 port={cfg.node('pg-a').port} user={lab.REPLICATION_USER} application_name=pg-c"
    sql(cfg, "pg-c", f"ALTER SYSTEM SET primary_conninfo = '{plain}'")
    sql(cfg, "pg-c", "SELECT pg_reload_conf()")
    before = files(cfg, "pg-c")
    pid = cfg.node("pg-c").server().status()["pid"]
    args = follow_args(cfg, "pg-c", "pg-b", method="follow", wait_timeout=3,
                       passfile=str(cfg.node("pg-c").home / "no-such.pgpass"))
    del args["replication_password"]

    result = run_module(MODULE, args)
    assert result["failed"] and result["action"] == "follow", result
    assert "did not stream" in result["msg"] and "put back" in result["msg"], result["msg"]
    assert files(cfg, "pg-c") == before
    assert cfg.node("pg-c").server().status()["pid"] == pid

    def old_value_back() -> bool:  # the reload takes the old value back
        shown = sql(cfg, "pg-c", "SELECT current_setting('primary_conninfo') AS v")[0]["v"]
        return shown == plain

    wait_for(old_value_back, DEADLINE, what="pg-c's primary_conninfo back on pg-a")


# ---------------------------------------------------------------- secrets (issue 5 row 9, part D)


def test_repoint_keeps_the_replication_password_out_of_the_server_log_and_config(fresh_lab):
    cfg = fresh_lab
    stop(cfg, "pg-a")
    promote(cfg, "pg-b")
    node = cfg.node("pg-c")

    result = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"))

    assert_streamed_result(result, cfg, "pg-b", 2)
    passfile = Path(result["passfile"])
    assert passfile == node.data_dir.parent / ".erlmcp-dr.pgpass" and result["passfile_changed"] is True
    st = passfile.stat()
    assert oct(st.st_mode & 0o777) == "0o600" and (st.st_uid, st.st_gid) == _owner(node.data_dir)
    line = f"127.0.0.1:{cfg.node('pg-b').port}:replication:{lab.REPLICATION_USER}:{lab.LAB_PASSWORD}\n"
    assert passfile.read_text() == line
    assert f"passfile=''{passfile}''" in files(cfg, "pg-c")["postgresql.auto.conf"]
    shown = sql(cfg, "pg-c", "SELECT current_setting('primary_conninfo') AS v")[0]["v"]
    assert "password" not in shown and f"passfile='{passfile}'" in shown
    wait_for(lambda: "primary_conninfo" in node.log_file.read_text(), DEADLINE, what="the reload logged")
    assert lab.LAB_PASSWORD not in node.log_file.read_text()
    assert lab.LAB_PASSWORD not in files(cfg, "pg-c")["postgresql.auto.conf"]
    assert not [p for p in node.home.iterdir() if p.name.startswith(".erlmcp-dr-") and p.suffix == ".pgpass"]

    again = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"))
    assert not again["failed"] and again["changed"] is False and again["passfile_changed"] is False


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


# ---------------------------------------------------------------- read-only fence end to end (issue 5 row 6)


def test_read_only_fenced_former_primary_rejoins_without_allow_stop_primary(fresh_lab):
    cfg = fresh_lab
    make_table(cfg)
    fenced = run_module("erlmcp.dr.pg_fence", dict(login_args(cfg, "pg-a"), method="read_only"))
    assert not fenced["failed"], fenced.get("msg")
    a_lsn = state(cfg, "pg-a")["current_lsn"]
    wait_for(lambda: pg.lsn_diff(state(cfg, "pg-b")["replay_lsn"], a_lsn) >= 0, DEADLINE, what="pg-b caught up")
    promote(cfg, "pg-b")

    result = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b"))

    assert_streamed_result(result, cfg, "pg-b", 2)
    assert result["role_before"] == "primary" and result["read_only_lifted"] is True
    assert "default_transaction_read_only" not in files(cfg, "pg-a")["postgresql.auto.conf"]
    assert_streams_from(cfg, "pg-a", "pg-b", 2)
    sql(cfg, "pg-b", "INSERT INTO t VALUES (2, 'from pg-b')")
    wait_rows(cfg, "pg-a", "SELECT id, origin FROM t ORDER BY id", [(1, "before"), (2, "from pg-b")])


# ---------------------------------------------------------------- rewind with an idle primary past a WAL switch

# A pg_rewind that first brings the source, an idle primary, into the state the lab's rejoins met by chance: its last
# WAL record is an archive_timeout segment switch. Such a switch is "unimportant" WAL (pg_switch_wal()'s is not), so
# after it neither archive_timeout nor the background writer's running-xacts record (logged within 15 s of important
# WAL) writes anything more. The test turns archive_timeout off on the source; this script waits for the background
# writer's record after pg_standby_follow's CHECKPOINT, then sets archive_timeout to 1 s and waits for its switch.
# Then the real pg_rewind reads the source's insert position (past the switch: the first record position of the next
# segment) and makes it the node's minimum recovery point; afterwards the script saves the node's control data.
_SWITCHING_PG_REWIND = """#!/bin/sh
source=""; target=""; previous=""
for arg in "$@"; do
    [ "$previous" = "--source-server" ] && source="$arg"
    [ "$previous" = "--target-pgdata" ] && target="$arg"
    previous="$arg"
done
query() {{ "{real}/psql" -X -q -At -d "$source" -c "$1"; }}
wait_until() {{
    polls=0
    while [ "$(query "$1")" != "t" ]; do
        polls=$((polls + 1)); [ $polls -gt 300 ] && exit 91
        sleep 0.1
    done
}}
after_checkpoint=$(query "SELECT pg_current_wal_insert_lsn()") || exit 90
# the background writer's record: in the middle of a segment (offset 40 is a segment's first record position)
wait_until "SELECT pg_current_wal_insert_lsn() <> '$after_checkpoint'
            AND (pg_walfile_name_offset(pg_current_wal_insert_lsn())).file_offset > 40"
logged=$(query "SELECT pg_current_wal_insert_lsn()")
query "ALTER SYSTEM SET archive_timeout = '1s'" && query "SELECT pg_reload_conf()" > /dev/null || exit 92
wait_until "SELECT pg_current_wal_insert_lsn() > '$logged'
            AND (pg_walfile_name_offset(pg_current_wal_insert_lsn())).file_offset = 40"
query "SELECT pg_current_wal_lsn()" > "{out}/switched_at" || exit 93
"{real}/pg_rewind" "$@"
rc=$?
"{real}/pg_controldata" -D "$target" > "{out}/controldata"
exit $rc
"""


def bin_dir_switching_wal_before_rewind(cfg: lab.LabConfig) -> Path:
    """A pg_bin_dir whose pg_rewind switches the source's WAL segment first (links to the real binaries otherwise);
    what it saw goes into the same folder (switched_at: the source's WAL end after the switch; controldata)."""
    bin_dir = cfg.root / "bin-switching-wal"
    lab.make_owned_dir(bin_dir, 0o755)
    real = Path(lab.find_bin_dir())
    for binary in real.iterdir():
        if binary.name != "pg_rewind":
            (bin_dir / binary.name).symlink_to(binary)
    script = bin_dir / "pg_rewind"
    script.write_text(_SWITCHING_PG_REWIND.format(real=real, out=bin_dir))
    script.chmod(0o755)
    return bin_dir


def test_rewound_node_becomes_consistent_though_the_idle_primary_switched_wal_segment(fresh_lab):
    """The bug of `database_rejoin` after a regional failover: pg_rewind made the node's minimum recovery point the
    idle primary's insert position just past a WAL switch, beyond the end of the last WAL record; the node never
    became consistent (pg_ctl: server did not start in time) until something wrote on the primary."""
    cfg = fresh_lab
    make_table(cfg)
    kill_postmaster(cfg, "pg-a")
    promote(cfg, "pg-b")
    sql(cfg, "pg-b", "INSERT INTO t VALUES (2, 'from pg-b')")
    # idle means idle: no hint bit left to set on a page (a read setting one logs a full-page image: a record)
    sql(cfg, "pg-b", "VACUUM (FREEZE)")
    sql(cfg, "pg-b", "ALTER SYSTEM SET archive_timeout = 0")  # the script above switches segments in its own time
    sql(cfg, "pg-b", "SELECT pg_reload_conf()")
    bin_dir = bin_dir_switching_wal_before_rewind(cfg)

    result = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b", bin_dir=str(bin_dir)))

    # the situation is the bug's: the node's minimum recovery point lies past the last WAL record on the primary
    switched_at = (bin_dir / "switched_at").read_text().strip()
    control = dict(line.split(":", 1) for line in (bin_dir / "controldata").read_text().splitlines() if ":" in line)
    min_recovery = control["Minimum recovery ending location"].strip()
    assert pg.lsn_diff(min_recovery, switched_at) > 0, (min_recovery, switched_at)
    # ... and the node rejoined all the same: a marker committed on the primary after pg_rewind made it consistent
    assert_streamed_result(result, cfg, "pg-b", 2)
    assert result["action"] == "rewind" and result["role_before"] == "stopped"
    assert result["min_recovery_point"] == min_recovery
    assert pg.lsn_diff(result["consistency_marker_lsn"], min_recovery) > 0, result
    assert "minimum recovery point" in result["msg"], result["msg"]
    assert_streams_from(cfg, "pg-a", "pg-b", 2)
    wait_rows(cfg, "pg-a", "SELECT id, origin FROM t ORDER BY id", [(1, "before"), (2, "from pg-b")])


# -------------------------------------------------------- a kill inside pg_rewind, then the re-run (issues 18, 21)


def test_kill_inside_pg_rewind_is_never_started_half_rewound_and_the_rerun_reclones_it(fresh_lab):
    """The run is killed (SIGKILL of its tree) while pg_rewind copies: the data directory is half the primary's,
    though pg_controldata shows the node as before (pg_rewind writes the control file last). The re-run finds the
    rewind marker: it restores the node's own config files, lets pg_rewind start over (safe while the control file
    is unchanged), and, when that fails because the interrupted copy destroyed the node's WAL, refuses naming
    allow_reclone, then with allow_reclone re-clones it: streaming from the primary with the primary's data."""
    cfg = fresh_lab
    make_table(cfg)
    promote(cfg, "pg-b")  # pg-a keeps running: from here on its WAL is its own
    sql(cfg, "pg-a", "INSERT INTO t SELECT g, 'only on pg-a' FROM generate_series(100, 199) g")
    wait_rows(cfg, "pg-c", "SELECT count(*) FROM t WHERE origin = 'only on pg-a'", [(100,)])  # pg-c diverged too
    stop(cfg, "pg-a")
    # pg-b's WAL (wal_keep_size) makes hundreds of chunks to copy: far more than the wrapper's one page of lines
    sql(cfg, "pg-b", "INSERT INTO t VALUES (2, 'from pg-b')")
    own = files(cfg, "pg-a")
    control_before = cfg.node("pg-a").server().controldata()
    bin_dir = bin_dir_freezing_pg_rewind(cfg)
    marker = Path(marker_path(str(cfg.node("pg-a").data_dir)))

    with ThreadPoolExecutor(max_workers=1) as pool:
        killed_run = pool.submit(run_module, MODULE, follow_args(cfg, "pg-a", "pg-b", bin_dir=str(bin_dir)))
        frozen = wait_frozen(bin_dir, killed_run.done, DEADLINE)
        kill_frozen_run(frozen)
        # the module's process died: ansible reports a failure or no result at all ("a worker was found dead")
        assert killed_run.exception() is not None or killed_run.result()["failed"]
    # the kill landed inside pg_rewind: its files are being rewritten, its control file is still its own
    assert "received chunk" in frozen["line"], frozen
    assert not cfg.node("pg-a").server().is_running()
    assert files(cfg, "pg-a")["postgresql.conf"] != own["postgresql.conf"]
    control = cfg.node("pg-a").server().controldata()
    assert {k: control[k] for k in ("Database cluster state", "Latest checkpoint location")} == {
        k: control_before[k] for k in ("Database cluster state", "Latest checkpoint location")}
    st = marker.stat()
    assert oct(st.st_mode & 0o777) == "0o600" and (st.st_uid, st.st_gid) == _owner(cfg.node("pg-a").data_dir)
    assert json.loads(marker.read_text())["own_files"]["postgresql.conf"] == own["postgresql.conf"]

    # the re-run with the normal pg_bin_dir, as a re-run of the runbook: pg_rewind starts over and fails (the killed
    # one had removed the node's WAL past the fork); today's code failed here too, but left postgresql.conf emptied
    # by pg_rewind as "its config files as they were", and allow_reclone changed nothing
    refused = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b"))
    assert refused["failed"] and refused["interrupted_rewind_found"] is True, refused
    assert refused["interrupted_rewind_recovery"] == "rewind_again" and refused["streaming"] is False
    assert "allow_reclone" in refused["msg"] and str(marker) in refused["msg"], refused["msg"]
    assert "could not" in refused["rewind_output"], refused["rewind_output"]
    assert not cfg.node("pg-a").server().is_running() and marker.exists()
    assert files(cfg, "pg-a") == own  # its own config files are back (the marker kept them)

    result = run_module(MODULE, follow_args(cfg, "pg-a", "pg-b", allow_reclone=True))
    assert_streamed_result(result, cfg, "pg-b", 2)
    assert result["interrupted_rewind_found"] is True and result["interrupted_rewind_recovery"] == "reclone"
    assert result["action"] == "reclone" and result["diverged_copy"], result
    assert "interrupted" in result["msg"], result["msg"]
    assert_streams_from(cfg, "pg-a", "pg-b", 2)
    assert files(cfg, "pg-a")["postgresql.conf"] == own["postgresql.conf"]
    assert not marker.exists()
    sql(cfg, "pg-b", "INSERT INTO t VALUES (3, 'after the rejoin')")
    expected = [tuple(r.values()) for r in sql(cfg, "pg-b", "SELECT id, origin FROM t ORDER BY id")]
    wait_rows(cfg, "pg-a", "SELECT id, origin FROM t ORDER BY id", expected)

    # pg-c: killed once pg_rewind ended, before its own config files were put back (it has the primary's, port
    # included). Its control file is pg_rewind's: the re-run configures and starts it, without rewinding again.
    own_c = files(cfg, "pg-c")
    after_end = bin_dir_freezing_pg_rewind(cfg, "bin-freezing-after-pg-rewind", after_end=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        killed_run = pool.submit(run_module, MODULE, follow_args(cfg, "pg-c", "pg-b", bin_dir=str(after_end)))
        kill_frozen_run(wait_frozen(after_end, killed_run.done, DEADLINE))
        assert killed_run.exception() is not None or killed_run.result()["failed"]
    assert files(cfg, "pg-c")["postgresql.conf"] == files(cfg, "pg-b")["postgresql.conf"] != own_c["postgresql.conf"]
    assert cfg.node("pg-c").server().controldata()["Database cluster state"] == "in archive recovery"

    resumed = run_module(MODULE, follow_args(cfg, "pg-c", "pg-b"))
    assert_streamed_result(resumed, cfg, "pg-b", 2)
    assert resumed["interrupted_rewind_found"] is True, resumed
    assert resumed["interrupted_rewind_recovery"] == "configure_rewound" and resumed["action"] == "rewind"
    assert_streams_from(cfg, "pg-c", "pg-b", 2)  # on its own port: its own postgresql.conf, from the marker
    assert not Path(marker_path(str(cfg.node("pg-c").data_dir))).exists()
    wait_rows(cfg, "pg-c", "SELECT id, origin FROM t ORDER BY id", expected)
