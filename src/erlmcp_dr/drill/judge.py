"""The drill's decisions, pure (docs/drill.md): what the client saw turned into RTO, RPO, errors and sessions lost;
each seed criterion judged against its target; the steady-state hypothesis judged on a readiness summary; the
drill's verdict. No I/O here: tests/unit/test_drill_judge.py feeds them made-up client logs and summaries.

Times are seconds on one monotonic clock (the drill process's: the client thread and the fault injection share
it); the client's resolution is its interval (20 ms by default), so every duration is given with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

KINDS = ("database_primary", "redis_primary", "app_instance", "region", "dns_server", "redis_backup", "partition")
PASSED, FAILED, RESTORE_FAILED, DEVIATED = "passed", "failed", "restore_failed", "deviated"

# The readiness checks that describe the steady state a fault disturbs (redundancy, replication, reachability,
# DNS). The others (backup ages, certificates, capacity, contacts, residency, the drills themselves) are about
# preparedness: an old backup must not stop a drill, and a failed last drill must not forbid the next one.
STEADY_STATE_CHECKS = ("pg_replay_lag", "pg_standbys", "redis_link", "redis_offset", "dns_ttl", "dns_agree",
                       "reachable", "lock_store")

# The seed criteria (SEEDS-CHECKLIST.md §7). Targets are inventory data: `dr_drill.targets.<criterion>` (a number,
# or for rto_seconds a mapping of kind to seconds) overrides these, key by key.
# dns_server: one authoritative server of two lost is a single node lost (S1:213-236, single node < 5 s); the
# seeds' DNS < 1 min (S3:1813) is for switching DNS providers, not a server.
# redis_backup: a corrupt backup is no outage, so the client must see none. 1 s, not 0 (the criterion is "<"): above
# the client's resolution (a 20 ms interval, ~100 ms a request on a loaded lab), below any real outage, so one slow
# request does not fail it and a stalled Redis (the recovery's BGSAVE forks it) does. The seeds set no number for it.
# partition: a standby region cut off (or slowed) serves nothing the client uses, so the client must see no outage
# either: 1 s, for the same reasons.
RTO_BY_KIND = {"database_primary": 10.0, "redis_primary": 10.0, "app_instance": 5.0, "region": 30.0,
               "dns_server": 5.0, "redis_backup": 1.0, "partition": 1.0}
DEFAULT_TARGETS: Dict[str, Any] = {
    "rto_seconds": dict(RTO_BY_KIND),
    "rpo_seconds": 1.0,
    "sessions_lost": 0,
    "error_rate": 0.001,
    "recovery_seconds": 300.0,
}
SOURCES = {
    "rto_seconds": "seeds S1:213-236 (failover < 10 s, single node < 5 s, region < 30 s; S3:1470 says 15 min: "
                   "the scenario criteria picked; a DNS server is a single node; a corrupt Redis backup or a standby "
                   "region partitioned: no outage, < 1 s, docs/drill.md)",
    "rpo_seconds": "MISSION tier 1 RPO < 1 s (the seeds say < 5 s: S1:213-236, S3:1470-1494; MISSION wins)",
    "sessions_lost": "seeds S1:215, S3:1484 (zero sessions lost)",
    "error_rate": "seed S1:235 (error rate < 0.1 %), outside the recovery window",
    "recovery_seconds": "seed S1:236 (recovery < 5 min)",
}


@dataclass
class Attempt:
    """One request of the client: started/ended on the drill's clock, ok, and for a write the acknowledged id."""

    op: str  # "write" or "read"
    started: float
    ended: float
    ok: bool
    row_id: Optional[int] = None
    session_key: Optional[str] = None
    error: Optional[str] = None
    # The row's own identity (a uuid the application wrote in it): a standby promoted after its primary died hands
    # out again the ids of rows that were lost, so an id alone can name a later row.
    session_id: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Outage:
    """What the client saw around the fault."""

    first_failure: Optional[float]  # first failed attempt at or after the fault
    last_failure: Optional[float]  # last failed attempt before the service came back
    first_success: Optional[float]  # first success after the last failure (None: never came back)
    rto_seconds: Optional[float]  # fault -> first success after the last failure
    client_outage_seconds: Optional[float]  # first failure -> first success after it
    resolution_seconds: float
    failed_attempts: int


