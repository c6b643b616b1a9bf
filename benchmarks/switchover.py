"""Benchmark (measured, not asserted): the switchover as a writing client sees it.

In one run, on a lab of its own, it measures for several switchovers:
- the write-unavailability window seen by a client committing every 10 ms through a
  multi-host libpq connection (target_session_attrs=read-write),
- the runbook's total wall time (erlmcp_dr.run, all of Ansible included),
and the floor on the same lab: a bare fast stop of the primary + pg_promote() + poll,
with the same client writing. Prints medians and the ratios to the floor.

    make bench            # or: .venv/bin/python benchmarks/switchover.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

import erlmcp_dr
from erlmcp_dr import lab
from erlmcp_dr.paths import ensure_collection_importable
from erlmcp_dr.probe import WriteProbe, multi_host_conninfo

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._wait import wait_for  # noqa: E402


def _conninfo(cfg: lab.LabConfig) -> str:
    return multi_host_conninfo([("127.0.0.1", n.port) for n in cfg.nodes], lab.SUPERUSER, lab.LAB_PASSWORD)


def _primary_and_standby(cfg: lab.LabConfig) -> tuple[str, str]:
    status = lab.status(cfg)
    standbys = sorted(r["name"] for r in status["nodes"] if r["role"] == "standby")
    return status["primary"], standbys[0]


def switchover_once(cfg: lab.LabConfig, inventory: Path) -> dict[str, float]:
    _, candidate = _primary_and_standby(cfg)
    with WriteProbe(_conninfo(cfg)) as probe:
        started = time.monotonic()
        result = erlmcp_dr.run("database_switchover", inventory=str(inventory), extravars={"candidate": candidate})
        wall = time.monotonic() - started
        wait_for(lambda: len(probe.report.committed) > 0 and probe.report.commit_times[-1] > started + wall,
                 timeout=30, what="a commit after the switchover")
    if not result.succeeded:
        raise SystemExit(f"switchover failed: {result.run_dir}")
    with psycopg.connect(_conninfo(cfg)) as conn:
        lost = len(probe.missing_on(conn))
    return {"unavailable_s": probe.report.max_gap_seconds, "wall_s": wall, "lost_commits": lost,
            "client_errors": probe.report.errors}


def bare_promote_once(cfg: lab.LabConfig) -> dict[str, float]:
    """The floor: stop the primary fast, pg_promote() a standby, poll until it takes writes."""
    primary, candidate = _primary_and_standby(cfg)
    node = cfg.node(candidate)
    with WriteProbe(_conninfo(cfg)) as probe:
        started = time.monotonic()
        cfg.node(primary).server().stop(mode="fast")
        with psycopg.connect(**node.conn_params(), autocommit=True) as conn:
            conn.execute("SELECT pg_promote(wait => false)")
            wait_for(lambda: not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0], timeout=60,
                     interval=0.01, what="promotion")
        promote = time.monotonic() - started
        wait_for(lambda: probe.report.commit_times and probe.report.commit_times[-1] > started + promote,
                 timeout=30, what="a commit after the promotion")
    return {"unavailable_s": probe.report.max_gap_seconds, "wall_s": promote}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-"))
    cfg = lab.LabConfig(root=root, port_base=lab.free_port_base())
    inventory = root / "inventory" / "hosts.yml"
    runbook, floor = [], []
    try:
        for _ in range(args.runs):
            lab.reset(cfg)  # reset empties the lab folder, inventory included
            lab.write_inventory(cfg, inventory)
            runbook.append(switchover_once(cfg, inventory))
            lab.reset(cfg)
            floor.append(bare_promote_once(cfg))
    finally:
        lab.down(cfg)
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(_summary(runbook, floor), indent=2))


def _summary(runbook: list[dict[str, float]], floor: list[dict[str, float]]) -> dict[str, object]:
    def median(rows: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    out = {
        "runs": len(runbook),
        "switchover_unavailable_s_median": median(runbook, "unavailable_s"),
        "switchover_wall_s_median": median(runbook, "wall_s"),
        "floor_unavailable_s_median": median(floor, "unavailable_s"),
        "floor_promote_s_median": median(floor, "wall_s"),
        "lost_commits_total": sum(r["lost_commits"] for r in runbook),
        "client_errors_median": median(runbook, "client_errors"),
    }
    floor_gap = out["floor_unavailable_s_median"]
    out["ratio_unavailable_vs_floor"] = round(out["switchover_unavailable_s_median"] / floor_gap, 2)
    out["ratio_wall_vs_floor_promote"] = round(out["switchover_wall_s_median"] / out["floor_promote_s_median"], 2)
    out["goals"] = {"unavailable_under_1s": out["switchover_unavailable_s_median"] < 1.0,
                    "switchover_under_8s": out["switchover_wall_s_median"] < 8.0}
    return out


if __name__ == "__main__":
    main()
