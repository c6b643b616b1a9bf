"""regional_failover mode=planned on the real lab (PostgreSQL streaming replication, redis-server, Knot DNS, the
lab's app), judged as a client sees it: a client writes through the public name every 20 ms during a planned move
a -> b and the move back b -> a; afterwards no write the application acknowledged is missing from the serving
database or Redis, and a 10 ms sampler of every database node and every Redis node never saw two writers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import lab_inventory, new_lab
from runbook_helpers import DEADLINE, summary, wait_for

import erlmcp_dr
from erlmcp_dr import regional_probe
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.probe import WritersSampler

pytestmark = pytest.mark.integration

SERVICE_LEVELS = [["auth", "session_manager"], ["api_gateway", "resource_management"],
                  ["tool_orchestration", "monitoring"], ["dashboard"]]  # lab/services.py's graph, as levels
PLANNED_STEPS = ["residency", "healthy", "ready", "declare", "services", "redis", "database", "app", "dns",
                 "resolved"]


def planned_move(inventory: Path, from_region: str, to_region: str) -> dict[str, Any]:
    return erlmcp_dr.run("regional_failover", inventory=inventory,
                         extravars={"from_region": from_region, "to_region": to_region, "mode": "planned",
                                    "health_interval": 0.2}).to_dict()


def first_write_in(writer: regional_probe.PublicNameWriter, region: str, after: float) -> Any:
    """Polls until the client's writes through the public name are acknowledged by `region`'s application."""
    found, _ = wait_for(lambda: writer.report.first_in(region, after), DEADLINE, interval=0.05,
                        what=f"a write through the public name acknowledged by region {region}")
    return found


def rows_found_on(cfg: lab.LabConfig, rows: list[int]) -> dict[str, list[int]]:
    """Which database nodes hold the given rows (a failure's diagnosis: where did a lost write go?)."""
    import psycopg

    from erlmcp_dr.lab import app_server as labapp

    found: dict[str, list[int]] = {}
    for node in cfg.nodes:
        try:
            with psycopg.connect(autocommit=True, **node.conn_params()) as conn:
                present = {row[0] for row in conn.execute(f"SELECT id FROM {labapp.TABLE}").fetchall()}
        except Exception as exc:  # noqa: BLE001 - a node that does not answer is part of the diagnosis
            found[node.name] = [f"unreachable: {exc}"]  # type: ignore[list-item]
            continue
        found[node.name] = [row for row in rows if row in present]
    return found


def around(writer: regional_probe.PublicNameWriter, lost: dict[str, list[Any]]) -> list[Any]:
    rows = set(lost["rows"])
    ids = [w.row_id for w in writer.report.acknowledged]
    index = next((i for i, w in enumerate(writer.report.acknowledged) if w.row_id in rows), None)
    if index is None:
        return []
    return [(w.row_id, w.region, w.database, w.redis, round(w.wall, 3)) for w in
            writer.report.acknowledged[max(0, index - 3):index + len(rows) + 3]] + [len(ids)]


def assert_planned_move(result: dict[str, Any], to_region: str) -> dict[str, Any]:
    outcome = summary(result)
    assert result["succeeded"] is True, outcome.get("reason")
    assert outcome["status"] == "completed" and outcome["mode"] == "planned"
    assert [step["step"] for step in outcome["steps"]] == PLANNED_STEPS
    assert all(step["phase"] == "forward" and step["verified"] for step in outcome["steps"])
    records = {record["data"]["child_run_id"]: record for record in result["steps"] if record["data"]["child_run_id"]}
    database = next(record for record in result["steps"] if record["task"].startswith("database:"))
    assert database["action"] == "database_switchover", database
    assert outcome["served"]["after"] == to_region
    assert records  # every runbook step is a child run of its own
    return outcome


def test_planned_move_and_back_loses_no_acknowledged_write_and_never_has_two_writers(home: Path) -> None:
    with new_lab(app=True, dns=True) as cfg:
        inventory = lab_inventory(cfg)
        databases = {node.name: node.conn_params() for node in cfg.nodes}
        with WritersSampler(databases, interval=0.01) as pg_sampler, \
                regional_probe.RedisPrimariesSampler(cfg, interval=0.01) as redis_sampler, \
                regional_probe.PublicNameWriter(cfg, interval=0.02) as writer:
            first_write_in(writer, "a", after=0.0)
            there = planned_move(inventory, "a", "b")
            arrived = first_write_in(writer, "b", after=0.0)
            assert (arrived.database, arrived.redis) == ("pg-b", "redis-b")
            lost_there = regional_probe.missing(cfg, writer.report, "pg-b", "redis-b")
            where_there = rows_found_on(cfg, lost_there["rows"])
            back = planned_move(inventory, "b", "a")
            returned = first_write_in(writer, "a", after=arrived.at)
            assert (returned.database, returned.redis) == ("pg-a", "redis-a")
        lost_back = regional_probe.missing(cfg, writer.report, "pg-a", "redis-a")

        first = assert_planned_move(there, "b")
        assert_planned_move(back, "a")
        # Redis handed over by its coordinated FAILOVER (writes paused until the target had every byte), the
        # database by a switchover: the two lossless paths, not a promotion of a replica whose primary was gone.
        assert first["served"] == {"before": "a", "after": "b"}
        redis_child = json.loads((home / "runs" / f"{there['run_id']}.redis" / "result.json").read_text())
        assert summary(redis_child)["old_primary_fence"] == "failover", summary(redis_child)
        # The application in the target region: service_recovery (a child run under the move's lock) started every
        # one of the region's services, level by level in dependency order, none failed; each leg its own region's.
        for move, region in ((there, "b"), (back, "a")):
            services = summary(json.loads((home / "runs" / f"{move['run_id']}.services" / "result.json").read_text()))
            assert services["region"] == region and services["failed"] == services["not_started"] == []
            assert services["started"] == [name for level in SERVICE_LEVELS for name in level], services
            assert services["levels"] == SERVICE_LEVELS
        # The parent's report: recovery time against the tier's RTO, nothing given up, the point of no return passed.
        recovery = first["recovery"]
        assert recovery["lost"] == {"database_bytes": 0, "redis_bytes": 0, "client_writes": None}, recovery
        assert recovery["rto_target_seconds"] == 300 and recovery["recovery_seconds"] > 0
        assert recovery["point_of_no_return"]["step"] == "database" and recovery["point_of_no_return"]["passed"]
        assert recovery["undone"] == [] and first["recovery_point"]["lost_bytes"] == 0
        # Zero acknowledged writes lost, on either leg; the client wrote on both sides of each move.
        assert lost_there == {"rows": [], "sessions": []}, (lost_there, where_there, around(writer, lost_there),
                                                             pg_sampler.report.split_rounds[:5])
        assert lost_back == {"rows": [], "sessions": []}, lost_back
        assert len(writer.report.acknowledged) > 10 and {"a", "b"} <= set(writer.report.to_dict()["regions"])
        # Never two writable databases nor two Redis primaries at any 10 ms sample.
        assert pg_sampler.report.rounds > 100 and redis_sampler.report.rounds > 100
        assert pg_sampler.report.split_rounds == [] and pg_sampler.report.max_writable == 1, pg_sampler.report
        assert redis_sampler.report.split_rounds == [], redis_sampler.report
        assert redis_sampler.report.max_primaries == 1
        assert lab.status(cfg)  # the lab still answers: nothing left half-moved