def outage(attempts: Sequence[Attempt], fault_at: float, resolution: float) -> Outage:
    """RTO as a client sees it: from the fault to the first success after the last failure (a failure after a
    success that follows the fault still belongs to the outage: the service flapped). No failure at all after the
    fault: RTO 0 (the client never noticed)."""
    after = sorted((a for a in attempts if a.ended >= fault_at), key=lambda a: a.ended)
    failures = [a for a in after if not a.ok]
    if not failures:
        return Outage(None, None, None, 0.0, 0.0, resolution, 0)
    last_failure = failures[-1].ended
    back = next((a.ended for a in after if a.ok and a.ended > last_failure), None)
    # The service came back somewhere between the last failure and the first success: that gap is the RTO's real
    # resolution (the interval only when requests are faster than it; a loaded app answers slower).
    return Outage(
        first_failure=failures[0].ended, last_failure=last_failure, first_success=back,
        rto_seconds=None if back is None else round(back - fault_at, 3),
        client_outage_seconds=None if back is None else round(back - failures[0].ended, 3),
        resolution_seconds=resolution if back is None else round(max(resolution, back - last_failure), 3),
        failed_attempts=len(failures))


@dataclass
class DataLoss:
    acknowledged: int
    lost_ids: List[int]
    sessions_lost: int
    rpo_seconds: float  # the time the lost acknowledged writes cover, at the client's resolution (0: none lost)
    lost_span_seconds: float  # the earliest to the latest lost write


def data_loss(attempts: Sequence[Attempt], present_ids: Sequence[int], present_sessions: Sequence[str],
              resolution: float) -> DataLoss:
    """RPO from acknowledged writes missing afterwards: `present_ids` are the acknowledged row ids the database
    still has, `present_sessions` the session keys Redis still has (both read after the recovery). The RPO is the
    window they cover, earliest to latest, plus one interval: one lost write is never "0 s" of data. (Replication
    is ordered, so the latest lost write is the last one acknowledged before the fault took effect.)"""
    acked = [a for a in attempts if a.op == "write" and a.ok and a.row_id is not None]
    ids, keys = set(present_ids), set(present_sessions)
    lost = [a for a in acked if a.row_id not in ids]
    sessions_lost = sum(1 for a in acked if a.session_key and a.session_key not in keys)
    if not lost:
        return DataLoss(len(acked), [], sessions_lost, 0.0, 0.0)
    times = [a.ended for a in lost]
    span = max(times) - min(times)
    return DataLoss(len(acked), sorted(int(a.row_id or 0) for a in lost), sessions_lost, round(span + resolution, 3),
                    round(span, 3))


def steady_error_rate(attempts: Sequence[Attempt], fault_at: float, back_at: Optional[float]) -> Dict[str, Any]:
    """Errors outside the recovery window (before the fault, after the service came back): a failover's own
    outage is measured by the RTO, not counted twice as errors."""
    outside = [a for a in attempts if a.ended < fault_at or (back_at is not None and a.ended > back_at)]
    errors = sum(1 for a in outside if not a.ok)
    return {"attempts": len(outside), "errors": errors,
            "rate": round(errors / len(outside), 6) if outside else None,
            "errors_total": sum(1 for a in attempts if not a.ok), "attempts_total": len(attempts)}


