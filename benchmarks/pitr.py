"""Point-in-time restore, measured (reported, not asserted): exactness over many random targets, restore wall beside a
hand-run pgBackRest restore + recovery of the same target in the same run, and archive lag under a write load.

On a copy of the lab (its own pgBackRest repository): optionally pgbench data (--scale), a full backup through
pg_backup's engine, then a writer that logs every acknowledged insert with its commit time for --seconds while a
sampler reads pg_stat_archiver every 0.5 s (archive lag: the age of the last archived segment, and the segments
waiting to be archived). Then, for --targets random target times: pg_restore's engine into a scratch instance
(removed after), the rows compared with the writer's log (a mismatch is a row committed at or before the target
that is missing, or one committed after it that is there); for the first --paired targets also the hand-run
sequence an operator would type (pgbackrest restore --type=time --target-action=pause, a port of its own, pg_ctl
start, wait for replay to pause), timed the same way. A pair runs in alternating order (even targets the runbook's
engine first, odd ones the hand-run first), so neither side always gets the page cache the other warmed; each side
is split into phases (every pgBackRest command by name, pg_ctl start, the wait for the target, the rest) and the
machine's load average is recorded with each pair (a shared machine: the ratio is what counts).

    .venv/bin/python benchmarks/pitr.py                      # 20 targets, 3 paired, no pgbench data
    .venv/bin/python benchmarks/pitr.py --targets 100 --scale 70 --seconds 60   # ~1 GB, the issue's numbers
    .venv/bin/python benchmarks/pitr.py --targets 6 --paired 6 --scale 70 --name pitr-1gb   # the 1 GB ratio

Prints each target and writes benchmarks/results/<date>-<name>.json (name: pitr unless --name).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from pitr_helpers import (  # noqa: E402
    PRIMARY,
    Writes,
    archive_now,
    mismatches,
    restore,
    restored_ids,
    scratch_dir,
    take_backup,
    write_rows,
)
from runbook_helpers import DEADLINE, connect, new_lab  # noqa: E402

from erlmcp_dr.lab import lifecycle as lab  # noqa: E402
from erlmcp_dr.lab import pgbackrest as lab_pgbackrest  # noqa: E402
from erlmcp_dr.paths import ensure_collection_importable  # noqa: E402

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import restore as _pitr_restore  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.pgbackrest import PgBackRest  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.restore import free_port  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import Server  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class Phases:
    """Seconds per phase of one timed restore: each pgBackRest command (by its name: info, repo-ls, repo-get,
    restore), pg_ctl start, the wait for the target; `other` is the rest of the wall (the engine's own work)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)

    def timed(self, name: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        try:
            return call(*args, **kwargs)
        finally:
            self.add(name, time.monotonic() - began)

    def with_rest(self, wall: float) -> dict[str, float]:
        return {**self.seconds, "other": round(wall - sum(self.seconds.values()), 3)}


CURRENT = Phases()


def _profile_engine() -> None:
    """Time the engine's phases from outside it: the driver's commands, the server's start and the waiter."""
    original_run, original_start, original_wait = PgBackRest.run, Server.start, _pitr_restore.wait_for

    def run(self: PgBackRest, args: Any, *rest: Any, **kwargs: Any) -> Any:
        return CURRENT.timed(kwargs.get("what") or list(args)[-1], original_run, self, args, *rest, **kwargs)

    def start(self: Server, *rest: Any, **kwargs: Any) -> Any:
        return CURRENT.timed("pg_ctl start", original_start, self, *rest, **kwargs)

    def wait(*rest: Any, **kwargs: Any) -> Any:
        return CURRENT.timed("wait for the target", original_wait, *rest, **kwargs)

    PgBackRest.run, Server.start, _pitr_restore.wait_for = run, start, wait  # type: ignore[method-assign]


def load_pgbench(cfg: lab.LabConfig, scale: int) -> None:
    node = cfg.node(PRIMARY)
    env = dict(os.environ, PGPASSWORD=lab.LAB_PASSWORD)
    subprocess.run([str(Path(node.server().bin_dir) / "pgbench"), "-i", "-q", "-s", str(scale), "-h", "127.0.0.1",
                    "-p", str(node.port), "-U", lab.SUPERUSER, "postgres"], check=True, env=env, capture_output=True)


class ArchiveSampler(threading.Thread):
    """pg_stat_archiver every 0.5 s: seconds since the last segment was archived, and segments waiting (.ready)."""

    def __init__(self, cfg: lab.LabConfig) -> None:
        super().__init__(daemon=True)
        self.cfg, self.samples, self.stop = cfg, [], threading.Event()

    def run(self) -> None:
        with connect(self.cfg, PRIMARY) as conn:
            while not self.stop.wait(0.5):
                row = conn.execute(
                    "SELECT extract(epoch FROM now() - last_archived_time)::float AS age, failed_count, "
                    "(SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') AS ready "
                    "FROM pg_stat_archiver").fetchone()
                self.samples.append(dict(row))


def write_for(cfg: lab.LabConfig, seconds: float) -> Writes:
    writes, next_id, deadline = Writes(), 1, time.monotonic() + seconds
    while time.monotonic() < deadline:
        write_rows(cfg, 50, next_id, writes)
        next_id += 50
    return writes


def hand_restore(cfg: lab.LabConfig, label: str, target: str, name: str) -> float:
    """What an operator types, timed: pgbackrest restore to the target with pause, a port of its own, start, wait
    until replay paused; then stop and remove (not timed)."""
    folder = scratch_dir(cfg, name)
    os.mkdir(folder, 0o700)
    owner = os.stat(cfg.node(PRIMARY).data_dir)
    os.chown(folder, owner.st_uid, owner.st_gid)
    began = time.monotonic()
    CURRENT.timed("restore", lab_pgbackrest.run, cfg, f"--pg1-path={folder}", f"--set={label}", "--type=time",
                  f"--target={target}", "--target-action=pause", "restore")
    port = free_port()
    server = Server(str(folder), log_file=str(folder) + ".log")
    server.set_auto_conf({"port": str(port), "archive_mode": "off", "listen_addresses": "127.0.0.1",
                          "unix_socket_directories": ""})
    server.start(timeout=DEADLINE)  # timed as "pg_ctl start" (_profile_engine wraps Server.start)
    params = dict(cfg.node(PRIMARY).conn_params(), port=port)

    def paused() -> bool:
        import psycopg

        with psycopg.connect(**params) as conn:
            return conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] == "paused"

    CURRENT.timed("wait for the target", wait_for, paused, DEADLINE, interval=0.2,
                  what="the hand-run restore to pause at the target")
    wall = time.monotonic() - began
    server.stop(mode="immediate", timeout=DEADLINE)
    shutil.rmtree(folder)
    return wall


def _engine_side(cfg: lab.LabConfig, target: datetime.datetime, index: int) -> tuple[dict[str, Any], float, Any]:
    global CURRENT
    CURRENT = Phases()
    began = time.monotonic()
    # Left running, as the hand-run one is when its clock stops; both are stopped and removed untimed.
    outcome = restore(cfg, f"bench-{index}", target_type="time", target=target.isoformat(), after="running")
    wall = time.monotonic() - began
    phases = CURRENT.with_rest(wall)
    _pitr_restore.clean(str(scratch_dir(cfg, f"bench-{index}")), {"start_timeout": DEADLINE})
    return outcome, wall, phases


def _hand_side(cfg: lab.LabConfig, label: str, target: str, index: int) -> dict[str, Any]:
    global CURRENT
    CURRENT = Phases()
    wall = hand_restore(cfg, label, target, f"hand-{index}")
    return {"hand_wall": round(wall, 3), "hand_phases": CURRENT.with_rest(wall)}


def _phase_medians(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    names = sorted({name for row in rows if key in row for name in row[key]})
    return {name: round(statistics.median(row[key].get(name, 0.0) for row in rows if key in row), 3)
            for name in names}


def summarize(args: argparse.Namespace, backup: dict[str, Any], backup_wall: float, writes: Writes,
              sampler: ArchiveSampler, rows: list[dict[str, Any]], finished: bool) -> dict[str, Any]:
    """The result file's content; written after every target too (finished false), so a run cut short still leaves
    what it measured."""
    ages = [s["age"] for s in sampler.samples if s["age"] is not None]
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    result = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "pgbackrest": subprocess.run(["pgbackrest", "version"], capture_output=True, text=True).stdout.strip(),
        "scale": args.scale, "backup": {k: backup.get(k) for k in ("label", "size", "repository_size",
                                                                  "duration_seconds", "verified")},
        "backup_wall": round(backup_wall, 3), "commits": len(writes.committed), "writer_seconds": args.seconds,
        "targets": len(rows), "targets_asked": args.targets, "finished": finished,
        "mismatched_targets": sum(1 for r in rows if r["missing"] or r["extra"]),
        "restore_wall": {"median": statistics.median(r["restore_wall"] for r in rows),
                         "max": max(r["restore_wall"] for r in rows)},
        "paired_ratio": {"median": statistics.median(ratios), "max": max(ratios)} if ratios else None,
        "phases_median": {"restore": _phase_medians(rows, "restore_phases"),
                          "hand": _phase_medians([r for r in rows if "hand_phases" in r], "hand_phases")},
        "load_average": {"min": min(r["load_before"] for r in rows), "max": max(r["load_after"] for r in rows)},
        "archive_lag_seconds": {"median": statistics.median(ages), "max": max(ages)} if ages else None,
        "archive_ready_max": max((s["ready"] for s in sampler.samples), default=None),
        # pg_stat_archiver counts since the lab was built: the failures while the template was built (archive-push
        # refused until its stanza existed) are in the first sample; only the ones during the load count here.
        "archive_failures_during_load": (sampler.samples[-1]["failed_count"] - sampler.samples[0]["failed_count"])
        if sampler.samples else None,
        "archive_failures_before_load": sampler.samples[0]["failed_count"] if sampler.samples else None,
        "rows": rows,
        "note": "a shared 2-core machine with other jobs running; walls are for ratios, not absolute claims",
    }
    return result


def write_result(result: dict[str, Any], name: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{result['date']}-{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--paired", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the writer writes")
    parser.add_argument("--scale", type=int, default=0, help="pgbench scale loaded before the backup (70 ~ 1 GB)")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--name", default="pitr", help="results file: benchmarks/results/<date>-<name>.json")
    args = parser.parse_args()
    _profile_engine()
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    with new_lab() as cfg:
        if args.scale:
            load_pgbench(cfg, args.scale)
        began = time.monotonic()
        backup = take_backup(cfg)
        backup_wall = time.monotonic() - began
        print(f"backup {backup['label']}: {backup['size']} bytes in {backup_wall:.1f} s, verified {backup['verified']}")
        sampler = ArchiveSampler(cfg)
        sampler.start()
        writes = write_for(cfg, args.seconds)
        sampler.stop.set()
        sampler.join()
        archive_now(cfg)
        print(f"{len(writes.committed)} commits logged; archive samples {len(sampler.samples)}")
        for index, target in enumerate(writes.random_targets(args.targets, rng)):
            row: dict[str, Any] = dict(target=target.isoformat(), load_before=round(os.getloadavg()[0], 2))
            paired = index < args.paired
            if paired and index % 2:  # alternate which side runs first
                row["hand_first"] = True
                row.update(_hand_side(cfg, backup["label"], target.isoformat(), index))
            outcome, wall, phases = _engine_side(cfg, target, index)
            found = mismatches(writes, target, restored_ids(outcome))
            row.update(restore_wall=round(wall, 3), restore_phases=phases, missing=len(found["missing"]),
                       extra=len(found["extra"]), last_xact_time=outcome["proof"]["last_xact_time"])
            if paired and not index % 2:
                row.update(_hand_side(cfg, backup["label"], target.isoformat(), index))
            if paired:
                row["ratio"] = round(row["restore_wall"] / row["hand_wall"], 3)
            row["load_after"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_result(summarize(args, backup, backup_wall, writes, sampler, rows, finished=False), args.name)
    result = summarize(args, backup, backup_wall, writes, sampler, rows, finished=True)
    path = write_result(result, args.name)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    print(f"wrote {path}")
    return 0 if result["mismatched_targets"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
