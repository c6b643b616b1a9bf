"""Benchmark-style witness of the cluster guard (measured and reported, not asserted): N racing pairs of runs.

Each pair: a fresh copy of the lab (pg-a primary, pg-b and pg-c streaming), two controllers with their own lock
folder and ERLMCP_DR_HOME, and two runs of the same runbook for different candidates (pg-b, pg-c), while a sampler
asks every node every 10 ms whether it takes writes. Pairs alternate between database_switchover and
database_failover (the primary's postmaster killed first), between both runs started at the same moment ("race")
and the first frozen while it holds the guard ("frozen"), and between the CLI and plain ansible-playbook for the
second run. For each pair: samples with two writable primaries, how many runs promoted, whether the loser was
turned away by the guard, the timelines.

Prints a table and writes benchmarks/results/<date>-race-pairs.json.

    .venv/bin/python benchmarks/race_pairs.py            # 100 pairs
    .venv/bin/python benchmarks/race_pairs.py --pairs 5
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from fresh_lab import FreshLab  # noqa: E402
from guard_race import prepare, race_pair  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# (kind, frozen, entries), the kind changing fastest so that a few pairs already cover both runbooks
SHAPES = [(kind, frozen, entries) for frozen, entries, kind in itertools.product(
    (False, True), (("cli", "cli"), ("cli", "playbook")), ("switchover", "failover"))]


def run_pairs(count: int, workdir: Path, shapes: list = SHAPES, prepare_pair: Any = prepare, race: Any = race_pair,
              line: Any = None, settle: Any = None) -> list[dict[str, Any]]:
    """`count` pairs on fresh labs, the shapes in turn; benchmarks/redis_race_pairs.py passes Redis's shapes,
    preparation, race, table line and settling (the replicas linked)."""
    fresh = FreshLab(workdir)
    rows = []
    try:
        for index in range(count):
            kind, frozen, entries = shapes[index % len(shapes)]
            cfg = fresh.reset()
            if settle is not None:
                settle(cfg)
            candidates = prepare_pair(cfg, kind)
            pair = race(cfg, workdir / f"pair-{index}", kind, entries, candidates, frozen=frozen)
            row = dict(pair.to_dict(), pair=index, mode="frozen" if frozen else "race")
            rows.append(row)
            print((line or _line)(row), flush=True)
    finally:
        fresh.close()
    return rows


def _line(row: dict[str, Any]) -> str:
    entries, rcs = "+".join(row["entries"]), ",".join(map(str, row["rcs"]))
    refused = ",".join("y" if r else "n" for r in row["refused_by_guard"])
    return (f"{row['pair']:4d}  {row['kind']:<10}  {row['mode']:<6}  {entries:<12}  rcs={rcs:<8}  "
            f"promotions={row['promotions']}  guard-refused={refused:<4}  "
            f"2-writer samples={row['two_writer_rounds']}/{row['sampler_rounds']}  "
            f"timeline {row['timeline_before']}->{row['timeline_after']}  {row['seconds']:.1f}s")


def totals(rows: list[dict[str, Any]], shapes: list = SHAPES) -> dict[str, Any]:
    return dict(
        pairs=len(rows),
        pairs_with_two_writer_samples=sum(1 for r in rows if r["two_writer_rounds"]),
        two_writer_samples=sum(r["two_writer_rounds"] for r in rows),
        samples=sum(r["sampler_rounds"] for r in rows),
        pairs_with_exactly_one_promotion=sum(1 for r in rows if r["promotions"] == 1),
        pairs_with_two_promotions=sum(1 for r in rows if r["promotions"] > 1),
        pairs_with_no_promotion=sum(1 for r in rows if r["promotions"] == 0),
        losers_refused_by_guard=sum(1 for r in rows if r["promotions"] == 1 and any(
            refused and not promoted for refused, promoted in zip(r["refused_by_guard"], r["promoted"], strict=True))),
        by_shape={f"{kind}/{'frozen' if frozen else 'race'}/{'+'.join(entries)}": sum(
            1 for r in rows if (r["kind"], r["mode"] == "frozen", tuple(r["entries"])) == (kind, frozen, entries))
            for kind, frozen, entries in shapes},
    )


def main(description: str = __doc__, run: Any = None, summarize: Any = None, result_name: str = "race-pairs",
         default_pairs: int = 100, failures: tuple[str, ...] = ("two_writer_samples", "pairs_with_two_promotions"),
         ) -> int:
    """Parse --pairs/--json, run the pairs in a scratch folder, write benchmarks/results/<date>-<result_name>.json.
    benchmarks/redis_race_pairs.py calls it with its own pairs, totals and name; exit 1 when a `failures` total is
    not 0."""
    run, summarize = run or run_pairs, summarize or totals
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=default_pairs,
                        help=f"how many racing pairs (default {default_pairs})")
    parser.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error(f"--pairs must be 1 or more, got {args.pairs}")
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"erlmcp-{result_name}-"))
    root.chmod(0o755)  # the lab runs as the lab's OS user below it
    try:
        rows = run(args.pairs, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = dict(date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  seconds=round(time.monotonic() - started, 1), totals=summarize(rows), pairs=rows)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{datetime.date.today().isoformat()}-{result_name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps(result["totals"], indent=2))
        print(f"written to {path}")
    return 1 if any(result["totals"][name] for name in failures) else 0


if __name__ == "__main__":
    sys.exit(main())
