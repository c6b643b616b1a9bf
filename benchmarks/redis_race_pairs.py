"""Benchmark-style witness of the Redis guard (measured and reported, not asserted): N racing pairs of
redis_failover runs.

Each pair: a fresh copy of the lab (redis-a primary, redis-b and redis-c replicating), two controllers with their own
lock folder and ERLMCP_DR_HOME, and two redis_failover runs for different candidates (redis-b, redis-c), while a
sampler sends ROLE to every member every 10 ms. Pairs alternate between planned (the primary up: Redis's coordinated
FAILOVER) and unplanned (redis-a kill -9'd first: REPLICAOF NO ONE), between both runs started at the same moment
("race") and the first frozen while it holds the guard ("frozen"), and between the CLI and plain ansible-playbook for
the second run. For each pair: rounds with two members answering master at once, how many runs promoted, whether
the loser was turned away by the guard.

Prints a table and writes benchmarks/results/<date>-redis-race.json.

    .venv/bin/python benchmarks/redis_race_pairs.py            # 20 pairs
    .venv/bin/python benchmarks/redis_race_pairs.py --pairs 4
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
import race_pairs  # noqa: E402
from fresh_lab import FreshLab  # noqa: E402
from redis_guard_race import prepare, race_pair  # noqa: E402

from erlmcp_dr import lab  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# (kind, frozen, entries), the kind changing fastest so that a few pairs already cover planned and unplanned
SHAPES = [(kind, frozen, entries) for frozen, entries, kind in itertools.product(
    (False, True), (("cli", "cli"), ("cli", "playbook")), ("planned", "unplanned"))]


def run_pairs(count: int, workdir: Path) -> list[dict[str, Any]]:
    fresh = FreshLab(workdir)
    rows = []
    try:
        for index in range(count):
            kind, frozen, entries = SHAPES[index % len(SHAPES)]
            cfg = fresh.reset()
            lab.wait_redis_linked(cfg)
            candidates = prepare(cfg, kind)
            pair = race_pair(cfg, workdir / f"pair-{index}", kind, entries, candidates, frozen=frozen)
            row = dict(pair.to_dict(), pair=index)
            rows.append(row)
            print(_line(row), flush=True)
    finally:
        fresh.close()
    return rows


def _line(row: dict[str, Any]) -> str:
    entries, rcs = "+".join(row["entries"]), ",".join(map(str, row["rcs"]))
    refused = ",".join("y" if r else "n" for r in row["refused_by_guard"])
    return (f"{row['pair']:4d}  {row['kind']:<10}  {row['mode']:<6}  {entries:<12}  rcs={rcs:<6}  "
            f"promotions={row['promotions']}  guard-refused={refused:<4}  "
            f"2-writer rounds={row['two_writer_rounds']}/{row['sampler_rounds']}  "
            f"primary {row['primary_before']}->{','.join(row['primaries_after']) or 'none'}  {row['seconds']:.1f}s")


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(
        pairs=len(rows),
        pairs_with_two_writer_rounds=sum(1 for r in rows if r["two_writer_rounds"]),
        two_writer_rounds=sum(r["two_writer_rounds"] for r in rows),
        rounds=sum(r["sampler_rounds"] for r in rows),
        pairs_with_exactly_one_promotion=sum(1 for r in rows if r["promotions"] == 1),
        pairs_with_two_promotions=sum(1 for r in rows if r["promotions"] > 1),
        pairs_with_no_promotion=sum(1 for r in rows if r["promotions"] == 0),
        pairs_with_one_primary_after=sum(1 for r in rows if len(r["primaries_after"]) == 1),
        losers_refused_by_guard=sum(1 for r in rows if r["promotions"] == 1 and any(
            refused and not promoted for refused, promoted in zip(r["refused_by_guard"], r["promoted"], strict=True))),
        by_shape={f"{kind}/{'frozen' if frozen else 'race'}/{'+'.join(entries)}": sum(
            1 for r in rows if (r["kind"], r["mode"] == "frozen", tuple(r["entries"])) == (kind, frozen, entries))
            for kind, frozen, entries in SHAPES},
    )


def main() -> int:
    return race_pairs.main(__doc__, run_pairs, totals, "redis-race", default_pairs=20,
                           failures=("two_writer_rounds", "pairs_with_two_promotions"))


if __name__ == "__main__":
    sys.exit(main())
