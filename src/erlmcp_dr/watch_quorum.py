"""The automatic trigger's decision (issue 22, Part 2), pure: may the observers start `regional_failover` for a region?

Observers have STATIC membership (one per region plus a witness), named in the inventory, never discovered: a
majority is counted over that list, not over the observers one can reach, so a partitioned minority can never
believe it is the majority (the seeds' `nodes()`-based count did exactly that). Each observer samples every region's
health each interval and publishes a verdict in etcd under a lease; a verdict whose lease expired is gone, so a
verdict the decision sees is a live observer's.

The partition bands (how long the region has been failing, by the verdicts' own counts of consecutive failed checks):
- shorter than `carry_on_seconds` (30 s): carry on; a blip, a restart, a short partition;
- `carry_on_seconds` to `fail_over_seconds` (30-60 s): the quorum decides, cautiously: a majority of the static
  membership must say "failed for N consecutive checks" AND no live observer outside the region may say "healthy"
  (observers that disagree point at a partition between observers, not at a dead region);
- longer than `fail_over_seconds` (60 s): fail over once a majority of the static membership says so, even against
  a dissenting observer.
A majority is always needed: with fewer verdicts than a majority (this observer is cut off from etcd or from the
others) the answer is WAIT, whatever the band. Starting the failover also needs the run lock (etcd), which only one
trigger can win; this function only says whether trying is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

CARRY_ON = "carry_on"  # the region is healthy, or failing for too short a time
WAIT = "wait"  # failing, but the quorum does not (yet) agree
FAIL_OVER = "fail_over"  # a majority agrees: try to win the run lock and start regional_failover


@dataclass(frozen=True)
class Membership:
    """The observers, fixed by the inventory: `observers` name every one, `regions` maps each observer to the
    region it runs in (the witness runs in none: None)."""

    observers: tuple[str, ...]
    regions: tuple[Optional[str], ...]

    def __post_init__(self) -> None:
        if len(self.observers) != len(self.regions) or len(set(self.observers)) != len(self.observers):
            raise ValueError("observers must be distinct and each have a region (None for the witness): found "
                             f"{list(self.observers)} with regions {list(self.regions)}")
        if len(self.observers) < 3:
            raise ValueError(f"a quorum needs at least 3 observers (one per region plus a witness): found "
                             f"{len(self.observers)} ({', '.join(self.observers)})")

    @property
    def majority(self) -> int:
        return len(self.observers) // 2 + 1

    def region_of(self, observer: str) -> Optional[str]:
        return self.regions[self.observers.index(observer)]


@dataclass(frozen=True)
class Verdict:
    """What one observer published about one region: failed or not, and for how many consecutive checks."""

    observer: str
    region: str
    failed: bool
    consecutive: int  # consecutive checks with this same answer
    interval_seconds: float

    @property
    def failing_seconds(self) -> float:
        return self.consecutive * self.interval_seconds if self.failed else 0.0


@dataclass(frozen=True)
class Bands:
    carry_on_seconds: float = 30.0
    fail_over_seconds: float = 60.0
    consecutive_checks: int = 3  # N: a verdict counts as "failed" only after N failed checks in a row

    def __post_init__(self) -> None:
        if not 0 < self.carry_on_seconds <= self.fail_over_seconds:
            raise ValueError(f"the bands must satisfy 0 < carry_on_seconds <= fail_over_seconds: found "
                             f"{self.carry_on_seconds} and {self.fail_over_seconds}")
        if self.consecutive_checks < 1:
            raise ValueError(f"consecutive_checks is {self.consecutive_checks}: expected at least 1")


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    failed_votes: tuple[str, ...] = ()
    dissent: tuple[str, ...] = ()


def decide(membership: Membership, region: str, verdicts: Iterable[Verdict], bands: Bands = Bands()) -> Decision:
    """Whether the observers may start a failover away from `region`, from the live verdicts about it (those of
    observers outside the membership are ignored: membership is static)."""
    live = _latest(v for v in verdicts if v.region == region and v.observer in membership.observers)
    failed = tuple(sorted(v.observer for v in live if v.failed and v.consecutive >= bands.consecutive_checks))
    healthy_elsewhere = tuple(sorted(v.observer for v in live if not v.failed
                                     and membership.region_of(v.observer) != region))
    if not any(v.failed for v in live):
        return Decision(CARRY_ON, f"no live observer sees region {region} failing")
    if len(live) < membership.majority:
        return Decision(WAIT, f"only {len(live)} of {len(membership.observers)} observers have a live verdict about "
                        f"region {region}: a majority ({membership.majority}) is needed to decide anything (this "
                        "side may be the partitioned minority)", failed, healthy_elsewhere)
    if len(failed) < membership.majority:
        return Decision(WAIT, f"{len(failed)} of {len(membership.observers)} observers say region {region} failed "
                        f"{bands.consecutive_checks} consecutive checks; {membership.majority} are needed",
                        failed, healthy_elsewhere)
    # The band: how long the majority has seen it fail (the shortest of the majority's longest runs).
    failing = sorted((v.failing_seconds for v in live if v.observer in failed), reverse=True)
    seconds = failing[membership.majority - 1]
    if seconds < bands.carry_on_seconds:
        return Decision(CARRY_ON, f"region {region} has failed for {seconds:g} s by a majority's count, under "
                        f"{bands.carry_on_seconds:g} s: carry on", failed, healthy_elsewhere)
    if seconds <= bands.fail_over_seconds and healthy_elsewhere:
        return Decision(WAIT, f"region {region} has failed for {seconds:g} s by a majority's count, but "
                        f"{', '.join(healthy_elsewhere)} (outside it) still see it healthy: a partition between "
                        "observers, not yet a failover (after "
                        f"{bands.fail_over_seconds:g} s the majority decides alone)", failed, healthy_elsewhere)
    return Decision(FAIL_OVER, f"{len(failed)} of {len(membership.observers)} observers ({', '.join(failed)}) say "
                    f"region {region} failed for {seconds:g} s: fail over (if this trigger wins the run lock)",
                    failed, healthy_elsewhere)


def _latest(verdicts: Iterable[Verdict]) -> Sequence[Verdict]:
    """One verdict per observer (the last one given)."""
    by_observer = {}
    for verdict in verdicts:
        by_observer[verdict.observer] = verdict
    return list(by_observer.values())
