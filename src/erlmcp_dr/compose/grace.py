"""failback's grace gate, the decision: has the old region been healthy, without a break, for the grace period? Pure.

A region counts as healthy for `healthy_for` seconds when its trailing run of health samples is all healthy and no
two neighbouring samples of that run are further apart than `max_gap` (a longer silence is not evidence of health:
nobody looked). Only observed health counts: the span runs from the first healthy sample of that run to the latest
sample, never to "now". Any failed sample restarts the timer at the next healthy one; so does a latest sample older
than `max_gap` (the history was left unread too long to vouch for the present).

The samples come from the runs' own probes (compose/failback.py), kept between runs in a small history file, so a
refused run's samples count for the next one (docs/design.md, "failback: the grace gate").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Optional

MAX_SAMPLES = 20000  # an hour at the seeds' 5 s interval is 720; a bound so a history file never grows for ever


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the epoch
    ok: bool
    why: str = ""  # what failed, for an unhealthy sample

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GraceVerdict:
    open: bool
    grace_seconds: float
    healthy_since: Optional[float]
    healthy_for: float
    remaining: float
    reason: str
    last_failure: Optional[Sample] = None

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["healthy_for"] = round(self.healthy_for, 3)
        data["remaining"] = round(self.remaining, 3)
        return data


def decide(samples: Iterable[Sample], now: float, grace_seconds: float, max_gap: float) -> GraceVerdict:
    """The gate's verdict on `samples` (any order) at time `now`."""
    ordered = sorted(samples, key=lambda sample: sample.at)
    last_failure = next((sample for sample in reversed(ordered) if not sample.ok), None)

    def closed(reason: str, since: Optional[float] = None, healthy_for: float = 0.0) -> GraceVerdict:
        return GraceVerdict(open=False, grace_seconds=grace_seconds, healthy_since=since, healthy_for=healthy_for,
                            remaining=max(0.0, grace_seconds - healthy_for), reason=reason, last_failure=last_failure)

    if not ordered:
        return closed("no health sample of the region yet")
    last = ordered[-1]
    if not last.ok:
        return closed(f"the latest health sample failed ({last.why or 'unhealthy'}): the timer restarts at the next "
                      "healthy sample")
    if now - last.at > max_gap:
        return closed(f"the latest health sample is {now - last.at:.0f} s old, more than {max_gap:g} s "
                      "(grace_max_gap): nothing vouches for the region since, the timer restarts")
    start = streak_start(ordered, max_gap)
    healthy_for = last.at - start.at
    if healthy_for >= grace_seconds:
        return GraceVerdict(open=True, grace_seconds=grace_seconds, healthy_since=start.at, healthy_for=healthy_for,
                            remaining=0.0, reason=f"healthy without a break for {healthy_for:.1f} s (grace period "
                                                  f"{grace_seconds:g} s)", last_failure=last_failure)
    return closed(f"healthy without a break for {healthy_for:.1f} s of the {grace_seconds:g} s grace period "
                  f"(grace_seconds): {grace_seconds - healthy_for:.1f} s left", since=start.at, healthy_for=healthy_for)


def streak_start(ordered: List[Sample], max_gap: float) -> Sample:
    """The first sample of the trailing run of healthy samples with no gap wider than max_gap (ordered by time, the
    last one healthy)."""
    start = ordered[-1]
    for earlier in reversed(ordered[:-1]):
        if not earlier.ok or start.at - earlier.at > max_gap:
            break
        start = earlier
    return start


def kept(samples: Iterable[Sample], grace_seconds: float, max_gap: float) -> List[Sample]:
    """The samples a history file keeps: those that can still matter (the trailing healthy run back to one grace
    period and one gap before the latest, and the latest failure inside that window), at most MAX_SAMPLES."""
    ordered = sorted(samples, key=lambda sample: sample.at)
    if not ordered:
        return []
    horizon = ordered[-1].at - grace_seconds - max_gap
    window = [sample for sample in ordered if sample.at >= horizon]
    return window[-MAX_SAMPLES:]


def samples_from(data: Any) -> List[Sample]:
    """Samples read back from a history file's JSON; anything malformed is dropped (it proves no health)."""
    found: List[Sample] = []
    for item in data if isinstance(data, list) else []:
        if (isinstance(item, dict) and isinstance(item.get("at"), (int, float)) and not isinstance(item.get("at"), bool)
                and isinstance(item.get("ok"), bool)):
            found.append(Sample(at=float(item["at"]), ok=item["ok"], why=str(item.get("why") or "")))
    return found