def targets_for(kind: str, configured: Optional[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Each criterion's {target, source} for this kind: the inventory's dr_drill.targets over the seeds'.
    Raises ValueError naming the key, what was found and what is expected."""
    configured = dict(configured or {})
    unknown = sorted(set(configured) - set(DEFAULT_TARGETS))
    if unknown:
        raise ValueError(f"dr_drill.targets.{unknown[0]}: unknown criterion; expected one of "
                         f"{', '.join(DEFAULT_TARGETS)}")
    out: Dict[str, Dict[str, Any]] = {}
    for name, default in DEFAULT_TARGETS.items():
        value, source = configured.get(name, default), SOURCES[name]
        if name in configured:
            source = "inventory dr_drill.targets." + name
        if isinstance(value, Mapping):  # per kind (rto_seconds); a kind the mapping leaves out keeps the seed's
            if kind not in value and isinstance(default, Mapping):
                value, source = default, SOURCES[name]
            value = value.get(kind)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"dr_drill.targets.{name}: found {value!r}; expected a number >= 0"
                             + (f" (or a mapping of drill kind to one, for {kind})" if name == "rto_seconds" else ""))
        out[name] = {"target": float(value), "source": source}
    return out


@dataclass
class Criterion:
    name: str
    target: str
    measured: Any
    verdict: str  # pass | fail
    source: str
    detail: str = ""


def criteria(kind: str, targets: Mapping[str, Mapping[str, Any]], seen: Outage, loss: DataLoss,
             errors: Mapping[str, Any], recovery_seconds: Optional[float]) -> List[Criterion]:
    """The verdict table: one row per seed criterion, target vs what the client measured."""
    def row(name: str, op: str, measured: Any, detail: str = "") -> Criterion:
        limit = float(targets[name]["target"])
        ok = measured is not None and (measured < limit if op == "<" else measured <= limit)
        shown = f"{op} {limit:g}"
        return Criterion(name, shown, measured, "pass" if ok else "fail", str(targets[name]["source"]), detail)

    rto_detail = (f"±{seen.resolution_seconds:g} s; {seen.failed_attempts} failed attempts" if seen.first_success
                  or seen.failed_attempts == 0 else "the client never saw the service back")
    rate = errors.get("rate")
    recovery_detail = {"dns_server": "fault to the client's first resolution of the public name after it (no recovery "
                                     "runbook: the next authoritative server answers)",
                       "partition": "fault to the links healed and caught up (no recovery runbook: the drill heals "
                                    "them after partition_seconds)"}.get(kind, "fault to the recovery runbook's "
                                                                               "verified end")
    return [
        row("rto_seconds", "<", seen.rto_seconds, rto_detail),
        row("rpo_seconds", "<", loss.rpo_seconds,
            f"{len(loss.lost_ids)} of {loss.acknowledged} acknowledged writes lost"),
        row("sessions_lost", "<=", loss.sessions_lost, f"of {loss.acknowledged} sessions written"),
        row("error_rate", "<", rate, f"{errors.get('errors')} errors in {errors.get('attempts')} attempts outside "
                                     "the recovery window"),
        row("recovery_seconds", "<", recovery_seconds, recovery_detail),
    ]


BACKUP_FAULT_SOURCE = "issue 20 (a corrupt Redis backup: found by readiness, refused by redis_restore)"


def backup_fault_criteria(evidence: Optional[Mapping[str, Any]], backup_id: Optional[str]) -> List[Criterion]:
    """The redis_backup drill's own rows (docs/drill.md): readiness's redis_backup_age check failed on the corrupt
    backup, naming it; redis_restore's verification refused it; after the recovery (a fresh verified backup) the
    check passed again. `evidence`: {detected, restore, after}, each readiness's check or {refused, message};
    None (never reached) fails every row."""
    evidence = evidence or {}
    detected, restore, after = (evidence.get(k) or {} for k in ("detected", "restore", "after"))
    found = detected.get("verdict") == "fail" and bool(backup_id) and str(backup_id) in str(detected.get("detail"))
    return [
        Criterion("detected_by_readiness", "redis_backup_age fails, naming the backup", detected.get("verdict"),
                  "pass" if found else "fail", BACKUP_FAULT_SOURCE, str(detected.get("detail") or "not checked")),
        Criterion("refused_by_restore", "redis_restore refuses the backup", restore.get("refused"),
                  "pass" if restore.get("refused") is True else "fail", BACKUP_FAULT_SOURCE,
                  str(restore.get("message") or "not checked")),
        Criterion("readiness_after_recovery", "redis_backup_age passes", after.get("verdict"),
                  "pass" if after.get("verdict") == "pass" else "fail", BACKUP_FAULT_SOURCE,
                  str(after.get("detail") or "not checked")),
    ]


PARTITION_SOURCE = "issue 20 (a network partition or added latency between a region and the rest)"


def partition_target(regions: Sequence[str], pg_region: Optional[str], redis_region: Optional[str],
                     standby_regions: Sequence[str], replica_regions: Sequence[str]) -> Optional[str]:
    """The region a partition drill cuts off: the last of `regions` (the lab's order) that serves neither the
    PostgreSQL nor the Redis primary and has both a PostgreSQL standby and a Redis replica (its two links to the
    rest). None when there is none (the serving region is never partitioned: docs/drill.md)."""
    for region in reversed(list(regions)):
        if region not in (pg_region, redis_region) and region in standby_regions and region in replica_regions:
            return region
    return None


def _failed(checks: Sequence[Mapping[str, Any]], name: str) -> Optional[bool]:
    """Whether readiness's check `name` failed (None: it did not publish one)."""
    found = [c for c in checks if c.get("name") == name]
    return None if not found else any(c.get("verdict") == "fail" for c in found)


def _said(checks: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    shown = [f"{c.get('name')}: {c.get('verdict')} ({c.get('measured')}; {c.get('detail')})" for c in checks
             if c.get("name") in names]
    return "; ".join(shown) or "readiness published none of " + ", ".join(names)


def partition_criteria(evidence: Optional[Mapping[str, Any]]) -> List[Criterion]:
    """The partition drill's own rows (docs/drill.md). `evidence`: {mode (cut | latency), latency_ms, region, standby,
    replica, during: readiness's checks during the fault, probe_seconds: {seconds} (latency: one write's way to the
    standby, the drill's own probe), healed: {caught_up, standby_restarted, sync_full_before,
    sync_full_after, sync_partial_ok_before, sync_partial_ok_after, detail}}; None (never reached) fails every row.

    cut: readiness during the fault must fail the region's replication checks (pg_standbys region <r> or
    pg_replay_lag <standby>, and redis_link <replica> with its link not up). latency: readiness's lag for the
    standby is reported (what it judged), and the row passes when both links stayed up through the delay
    (pg_standbys passed, the replica's link measured up). Either: after the heal the standby replayed the primary's
    LSN of the heal and the replica's offset caught up, without a rebuild (no restart of the standby, no full
    resync: the Redis primary's sync_full unchanged)."""
    evidence = evidence or {}
    checks = [c for c in evidence.get("during") or [] if isinstance(c, Mapping)]
    region, standby, replica = evidence.get("region"), evidence.get("standby"), evidence.get("replica")
    pg_names = [f"pg_standbys region {region}", f"pg_replay_lag {standby}"]
    redis_name = f"redis_link {replica}"
    link = next((c for c in checks if c.get("name") == redis_name), {})
    rows: List[Criterion] = []
    if evidence.get("mode") == "latency":
        lag = next((c for c in checks if c.get("name") == pg_names[1]), {})
        up = _failed(checks, pg_names[0]) is False and link.get("measured") == "up"
        probe = (evidence.get("probe_seconds") or {}).get("seconds")
        rows.append(Criterion("lag_seen_by_readiness", "both links stay up; the standby's lag reported",
                              lag.get("measured"), "pass" if up else "fail", PARTITION_SOURCE,
                              (_said(checks, pg_names + [redis_name]) if checks else "not checked")
                              + f"; one write reached the standby in {'> 10' if probe is None else probe} s "
                                f"(the drill's own probe, latency {evidence.get('latency_ms')} ms each way)"))
    else:
        pg_down = any(_failed(checks, name) for name in pg_names)
        redis_down = _failed(checks, redis_name) is True and link.get("measured") != "up"
        rows.append(Criterion("detected_by_readiness", "the region's replication checks fail",
                              {"postgres": pg_down, "redis": redis_down}, "pass" if pg_down and redis_down else "fail",
                              PARTITION_SOURCE, _said(checks, pg_names + [redis_name]) if checks else "not checked"))
    healed = evidence.get("healed") or {}
    full_before, full_after = healed.get("sync_full_before"), healed.get("sync_full_after")
    no_rebuild = (healed.get("standby_restarted") is False and full_before is not None and full_before == full_after)
    rows.append(Criterion("healed_without_rebuild", "caught up after the heal; no restart, no full resync",
                          healed.get("caught_up"), "pass" if healed.get("caught_up") is True and no_rebuild else
                          "fail", PARTITION_SOURCE, str(healed.get("detail") or "not healed")))
    return rows


# ---------------------------------------------------------------- steady state


@dataclass
class Hypothesis:
    holds: bool
    deviations: List[Dict[str, Any]] = field(default_factory=list)
    checked: List[str] = field(default_factory=list)
    message: str = ""
    # every check readiness published (the steady state's and the rest: capacity, residency, ...), for choices the
    # drill makes from them (region_target)
    checks: List[Mapping[str, Any]] = field(default_factory=list, repr=False)


def hypothesis(readiness_summary: Optional[Mapping[str, Any]], prefixes: Sequence[str] = STEADY_STATE_CHECKS
               ) -> Hypothesis:
    """The steady-state hypothesis: every readiness check of the steady state (STEADY_STATE_CHECKS) answered and
    none failed. A missing summary (readiness could not run) is a deviation, never a pass."""
    checks = ((readiness_summary or {}).get("details") or {}).get("checks")
    if not isinstance(checks, list):
        return Hypothesis(False, [], [], "readiness published no checks (it could not run)")
    every = [c for c in checks if isinstance(c, Mapping)]
    chosen = [c for c in every if str(c.get("name", "")).split(" ")[0] in prefixes]
    if not chosen:
        return Hypothesis(False, [], [], "none of the steady-state checks ran (" + ", ".join(prefixes) + ")", every)
    deviations = [{"name": c.get("name"), "measured": c.get("measured"), "threshold": c.get("threshold"),
                   "detail": c.get("detail")} for c in chosen if c.get("verdict") == "fail"]
    names = [str(c.get("name")) for c in chosen]
    if deviations:
        return Hypothesis(False, deviations, names, "steady state deviates: " + "; ".join(
            f"{d['name']} ({d['detail'] or d['measured']})" for d in deviations), every)
    return Hypothesis(True, [], names, f"steady state holds ({len(names)} checks)", every)


# The readiness checks that say whether a region can take the service (readiness_judge: reachable, capacity,
# residency): a region drill never fails over to a region one of them fails for.
TARGET_REGION_CHECKS = ("reachable", "capacity", "residency")


def region_target(lost: str, regions: Sequence[str], checks: Sequence[Mapping[str, Any]]
                  ) -> Tuple[Optional[str], Dict[str, List[str]]]:
    """The region a region drill moves the service to: the first of `regions` (the lab's order), other than the lost
    one, for which no target check failed in the steady-state readiness run; with, for each region passed over, the
    failed checks that ruled it out. (None, ...) when no region can take it."""
    ruled_out: Dict[str, List[str]] = {}
    for region in regions:
        if region == lost:
            continue
        failed = [f"{c.get('name')}: {c.get('detail') or c.get('measured')}" for c in checks
                  if c.get("verdict") == "fail" and c.get("name") in
                  {f"{kind} region {region}" for kind in TARGET_REGION_CHECKS}]
        if not failed:
            return region, ruled_out
        ruled_out[region] = failed
    return None, ruled_out


# ---------------------------------------------------------------- verdict


def verdict(before: Hypothesis, injected: bool, recovery_ok: Optional[bool], table: Sequence[Criterion],
            restored: Optional[bool], interrupted: Optional[str] = None) -> Dict[str, str]:
    """passed only when the steady state held before, the fault was injected, the recovery runbook succeeded,
    every criterion passed and the steady state was restored. A drill whose restore failed is never passed; an
    interrupted one (Ctrl-C, an error) is failed once restored."""
    if restored is False:
        return {"verdict": RESTORE_FAILED, "reason": "the steady state was not restored after the drill"
                + (f" (interrupted: {interrupted})" if interrupted else "")}
    if interrupted:
        return {"verdict": FAILED, "reason": f"interrupted ({interrupted}); the steady state was restored"
                if restored else f"interrupted ({interrupted}) before anything was injected"}
    if not before.holds:
        return {"verdict": DEVIATED, "reason": f"not injected: {before.message}"}
    if not injected:
        return {"verdict": FAILED, "reason": "the fault could not be injected"}
    if not recovery_ok:
        return {"verdict": FAILED, "reason": "the recovery runbook failed"}
    failed = [c.name for c in table if c.verdict != "pass"]
    if failed:
        return {"verdict": FAILED, "reason": "criteria not met: " + ", ".join(failed)}
    return {"verdict": PASSED, "reason": "every criterion met and the steady state restored"}


def timeline(attempts: Sequence[Attempt], origin: float, bucket: float = 0.5) -> List[Dict[str, Any]]:
    """The client-observed timeline in buckets (seconds from `origin`): successes and failures per bucket, for the
    report's chart."""
    if not attempts:
        return []
    out: Dict[int, Dict[str, Any]] = {}
    for a in attempts:
        index = int(max(0.0, a.ended - origin) // bucket)
        slot = out.setdefault(index, {"t": round(index * bucket, 3), "ok": 0, "failed": 0})
        slot["ok" if a.ok else "failed"] += 1
    return [out[i] for i in sorted(out)]
