"""A composed run's recovery, as its report shows it: the time against the tier's RTO, the data lost against the
RPO, where the point of no return was, and what was undone. Pure: it reads the engine's step records (each child's
summary envelope, never a runbook's internals) and the runbook's targets.

- Recovery time: from the first step's start to the end of the step after which clients are served from the target
  region (`dns`: the public name answers the target; `app` when a workflow has no DNS step). None when the run did
  not complete: no recovery was reached.
- Data lost, per system, as the child measured it: the database's bytes it could not replay (database_failover's
  `lost_bytes_max`; a switchover promotes only once the final LSN is replayed: 0), Redis's offset difference
  (0 after a coordinated FAILOVER, which waits until the target has every byte; the candidate's lag behind the best
  replica when the primary did not answer), and the acknowledged client writes missing when a client probe measured
  them (the caller passes the count; None otherwise: the run alone cannot know what clients were told).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Optional, Sequence

SERVING_STEPS = ("dns", "app")  # the first of these a workflow has ends the recovery as a client sees it


def measure(records: Sequence[Any], rto_seconds: Optional[float], rpo_seconds: Optional[float],
            max_lag_bytes: Optional[int], undone: Sequence[str], point_of_no_return: Optional[str],
            completed: bool, client_writes_missing: Optional[int] = None) -> Dict[str, Any]:
    """`records`: the engine's StepRecords (step, phase, verified, started_at, ended_at, summary)."""
    forward = [record for record in records if record.phase == "forward"]
    seconds = _recovery_seconds(forward) if completed else None
    database, redis = _database_lost(forward), _redis_lost(forward)
    known = [value for value in (database, redis) if value is not None]
    lost_bytes = sum(known) if known else None
    return {
        "recovery_seconds": seconds,
        "rto_target_seconds": rto_seconds,
        "rto_met": None if seconds is None or rto_seconds is None else seconds <= rto_seconds,
        "rpo_target_seconds": rpo_seconds,
        "lost": {"database_bytes": database, "redis_bytes": redis, "client_writes": client_writes_missing},
        "lost_bytes": lost_bytes,
        # The RPO is in seconds; what a promotion may give up is budgeted in bytes (max_lag_bytes): both are shown.
        "within_lag_budget": None if lost_bytes is None or max_lag_bytes is None else lost_bytes <= max_lag_bytes,
        "point_of_no_return": _point_of_no_return(forward, point_of_no_return),
        "undone": list(undone),
    }


def _recovery_seconds(forward: List[Any]) -> Optional[float]:
    if not forward:
        return None
    ids = [record.step for record in forward]
    serving = next((step for step in SERVING_STEPS if step in ids), None)
    end = next((record for record in reversed(forward) if record.step == serving), forward[-1])
    return round((_time(end.ended_at) - _time(forward[0].started_at)).total_seconds(), 3)


def _database_lost(forward: List[Any]) -> Optional[int]:
    record = _last(forward, "database")
    if record is None:
        return None
    point = record.summary.get("recovery_point") or {}
    if point.get("lost_bytes") is not None:
        return int(point["lost_bytes"])
    details = record.summary.get("details") or {}
    return int(details["lost_bytes_max"]) if details.get("lost_bytes_max") is not None else None


def _redis_lost(forward: List[Any]) -> Optional[int]:
    record = _last(forward, "redis")
    if record is None:
        return None
    details = record.summary.get("details") or {}
    if not details.get("promoted"):
        return 0 if record.verified else None  # this run moved nothing: the target was already the primary
    if details.get("old_primary_fence") == "failover":
        return 0
    lag = details.get("lag_bytes_at_gate")
    return int(lag) if lag is not None else None


def _point_of_no_return(forward: List[Any], step: Optional[str]) -> Dict[str, Any]:
    record = _last(forward, step) if step else None
    passed = record is not None and (record.verified or bool(record.passed_point_of_no_return))
    return {"step": step, "passed": passed, "at": record.ended_at if passed and record is not None else None}


def _last(forward: List[Any], step: Optional[str]) -> Any:
    return next((record for record in reversed(forward) if record.step == step), None)


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
