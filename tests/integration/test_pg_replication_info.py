"""erlmcp.dr.pg_replication_info on the real lab: roles, timelines, LSNs, lag, unreachable nodes."""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Any

import pytest
from conftest import login_args, run_module, sql, state
from runbook_helpers import closed_port
from test_pg_promote import foreign_node  # noqa: F401 - a fixture

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402

pytestmark = pytest.mark.integration

MODULE = "erlmcp.dr.pg_replication_info"
DEADLINE = 60


def info_args(cfg: lab.LabConfig, *extra_nodes: dict[str, Any], **options: Any) -> dict[str, Any]:
    nodes = [{"name": n.name, "host": "127.0.0.1", "port": n.port} for n in cfg.nodes] + list(extra_nodes)
    args = dict(nodes=nodes, login_user=lab.SUPERUSER, login_password=lab.LAB_PASSWORD, connect_timeout=3)
    args.update(options)
    return args






def test_sees_the_primary_and_streaming_standbys_with_lag(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-b", "SELECT pg_wal_replay_pause()")
    sql(cfg, "pg-a", "CREATE TABLE t AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 20000) g")
    target = state(cfg, "pg-a")["current_lsn"]
    # pg-b keeps receiving while its replay is paused: wait until it has the WAL, then look.
    wait_for(lambda: pg.lsn_diff(state(cfg, "pg-b")["receive_lsn"], target) >= 0, DEADLINE, what="pg-b received")
    wait_for(lambda: pg.lsn_diff(state(cfg, "pg-c")["replay_lsn"], target) >= 0, DEADLINE, what="pg-c replayed")

    result = run_module(MODULE, info_args(cfg))

    assert not result["failed"], result.get("msg")
    assert result["changed"] is False
    assert result["primary"] == "pg-a" and result["primaries"] == ["pg-a"] and result["split_brain"] is False
    assert result["standbys"] == ["pg-b", "pg-c"]
    assert result["unreachable_nodes"] == []
    assert result["system_identifiers_agree"] is True
    nodes = result["nodes"]
    a, b, c = nodes["pg-a"], nodes["pg-b"], nodes["pg-c"]
    assert a["reachable"] and a["error"] is None and a["role"] == "primary" and a["in_recovery"] is False
    assert a["timeline"] == 1 and a["read_only"] is False
    assert pg.lsn_diff(a["current_lsn"], target) >= 0 and a["position_lsn"] == a["current_lsn"]
    assert {r["application_name"] for r in a["replicas"]} == {"pg-b", "pg-c"}
    assert result["system_identifier"] == a["system_identifier"] == b["system_identifier"] == c["system_identifier"]
    for s in (b, c):
        assert s["role"] == "standby" and s["in_recovery"] is True and s["timeline"] == 1
        assert s["upstream"] == "pg-a" and s["upstream_port"] == cfg.node("pg-a").port
        assert s["streaming"] is True and s["receiver_status"] == "streaming"
        assert s["sync_state"] == "async" and s["replication"]["state"] == "streaming"
        assert s["current_lsn"] is None and s["read_only"] is False
        assert s["lag_bytes"] == pg.lsn_diff(a["current_lsn"], s["replay_lsn"])
        assert s["receive_lag_bytes"] == pg.lsn_diff(a["current_lsn"], s["receive_lsn"])
        assert s["lag_seconds"] is None or s["lag_seconds"] >= 0
    # Paused replay: pg-b has the WAL but has not applied it, so it lags by more than the table it has not replayed.
    assert b["replay_paused"] is True and c["replay_paused"] is False
    assert b["lag_bytes"] > 1_000_000
    assert b["lag_bytes"] > b["receive_lag_bytes"]
    assert c["lag_bytes"] < b["lag_bytes"]


def test_reports_unreachable_nodes_with_their_error_and_still_succeeds(fresh_lab):
    cfg = fresh_lab
    port = closed_port()
    closed = {"name": "pg-closed", "host": "127.0.0.1", "port": port}
    unknown = {"name": "pg-nowhere", "host": "no-such-host.invalid", "port": 5432}

    result = run_module(MODULE, info_args(cfg, closed, unknown))

    assert not result["failed"], result.get("msg")
    assert result["unreachable_nodes"] == ["pg-closed", "pg-nowhere"]
    assert result["primary"] == "pg-a" and result["standbys"] == ["pg-b", "pg-c"]
    refused = result["nodes"]["pg-closed"]
    assert refused["reachable"] is False and refused["role"] is None and refused["lag_bytes"] is None
    assert "connection refused" in refused["error"] and str(port) in refused["error"]
    assert refused["error_kind"] == "refused" and result["nodes"]["pg-nowhere"]["error_kind"] == "dns"
    assert "cannot resolve host 'no-such-host.invalid'" in result["nodes"]["pg-nowhere"]["error"]
    assert result["nodes"]["pg-a"]["error_kind"] is None
    assert result["system_identifiers_agree"] is True


class HangingServers:
    """Two TCP listeners on loopback that accept connections and never answer (hosts whose server hangs), watched by
    one thread, except that once the second has a connection, the first hangs up on its own (what a server that
    crashes would do): a client that asks both at once sees the first node close on it, a client that asks the
    first before the second waits the first's whole connect_timeout, a timeout."""

    def __init__(self) -> None:
        self.listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
        self.ports = [listener.getsockname()[1] for listener in self.listeners]
        self.accepted = [0, 0]
        self._conns: list[list[socket.socket]] = [[], []]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> HangingServers:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        for sock in self.listeners + self._conns[0] + self._conns[1]:
            sock.close()

    def _watch(self) -> None:
        with selectors.DefaultSelector() as selector:
            for index, listener in enumerate(self.listeners):
                selector.register(listener, selectors.EVENT_READ, index)
            while not self._stop.is_set():
                for key, _events in selector.select(timeout=0.05):
                    conn, _addr = key.fileobj.accept()
                    self.accepted[key.data] += 1
                    self._conns[key.data].append(conn)
                if self.accepted[1]:
                    for conn in self._conns[0]:
                        conn.close()
                    self._conns[0].clear()


def test_nodes_are_asked_at_once_so_a_silent_node_does_not_delay_the_others(fresh_lab):
    cfg = fresh_lab
    with HangingServers() as hanging:
        nodes = [{"name": f"pg-hanging-{index}", "host": "127.0.0.1", "port": port}
                 for index, port in enumerate(hanging.ports, 1)]

        result = run_module(MODULE, info_args(cfg, *nodes, connect_timeout=3))

    assert not result["failed"], result.get("msg")
    assert result["primary"] == "pg-a" and result["standbys"] == ["pg-b", "pg-c"]
    assert result["unreachable_nodes"] == ["pg-hanging-1", "pg-hanging-2"]
    first, second = result["nodes"]["pg-hanging-1"], result["nodes"]["pg-hanging-2"]
    # Asked at once: the second node was connected to while the first was still waited for, so the first hung up
    # before its connect_timeout (asked one after the other, the first would have timed out before the second was
    # asked). The second never answers: its own timeout.
    assert second["error_kind"] == "timeout", second
    assert first["error_kind"] != "timeout" and "server closed the connection unexpectedly" in first["error"], first


def test_primary_down_leaves_standbys_without_a_primary(fresh_lab):
    cfg = fresh_lab
    cfg.node("pg-a").server().stop(timeout=DEADLINE)
    wait_for(lambda: state(cfg, "pg-b")["wal_receiver"] is None
             or state(cfg, "pg-b")["wal_receiver"]["status"] != "streaming", DEADLINE, what="pg-b lost its primary")

    result = run_module(MODULE, info_args(cfg))

    assert not result["failed"], result.get("msg")
    assert result["primary"] is None and result["primaries"] == []
    assert result["unreachable_nodes"] == ["pg-a"] and result["standbys"] == ["pg-b", "pg-c"]
    assert "connection refused" in result["nodes"]["pg-a"]["error"]
    b = result["nodes"]["pg-b"]
    assert b["streaming"] is not True and b["lag_bytes"] is None and b["sync_state"] is None
    assert b["replay_lsn"] is not None
    # What it was following, from its primary_conninfo (the password never read out).
    assert b["upstream"] is None and b["configured_upstream"] == "pg-a"
    assert (b["configured_upstream_host"], b["configured_upstream_port"]) == ("127.0.0.1", cfg.node("pg-a").port)
    assert lab.LAB_PASSWORD not in str(result)


def test_two_primaries_are_a_split_brain(fresh_lab):
    cfg = fresh_lab
    sql(cfg, "pg-c", "SELECT pg_promote(true, 60)")

    result = run_module(MODULE, info_args(cfg))

    assert not result["failed"], result.get("msg")
    assert result["primaries"] == ["pg-a", "pg-c"] and result["primary"] is None and result["split_brain"] is True
    assert result["nodes"]["pg-c"]["timeline"] == 2 and result["nodes"]["pg-a"]["timeline"] == 1
    assert result["nodes"]["pg-b"]["lag_bytes"] is None  # behind which primary? not guessed


def test_wrong_password_makes_every_node_unreachable_with_a_clear_error(fresh_lab):
    result = run_module(MODULE, info_args(fresh_lab, login_password="Not-The-Lab-Password-7"))

    assert not result["failed"], result.get("msg")
    assert result["unreachable_nodes"] == ["pg-a", "pg-b", "pg-c"]
    for facts in result["nodes"].values():
        assert "wrong or missing password (login_password)" in facts["error"]
        assert f"authentication failed for user {lab.SUPERUSER} at 127.0.0.1:{facts['port']}" in facts["error"]
        assert facts["error_kind"] == "auth"
    assert "Not-The-Lab-Password-7" not in str(result)  # the password never shows


def test_check_mode_reports_the_same(fresh_lab):
    result = run_module(MODULE, info_args(fresh_lab), check=True)

    assert not result["failed"], result.get("msg")
    assert result["changed"] is False and result["primary"] == "pg-a" and result["standbys"] == ["pg-b", "pg-c"]


def test_duplicate_node_names_are_refused(fresh_lab):
    cfg = fresh_lab
    again = {"name": "pg-a", "host": "127.0.0.1", "port": cfg.node("pg-b").port}
    result = run_module(MODULE, info_args(cfg, again))

    assert result["failed"] and "pg-a more than once" in result["msg"]


def test_read_only_fenced_primary_is_listed_apart_and_takes_no_writes(fresh_lab):
    cfg = fresh_lab
    fenced = run_module("erlmcp.dr.pg_fence", dict(login_args(cfg, "pg-a"), method="read_only"))
    assert not fenced["failed"], fenced.get("msg")

    result = run_module(MODULE, info_args(cfg))

    assert not result["failed"], result.get("msg")
    assert result["primaries"] == [] and result["primary"] is None and result["split_brain"] is False
    assert result["fenced_primaries"] == ["pg-a"]
    a = result["nodes"]["pg-a"]
    assert a["role"] == "primary" and a["read_only"] is True and a["writable"] is False
    assert result["nodes"]["pg-b"]["writable"] is False and result["nodes"]["pg-b"]["upstream"] == "pg-a"
    assert result["nodes"]["pg-b"]["lag_bytes"] is not None  # still measured against the fenced primary


def test_membership_is_by_identity_a_node_of_another_cluster_is_foreign(fresh_lab, foreign_node):  # noqa: F811
    cfg = fresh_lab
    # pg-b's inventory entry points at a primary of another cluster; pg-a's pg_stat_replication still lists an
    # application_name "pg-b" (the real pg-b): that must not make the impostor a member.
    nodes = [{"name": "pg-a", "host": "127.0.0.1", "port": cfg.node("pg-a").port},
             {"name": "pg-b", "host": "127.0.0.1", "port": foreign_node.port},
             {"name": "pg-c", "host": "127.0.0.1", "port": cfg.node("pg-c").port}]

    result = run_module(MODULE, dict(info_args(cfg), nodes=nodes))

    assert not result["failed"], result.get("msg")
    sysid = state(cfg, "pg-a")["system_identifier"]
    assert result["system_identifier"] == sysid and result["system_identifiers_agree"] is False
    assert result["foreign_nodes"] == ["pg-b"] and result["nodes"]["pg-b"]["foreign"] is True
    assert result["nodes"]["pg-b"]["system_identifier"] != sysid
    assert result["primaries"] == ["pg-a"] and result["split_brain"] is False and result["standbys"] == ["pg-c"]
    assert result["nodes"]["pg-b"]["replication"] is None and result["nodes"]["pg-b"]["upstream"] is None
    assert result["nodes"]["pg-c"]["upstream"] == "pg-a" and result["nodes"]["pg-c"]["configured_upstream"] == "pg-a"
    assert any("another cluster" in w for w in result.get("warnings", []))


def _read_sessions(cfg: lab.LabConfig) -> dict[str, int]:
    """How many sessions of pg_replication_info's reads each running node has open."""
    query = ("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'erlmcp.dr.pg_replication_info' "
             "AND pid <> pg_backend_pid()")
    return {node.name: sql(cfg, node.name, query)[0]["n"] for node in cfg.nodes if node.server().is_running()}


def _read(cfg: lab.LabConfig) -> dict[str, Any]:
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import replication_info

    args = info_args(cfg)
    return replication_info.run(dict(args, login_db="postgres"))


def test_reads_inside_kept_take_the_connections_the_first_read_opened(fresh_lab):
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import kept_connections

    cfg = fresh_lab
    _read(cfg)
    assert _read_sessions(cfg) == {"pg-a": 0, "pg-b": 0, "pg-c": 0}  # outside kept(): closed after each read

    with kept_connections.kept():
        first = _read(cfg)
        kept = _read_sessions(cfg)
        sql(cfg, "pg-a", "CREATE TABLE after_the_first_read AS SELECT 1 AS one")
        second = _read(cfg)
        still = _read_sessions(cfg)
    after = _read_sessions(cfg)

    assert kept == still == {"pg-a": 1, "pg-b": 1, "pg-c": 1}  # one session per node, used by both reads
    assert after == {"pg-a": 0, "pg-b": 0, "pg-c": 0}  # closed when the scope ends
    # each read asks the server when it runs: the second sees the primary's WAL move on
    assert pg.lsn_diff(second["nodes"]["pg-a"]["current_lsn"], first["nodes"]["pg-a"]["current_lsn"]) > 0


def test_a_node_that_goes_down_between_kept_reads_is_reported_as_a_new_connection_finds_it(fresh_lab):
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import kept_connections

    cfg = fresh_lab
    with kept_connections.kept():
        first = _read(cfg)
        cfg.node("pg-c").server().stop(timeout=DEADLINE)
        second = _read(cfg)

    assert first["nodes"]["pg-c"]["reachable"] is True
    down = second["nodes"]["pg-c"]
    # not "connected but could not read its state" (the kept connection's failure): what connecting now says
    assert down["reachable"] is False and down["error_kind"] == "refused", down
    assert "connection refused" in down["error"]
    assert second["unreachable_nodes"] == ["pg-c"] and second["primary"] == "pg-a"
