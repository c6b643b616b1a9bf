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
from redis_guard_race import prepare, race_pair  # noqa: E402

from erlmcp_dr.lab import lifecycle as lab  # noqa: E402

# (kind, frozen, entries), the kind changing fastest so that a few pairs already cover planned and unplanned
SHAPES = [(kind, frozen, entries) for frozen, entries, kind in itertools.product(
    (False, True), (("cli", "cli"), ("cli", "playbook")), ("planned", "unplanned"))]


def run_pairs(count: int, workdir: Path) -> list[dict[str, Any]]:
    return race_pairs.run_pairs(count, workdir, SHAPES, prepare, race_pair, _line, settle=lab.wait_redis_linked)


def _line(row: dict[str, Any]) -> str:
    entries, rcs = "+".join(row["entries"]), ",".join(map(str, row["rcs"]))
    refused = ",".join("y" if r else "n" for r in row["refused_by_guard"])
    return (f"{row['pair']:4d}  {row['kind']:<10}  {row['mode']:<6}  {entries:<12}  rcs={rcs:<6}  "
            f"promotions={row['promotions']}  guard-refused={refused:<4}  "
            f"2-writer rounds={row['two_writer_rounds']}/{row['sampler_rounds']}  "
            f"primary {row['primary_before']}->{','.join(row['primaries_after']) or 'none'}  {row['seconds']:.1f}s")


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """race_pairs' totals (its samples are this sampler's ROLE rounds) and how many pairs left one primary."""
    return dict(race_pairs.totals(rows, SHAPES),
                pairs_with_one_primary_after=sum(1 for r in rows if len(r["primaries_after"]) == 1))


def main() -> int:
    return race_pairs.main(__doc__, run_pairs, totals, "redis-race", default_pairs=20)


if __name__ == "__main__":
    sys.exit(main())
