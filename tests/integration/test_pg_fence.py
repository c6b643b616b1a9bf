"""erlmcp.dr.pg_fence on the real lab: read-only fence over SQL, stop fence on the host, both ways."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from armed_helpers import kill_postmaster
from conftest import login_args, run_module, sql, state
from runbook_helpers import closed_port

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402

pytestmark = pytest.mark.integration

MODULE = "erlmcp.dr.pg_fence"
DEADLINE = 60


def read_only_args(cfg: lab.LabConfig, node: str = "pg-a", **extra: Any) -> dict[str, Any]:
    args = dict(login_args(cfg, node), method="read_only", wait_timeout=DEADLINE)
    args.update(extra)
    return args


def stop_args(cfg: lab.LabConfig, node: str = "pg-a", **extra: Any) -> dict[str, Any]:
    n = cfg.node(node)
    args = dict(method="stop", data_dir=str(n.data_dir), log_file=str(n.log_file), wait_timeout=DEADLINE)
    args.update(extra)
    return args






def insert_works(cfg: lab.LabConfig) -> bool:
    try:
        sql(cfg, "pg-a", "INSERT INTO t VALUES (1)")
        return True
    except psycopg.errors.ReadOnlySqlTransaction:
        return False


def streaming_standbys(cfg: lab.LabConfig) -> set[str]:
    rows = sql(cfg, "pg-a", "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
    return {r["application_name"] for r in rows}


# ---------------------------------------------------------------- read_only


def test_read_only_fence_blocks_new_writes_terminates_sessions_keeps_replicas(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-a", "CREATE TABLE t (i int)")
    session = pg.connect(cfg.node("pg-a").conn_params(), application_name="app-session")
    session_pid = session.info.backend_pid
    try:
        result = run_module(MODULE, read_only_args(cfg), diff=True)

        assert not result["failed"], result.get("msg")
        assert result["changed"] is True and result["was_fenced"] is False and result["fenced"] is True
        assert result["method"] == "read_only" and result["state"] == "fenced" and result["role"] == "primary"
        assert result["diff"] == {"before": {"fenced": False}, "after": {"fenced": True}}
        terminated = {s["pid"]: s for s in result["terminated_sessions"]}
        assert session_pid in terminated and terminated[session_pid]["application_name"] == "app-session"
        assert all(s["application_name"] not in ("pg-b", "pg-c") for s in result["terminated_sessions"])
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    finally:
        session.close()

    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="read-only transaction"):
        sql(cfg, "pg-a", "INSERT INTO t VALUES (1)")
    assert streaming_standbys(cfg) == {"pg-b", "pg-c"}
    assert state(cfg, "pg-b")["wal_receiver"]["status"] == "streaming"

    again = run_module(MODULE, read_only_args(cfg))
    assert not again["failed"], again.get("msg")
    assert again["changed"] is False and again["was_fenced"] is True and again["terminated_sessions"] == []


def test_read_only_unfence_restores_writes_and_is_idempotent(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-a", "CREATE TABLE t (i int)")
    assert not run_module(MODULE, read_only_args(cfg))["failed"]
    assert not insert_works(cfg)

    check = run_module(MODULE, read_only_args(cfg, state="unfenced"), check=True, diff=True)
    assert not check["failed"], check.get("msg")
    assert check["changed"] is True and check["fenced"] is False
    assert check["diff"] == {"before": {"fenced": True}, "after": {"fenced": False}}
    assert not insert_works(cfg)  # check mode touched nothing

    result = run_module(MODULE, read_only_args(cfg, state="unfenced"))
    assert not result["failed"], result.get("msg")
    assert result["changed"] is True and result["was_fenced"] is True and result["fenced"] is False
    assert insert_works(cfg)
    assert sql(cfg, "pg-a", "SELECT count(*) AS n FROM pg_file_settings "
                            "WHERE name = 'default_transaction_read_only'")[0]["n"] == 0

    again = run_module(MODULE, read_only_args(cfg, state="unfenced"))
    assert not again["failed"], again.get("msg")
    assert again["changed"] is False and again["was_fenced"] is False


def test_read_only_check_mode_changes_nothing(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-a", "CREATE TABLE t (i int)")
    with pg.connect(cfg.node("pg-a").conn_params(), application_name="app-session") as session:
        result = run_module(MODULE, read_only_args(cfg), check=True)

        assert not result["failed"], result.get("msg")
        assert result["changed"] is True and result["fenced"] is True and result["was_fenced"] is False
        assert session.info.backend_pid in [s["pid"] for s in result["terminated_sessions"]]  # would terminate
        session.execute("SELECT 1")  # still alive
    assert insert_works(cfg)
    assert sql(cfg, "pg-a", "SHOW default_transaction_read_only")[0]["default_transaction_read_only"] == "off"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"login_password": "Not-The-Lab-Password-7"}, "wrong or missing password (login_password)"),
        ({"login_port": "closed"}, "connection refused"),
        ({"login_host": "no-such-host.invalid"}, "cannot resolve host 'no-such-host.invalid' (login_host)"),
    ],
)
def test_read_only_connection_failures_are_clear(fresh_lab, override, message):
    cfg = fresh_lab
    if override.get("login_port") == "closed":
        override = {"login_port": closed_port()}
    result = run_module(MODULE, read_only_args(cfg, **override))

    assert result["failed"] and message in result["msg"]
    assert "Not-The-Lab-Password-7" not in str(result)
    assert sql(cfg, "pg-a", "SHOW default_transaction_read_only")[0]["default_transaction_read_only"] == "off"


# ---------------------------------------------------------------- stop


def test_stop_fence_returns_final_lsn_the_standby_replays_to(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-a", "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    server = cfg.node("pg-a").server()

    check = run_module(MODULE, stop_args(cfg), check=True, diff=True)
    assert not check["failed"], check.get("msg")
    assert check["changed"] is True and check["fenced"] is True and check["final_lsn"] is None
    assert check["diff"] == {"before": {"fenced": False}, "after": {"fenced": True}}
    assert server.is_running()

    result = run_module(MODULE, stop_args(cfg))
    assert not result["failed"], result.get("msg")
    assert result["changed"] is True and result["was_running"] is True and result["running"] is False
    assert result["was_fenced"] is False and result["fenced"] is True
    assert result["final_timeline"] == 1 and result["cluster_state"] == "shut down" and result["clean_shutdown"]
    final = pg.parse_lsn(result["final_lsn"])
    assert final is not None and not server.is_running()

    # The standby received the shutdown checkpoint: it replays up to (past the start of) final_lsn.
    wait_for(lambda: pg.parse_lsn(state(cfg, "pg-b")["replay_lsn"]) >= final, DEADLINE, what="pg-b at final_lsn")
    assert sql(cfg, "pg-b", "SELECT count(*) AS n FROM t")[0]["n"] == 1000

    again = run_module(MODULE, stop_args(cfg))
    assert not again["failed"], again.get("msg")
    assert again["changed"] is False and again["was_fenced"] is True and again["final_lsn"] == result["final_lsn"]


def test_stop_fence_of_a_killed_postmaster_finds_it_stopped_without_waiting_for_its_reaping(fresh_lab):
    """kill -9: the postmaster may stay a zombie (pg_ctl counts it as running) until its parent reaps it. The fence
    counts it stopped once nothing is attached to its shared memory (no orphaned backend can take writes): it
    stopped nothing (changed false) and reports the crash (not a clean shutdown)."""
    cfg = fresh_lab
    server = cfg.node("pg-a").server()
    pid = server.postmaster_pid()
    kill_postmaster(cfg, "pg-a")

    result = run_module(MODULE, stop_args(cfg))

    assert not result["failed"], result.get("msg")
    assert result["changed"] is False and result["was_running"] is False and result["fenced"] is True, result
    assert result["clean_shutdown"] is False and result["cluster_state"] == "in production", result
    assert server.attached() in (0, None) and server.postmaster_pid() in (pid, None)
    with pytest.raises(pg.PgError, match="connection refused"):
        sql(cfg, "pg-a", "SELECT 1")


def test_stop_unfence_starts_the_server_again(fresh_lab):
    cfg = fresh_lab
    server = cfg.node("pg-a").server()
    assert not run_module(MODULE, stop_args(cfg))["failed"]

    check = run_module(MODULE, stop_args(cfg, state="unfenced"), check=True)
    assert not check["failed"], check.get("msg")
    assert check["changed"] is True and check["running"] is True and not server.is_running()

    result = run_module(MODULE, stop_args(cfg, state="unfenced"), diff=True)
    assert not result["failed"], result.get("msg")
    assert result["changed"] is True and result["was_running"] is False and result["running"] is True
    assert result["final_lsn"] is None
    assert result["diff"] == {"before": {"fenced": True}, "after": {"fenced": False}}
    assert state(cfg, "pg-a")["role"] == "primary"
    sql(cfg, "pg-a", "CREATE TABLE after_unfence (i int)")

    again = run_module(MODULE, stop_args(cfg, state="unfenced"))
    assert not again["failed"], again.get("msg")
    assert again["changed"] is False and again["was_running"] is True


def test_stop_fence_without_a_cluster_fails_clearly(fresh_lab, tmp_path):
    result = run_module(MODULE, stop_args(fresh_lab, data_dir=str(tmp_path)))

    assert result["failed"] and f"no PostgreSQL data directory at {tmp_path}" in result["msg"]
    assert "(data_dir)" in result["msg"]


def test_stop_fence_needs_data_dir(fresh_lab):
    result = run_module(MODULE, {"method": "stop"})

    assert result["failed"] and "data_dir" in result["msg"]
