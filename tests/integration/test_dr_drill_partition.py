"""dr_drill kind=partition on the real lab (PostgreSQL, redis-server, Knot DNS, the lab's app): region c (a standby
region: it serves neither primary) is cut off from the rest through two TCP proxies the drill starts, its standby's
and its replica's replication links. In one lab: a cut drill passes (readiness during the cut fails the region's
replication checks; after the heal both catch up without a restart or a full resync; the client through the public
name sees no outage); a cut drill killed with kill -9 right after its fault leaves pg-c and redis-c pointed at
proxy ports nobody listens on any more; the next drill (200 ms of latency instead of a cut) points both links
directly again first, then passes, with the lag readiness saw reported.

Judged from the outside: pg-c's primary_conninfo and WAL receiver, redis-c's INFO replication, the Redis primary's
resync counters, the pending record and the verdict table.
"""

from __future__ import annotations

from typing import Any

import pytest
from runbook_helpers import inventory_path, kill_drill_once, new_lab, psycopg, run_json

from erlmcp_dr.drill import run as drill
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import partition as lab_partition

pytestmark = pytest.mark.integration


def _links(cfg: lab.LabConfig) -> dict[str, Any]:
    """pg-c's configured and streaming upstream port, redis-c's master port and link status."""
    node = next(n for n in cfg.nodes if n.name == "pg-c")
    with psycopg.connect(**node.conn_params(), autocommit=True) as conn:
        conninfo = conn.execute("SHOW primary_conninfo").fetchone()[0]
        receiver = conn.execute("SELECT status, sender_port FROM pg_stat_wal_receiver").fetchone()
    info = lab_partition.replication(next(n for n in cfg.redis_nodes if n.name == "redis-c"))
    return {"pg_conf_port": lab_partition.port_of(conninfo), "pg_receiver": tuple(receiver) if receiver else None,
            "redis_port": int(info["master_port"]), "redis_link": info["master_link_status"]}


def _direct(cfg: lab.LabConfig) -> dict[str, Any]:
    pg_a = next(n for n in cfg.nodes if n.name == "pg-a").port
    redis_a = next(n for n in cfg.redis_nodes if n.name == "redis-a").port
    return {"pg_conf_port": pg_a, "pg_receiver": ("streaming", pg_a), "redis_port": redis_a, "redis_link": "up"}


def _passed(result: dict[str, Any], mode: str) -> dict[str, Any]:
    details = result["facts"]["summary"]["details"]
    assert details["verdict"] == "passed", (details["verdict_reason"], details["criteria"])
    fault = details["fault"]
    assert fault["target"] == "c" and fault["mode"] == mode and details["recovery_runbook"] is None, fault
    rows = {c["name"]: c["verdict"] for c in details["criteria"]}
    first = "detected_by_readiness" if mode == "cut" else "lag_seen_by_readiness"
    assert rows == {"rto_seconds": "pass", "rpo_seconds": "pass", "sessions_lost": "pass", "error_rate": "pass",
                    "recovery_seconds": "pass", first: "pass", "healed_without_rebuild": "pass"}, details["criteria"]
    measured = details["measured"]
    assert measured["failed_attempts"] == 0 and measured["rto_seconds"] == 0.0  # the serving region: untouched
    assert measured["acknowledged_writes"] > 0 and measured["lost_writes_count"] == 0
    healed = details["partition"]["healed"]
    assert healed["caught_up"] is True and healed["standby_restarted"] is False, healed
    assert healed["sync_full_after"] == healed["sync_full_before"], healed  # no full resync of redis-c
    assert details["restored"] is True and details["steady_state_after"]["holds"]
    return details


def test_a_standby_region_cut_off_or_slowed_is_detected_heals_and_is_put_back_on_direct_links(home) -> None:
    with new_lab(app=True, dns=True) as cfg:
        inventory = inventory_path(cfg)
        pending = drill.pending_path(inventory)
        assert _links(cfg) == _direct(cfg)

        # 1. A cut: readiness during it fails region c's replication checks; healed, both catch up.
        _, result = run_json("run", "dr_drill", "-i", str(inventory), "-e", "kind=partition", "-e",
                             "partition_seconds=1", "--yes", expect_rc=0)
        details = _passed(result, "cut")
        during = {c["name"]: c for c in details["partition"]["during"]}
        assert during["redis_link redis-c"]["verdict"] == "fail" and during["redis_link redis-c"]["measured"] != "up"
        assert "fail" in (during["pg_standbys region c"]["verdict"], during["pg_replay_lag pg-c"]["verdict"]), during
        healed = details["partition"]["healed"]
        assert healed["sync_partial_ok_after"] > healed["sync_partial_ok_before"], healed  # PSYNC after the cut
        assert _links(cfg) == _direct(cfg) and not pending.exists()

        # 2. A cut drill killed with kill -9 once its fault is recorded: pg-c is left configured at the proxy's port,
        # and the proxy died with the drill.
        left = kill_drill_once(inventory, ["kind=partition", "partition_seconds=60"],
                               lambda fault: fault.get("mode") == "cut")
        proxied = left["partition"]
        stale = _links(cfg)
        assert stale["pg_conf_port"] == proxied["pg_proxy_port"] != proxied["primary_port"], (stale, proxied)
        assert stale["redis_port"] == proxied["redis_proxy_port"] and stale["redis_link"] != "up", (stale, proxied)

        # 3. The next drill (latency, not a cut) points both links directly again first, then passes.
        _, result = run_json("run", "dr_drill", "-i", str(inventory), "-e", "kind=partition", "-e", "latency_ms=200",
                             "-e", "partition_seconds=1", "--yes", expect_rc=0)
        first = result["steps"][0]
        assert first["task"] == "restore what an earlier drill left" and not first["failed"], first
        assert set(first["data"]["result"]["links direct"]) >= {"pg-c", "redis-c"}, first
        details = _passed(result, "latency")
        assert details["fault"]["latency_ms"] == 200
        # The drill's own probe: one write's way to pg-c through the delayed proxy. A lower bound by construction
        # (the proxy sends the WAL 200 ms after it read it), not a timing threshold.
        assert details["partition"]["probe_seconds"]["seconds"] >= 0.2, details["partition"]["probe_seconds"]
        during = {c["name"]: c for c in details["partition"]["during"]}
        assert during["pg_standbys region c"]["verdict"] == "pass" and during["redis_link redis-c"]["measured"] == "up"
        assert _links(cfg) == _direct(cfg) and not pending.exists()
