"""Benchmark (measured, not asserted): round trips a -> b -> a, the way back by `failback`, under a client.

For each of `--rounds` round trips on one lab (application and DNS included):
- region a killed (`lab_regions.fail_region`), `regional_failover` a -> b (unplanned), region a restarted;
- `failback` b -> a (grace period `--grace` seconds) while a client commits every 20 ms through a multi-host libpq
  connection (target_session_attrs=read-write) and a sampler asks every database node every 10 ms whether it
  takes writes.
Recorded per round: failback's wall time, the client's longest stretch without a commit during it (the write
gap), acknowledged commits missing on the new primary (must be 0), the most writable nodes seen at one sample
(must be 1), how the old region's database rejoined (pg_rewind or re-clone) and the bytes it copied.

Writes benchmarks/results/<date>-failback.json and prints a table (`--json`: the JSON instead).

    .venv/bin/python benchmarks/failback.py --rounds 20
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from runbook_helpers import inventory_path, new_lab, plain_connect  # noqa: E402

import erlmcp_dr  # noqa: E402
from erlmcp_dr.lab import lifecycle as lab  # noqa: E402
from erlmcp_dr.lab import regions as lab_regions  # noqa: E402
from erlmcp_dr.probe import WriteProbe, WritersSampler, multi_host_conninfo  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLIENT_INTERVAL = 0.02  # the client: one write every 20 ms


def round_trip(cfg: lab.LabConfig, inventory: Path, grace: float) -> dict[str, Any]:
    lab_regions.fail_region(cfg, "a")
    away = erlmcp_dr.run("regional_failover", inventory=inventory, extravars={
        "from_region": "a", "to_region": "b", "mode": "unplanned", "health_interval": 0.2})
    if not away.succeeded:
        return {"ok": False, "failed": "regional_failover", "error": away.error}
    lab_regions.restore_region(cfg, "a")
    endpoints = [("127.0.0.1", node.port) for node in cfg.nodes]
    nodes = {node.name: dict(node.conn_params(), connect_timeout=1) for node in cfg.nodes}
    conninfo = multi_host_conninfo(endpoints, lab.SUPERUSER, lab.LAB_PASSWORD)
    started = time.monotonic()
    with WritersSampler(nodes) as sampler, WriteProbe(conninfo, interval=CLIENT_INTERVAL) as probe:
        back = erlmcp_dr.run("failback", inventory=inventory, extravars={
            "from_region": "b", "to_region": "a", "grace_seconds": grace, "grace_interval": 0.2, "grace_wait": 60})
    wall = time.monotonic() - started
    details = back.summary.get("details") or {}
    with plain_connect(cfg, "pg-a") as conn:
        missing = probe.missing_on(conn)
    return {"ok": back.succeeded, "error": back.error or None, "wall_s": round(wall, 3),
            "runbook_s": back.duration_seconds, "write_gap_s": round(probe.report.max_gap_seconds, 4),
            "committed": len(probe.report.committed), "lost": len(missing),
            "max_writable_nodes": sampler.report.max_writable, "rejoin": details.get("rejoin"),
            "steps": {step["step"]: step["duration"] for step in details.get("steps") or []}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--grace", type=float, default=1.0, help="failback's grace period, seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("ERLMCP_DR_HOME", tempfile.mkdtemp(prefix="failback-bench-"))  # runs, locks, grace history
    rounds = []
    with new_lab(app=True, dns=True) as cfg:
        inventory = inventory_path(cfg)
        for _ in range(args.rounds):
            rounds.append(round_trip(cfg, inventory, args.grace))
            if not rounds[-1]["ok"]:
                break
    done = [r for r in rounds if r["ok"]]
    gaps = [r["write_gap_s"] for r in done]
    result = {
        "date": datetime.date.today().isoformat(), "rounds_asked": args.rounds, "rounds_completed": len(done),
        "client_interval_s": CLIENT_INTERVAL, "grace_s": args.grace,
        "lost_writes_total": sum(r["lost"] for r in done),
        "max_writable_nodes": max((r["max_writable_nodes"] for r in done), default=None),
        "rejoin_methods": sorted({(r["rejoin"] or {}).get("method") for r in done}),
        "write_gap_s_median": statistics.median(gaps) if gaps else None, "write_gap_s_max": max(gaps, default=None),
        "failback_wall_s_median": statistics.median(r["wall_s"] for r in done) if done else None,
        "rounds": rounds,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{result['date']}-failback.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        header = ("round", "ok", "wall s", "gap s", "lost", "writers", "rejoin", "bytes")
        print("{:>5} {:>3} {:>7} {:>6} {:>4} {:>7} {:>8} {:>10}".format(*header))
        for index, r in enumerate(rounds, 1):
            rejoin = r.get("rejoin") or {}
            print(f"{index:>5} {str(r['ok'])[0]:>3} {r.get('wall_s', 0):>7.1f} {r.get('write_gap_s', 0):>6.2f} "
                  f"{r.get('lost', '-'):>4} {r.get('max_writable_nodes', '-'):>7} {rejoin.get('method', '-'):>8} "
                  f"{rejoin.get('copied_bytes', '-'):>10}")
        print(f"written {out}")
    return 0 if len(done) == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
