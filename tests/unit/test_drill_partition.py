"""dr_drill kind=partition, its pure parts: the region it cuts off (drill_judge.partition_target), its verdict rows
(drill_judge.partition_criteria), its Chaos Toolkit export, the conninfo rewrite (lab/partition.with_port); and the
LinkProxy it cuts or slows, on two sockets on loopback (its added latency in either direction, neither direction
holding the other)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import jsonschema
import pytest

from erlmcp_dr import catalog, params
from erlmcp_dr.drill import chaos as drill_chaos
from erlmcp_dr.drill import judge as drill_judge
from erlmcp_dr.drill import run as drill
from erlmcp_dr.lab import partition as lab_partition
from erlmcp_dr.lab.proxy import LinkProxy

DEADLINE = 10.0  # seconds a socket read gets in these tests: a hang guard, never a timing assertion


def test_the_partitioned_region_is_the_last_one_serving_neither_primary() -> None:
    regions, standbys, replicas = ["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"]
    assert drill_judge.partition_target(regions, "a", "a", standbys, replicas) == "c"
    assert drill_judge.partition_target(regions, "c", "a", standbys, replicas) == "b"  # the database moved to c
    assert drill_judge.partition_target(regions, "a", "c", standbys, replicas) == "b"  # Redis serves from c
    assert drill_judge.partition_target(regions, "b", "c", standbys, replicas) == "a"
    assert drill_judge.partition_target(regions, "a", "a", ["a", "b"], replicas) == "b"  # c has no standby
    assert drill_judge.partition_target(["a", "b"], "a", "b", standbys, replicas) is None  # both serve


def _check(name: str, verdict: str, measured: object = None, detail: str = "") -> dict:
    return {"name": name, "verdict": verdict, "measured": measured, "detail": detail}


HEALED = {"caught_up": True, "standby_restarted": False, "sync_full_before": 2, "sync_full_after": 2,
          "sync_partial_ok_before": 1, "sync_partial_ok_after": 2, "detail": "pg-c replayed 0/5036B30"}
CUT_DURING = [_check("pg_standbys region c", "fail", 0), _check("pg_replay_lag pg-c", "fail", "6448 B, > 1.0 s"),
              _check("redis_link redis-c", "fail", "down", "link down")]


def _evidence(**changes: object) -> dict:
    return {"mode": "cut", "latency_ms": 0.0, "region": "c", "standby": "pg-c", "replica": "redis-c",
            "during": CUT_DURING, "healed": HEALED, **changes}


def _rows(evidence: dict | None) -> dict[str, str]:
    return {c.name: c.verdict for c in drill_judge.partition_criteria(evidence)}


def test_a_cut_is_detected_only_when_readiness_failed_both_links_and_healed_only_without_a_rebuild() -> None:
    assert _rows(_evidence()) == {"detected_by_readiness": "pass", "healed_without_rebuild": "pass"}
    postgres_only = CUT_DURING[:2] + [_check("redis_link redis-c", "pass", "up")]
    assert _rows(_evidence(during=postgres_only))["detected_by_readiness"] == "fail"
    # redis_link failing for another reason than the link (its upstream is a proxy's port) is no detection
    upstream_only = CUT_DURING[:2] + [_check("redis_link redis-c", "fail", "up", "replicating from 127.0.0.1:1")]
    assert _rows(_evidence(during=upstream_only))["detected_by_readiness"] == "fail"
    redis_only = [_check("pg_standbys region c", "pass", 1), _check("pg_replay_lag pg-c", "pass", "0 B, 0.000 s"),
                  CUT_DURING[2]]
    assert _rows(_evidence(during=redis_only))["detected_by_readiness"] == "fail"
    assert _rows(_evidence(during=[]))["detected_by_readiness"] == "fail"  # readiness published nothing
    assert _rows(_evidence(healed=dict(HEALED, sync_full_after=3)))["healed_without_rebuild"] == "fail"
    assert _rows(_evidence(healed=dict(HEALED, standby_restarted=True)))["healed_without_rebuild"] == "fail"
    assert _rows(_evidence(healed=dict(HEALED, caught_up=False)))["healed_without_rebuild"] == "fail"
    assert _rows(None) == {"detected_by_readiness": "fail", "healed_without_rebuild": "fail"}  # never reached


def test_latency_reports_the_lag_readiness_saw_and_passes_while_both_links_stay_up() -> None:
    during = [_check("pg_standbys region c", "pass", 1), _check("pg_replay_lag pg-c", "pass", "812 B, 0.231 s"),
              _check("redis_link redis-c", "fail", "up", "replicating from 127.0.0.1:41105, not the primary redis-a")]
    evidence = _evidence(mode="latency", latency_ms=200.0, during=during, probe_seconds={"seconds": 0.412})
    rows = drill_judge.partition_criteria(evidence)
    lag = rows[0]
    assert (lag.name, lag.verdict, lag.measured) == ("lag_seen_by_readiness", "pass", "812 B, 0.231 s")
    assert "pg_replay_lag pg-c: pass (812 B, 0.231 s" in lag.detail and "0.412 s" in lag.detail
    assert "not the primary redis-a" in lag.detail  # what readiness judged is said, as it said it
    down = [during[0], during[1], _check("redis_link redis-c", "fail", "down", "link down")]
    assert _rows(dict(evidence, during=down))["lag_seen_by_readiness"] == "fail"


def test_the_partition_kind_is_a_parameter_choice_with_no_outage_allowed_and_no_recovery_runbook() -> None:
    runbook = catalog.load("dr_drill")
    assert params.validate(runbook, {"kind": "partition", "latency_ms": 200, "partition_seconds": 2})["kind"] == \
        "partition"
    assert runbook.parameters["partition_seconds"]["default"] == 5.0
    assert runbook.parameters["latency_ms"]["default"] == 0.0
    assert drill_judge.targets_for("partition", None)["rto_seconds"]["target"] == 1.0
    assert drill.RECOVERY["partition"] is None
    table = drill_judge.criteria("partition", drill_judge.targets_for("partition", None),
                                 drill_judge.outage([], 0.0, 0.02), drill_judge.data_loss([], [], [], 0.02),
                                 {"rate": 0.0}, 3.0)
    assert "no recovery runbook" in next(c for c in table if c.name == "recovery_seconds").detail


def test_the_chaos_toolkit_export_of_a_partition_drill_validates_and_names_the_fault_and_restore() -> None:
    fault = {"target": "c", "region": "c", "mode": "latency", "latency_ms": 200.0, "partition_seconds": 5.0}
    details = {"kind": "partition", "verdict": "passed", "restored": True, "recovery_runbook": None, "fault": fault,
               "criteria": [vars(c) for c in drill_judge.partition_criteria(_evidence())],
               "targets": {"rto_seconds": {"target": 1.0, "source": "s"}}, "measured": {"rto_seconds": 0.0},
               "steady_state_before": {"holds": True, "message": "ok", "deviations": []},
               "steady_state_after": {"holds": True, "message": "ok", "deviations": []}}
    steps = [{"task": "inject the fault", "action": "dr_drill", "start": "a", "end": "b", "duration": 0.0,
              "failed": False, "data": {"result": fault}},
             {"task": "restore the steady state", "action": "dr_drill", "start": "b", "end": "c", "duration": 1.0,
              "failed": False, "data": {}}]
    result = {"run_id": "x", "runbook": "dr_drill", "inventory": "/inv", "started_at": "a", "ended_at": "c",
              "duration_seconds": 9.0, "steps": steps, "facts": {"summary": {"details": details}}}
    schema = drill_chaos.schema()
    experiment, journal = drill_chaos.experiment(result), drill_chaos.journal(result)
    jsonschema.validate(experiment, {**schema, "$ref": "#/$defs/experiment"})
    jsonschema.validate(journal, {**schema, "$ref": "#/$defs/journal"})
    assert experiment["method"][0]["name"] == "inject: the replication links of region c 200 ms added to for 5.0 s " \
                                              "(TCP proxies)"
    assert len(experiment["method"]) == 1 and "the links heal" in experiment["description"]
    assert "pointed directly at their primaries again" in experiment["rollbacks"][0]["name"]


def test_the_standbys_conninfo_keeps_everything_but_its_port() -> None:
    conninfo = "host=127.0.0.1 port=5432 user=replicator passfile=/x/.pgpass application_name=pg-c"
    moved = lab_partition.with_port(conninfo, 40001)
    assert lab_partition.port_of(moved) == 40001 and lab_partition.port_of(conninfo) == 5432
    assert "passfile=/x/.pgpass" in moved and "application_name=pg-c" in moved and "user=replicator" in moved
    assert lab_partition.port_of("") is None


# ---------------------------------------------------------------- LinkProxy on loopback


@contextmanager
def echo_pair() -> Iterator[tuple[LinkProxy, socket.socket, socket.socket]]:
    """A listening socket, a LinkProxy to it, and (proxy, the client's end, the server's end)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(DEADLINE)
    proxy = LinkProxy("127.0.0.1", server.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE)
    far, _ = server.accept()
    far.settimeout(DEADLINE)
    client.sendall(b"!")  # relayed once: the proxy has registered the connection (what cut() closes)
    assert _read(far, 1) == b"!"
    try:
        yield proxy, client, far
    finally:
        for sock in (client, far, server):
            sock.close()
        proxy.close()


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_link_proxy_delays_each_chunk_both_ways_and_one_direction_never_holds_the_other() -> None:
    with echo_pair() as (proxy, client, far):
        client.sendall(b"before")
        assert _read(far, 6) == b"before"  # no delay by default
        proxy.delay = 0.3
        sent = time.monotonic()
        client.sendall(b"up")
        far.sendall(b"down")
        got: dict[str, tuple[bytes, float]] = {}

        def read_far() -> None:
            got["up"] = (_read(far, 2), time.monotonic() - sent)

        reader = threading.Thread(target=read_far)
        reader.start()
        got["down"] = (_read(client, 4), time.monotonic() - sent)
        reader.join(DEADLINE)
        # Lower bounds by construction (a chunk is sent `delay` after it was read), not timing thresholds: each way
        # was delayed, and the two were delayed side by side (each one arrived, neither waited for the other's).
        assert got["up"][0] == b"up" and got["up"][1] >= 0.3
        assert got["down"][0] == b"down" and got["down"][1] >= 0.3
        # chunks in a row, each delayed, arrive whole and in order
        client.sendall(b"1")
        client.sendall(b"2")
        assert _read(far, 2) == b"12"
        proxy.delay = 0.0
        client.sendall(b"after")
        assert _read(far, 5) == b"after"


def test_link_proxy_cut_closes_the_link_and_heal_relays_again() -> None:
    with echo_pair() as (proxy, client, far):
        proxy.cut()
        assert proxy.is_cut
        assert _read(far, 1) == b""  # the open connection was closed
        proxy.heal()
        again = socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE)
        with again:
            again.sendall(b"x")  # relayed to the target again: it accepts a new connection
            assert not proxy.is_cut


@pytest.mark.parametrize("latency", [0.0, 0.05])
def test_link_proxy_relays_a_large_transfer_intact(latency: float) -> None:
    with echo_pair() as (proxy, client, far):
        proxy.delay = latency
        payload = bytes(range(256)) * 4096  # 1 MiB, many chunks
        writer = threading.Thread(target=client.sendall, args=(payload,))
        writer.start()
        assert _read(far, len(payload)) == payload
        writer.join(DEADLINE)
