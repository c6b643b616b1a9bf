"""The regional write guard: keeps a primary the regional failover cannot reach from taking writes
(docs/design.md, "Keeping an unreachable old primary from taking writes").

It runs in the observer of a region (`dr_watch.guard: true`, an observer with a region), beside that region's
database. At each check the observer notes whether it reached etcd (published its verdicts: etcd answered with a
quorum). When it has not for longer than `guard_seconds` (strictly shorter than carry_on_seconds, the earliest time
the majority may decide to fail over), it asks the other regions' databases whether they answer. Patroni's
failsafe lesson: an etcd outage alone must not demote anything (patroni/patroni#3096, #3550, #3572). So the guard
acts only when this region, counted with the peers it reaches, is NOT a majority of the database members. Then
it makes its region's writable primary read-only: default_transaction_read_only on, and its sessions terminated,
through the collection's fence engine (_postgres/fence.py, method read_only). Lifting it is the failback's
decision, never the guard's.

The region's Redis primary stops taking writes at the same time: CLIENT PAUSE <ms> WRITE (as the regional
failover's isolation pauses it: compose/isolate.py), renewed at every check while the guard fences, for
REDIS_PAUSE_SECONDS (a guard that dies leaves its pause that long). Unlike the database's fence, the guard lifts its
own pause (CLIENT UNPAUSE) at its first check that reaches etcd again, unless the region has a trigger record
(a failover started or ended: its isolation and the Redis failover decide region a's Redis from then on, and the
guard forgets its pause rather than lift one it may not own). The pauses it set are noted in a file of the state
home (PAUSES_FOLDER), so the region's observer restarted by systemd during the partition lifts them too.
docs/watch.md, "The regional write guard".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

from erlmcp_dr import paths
from erlmcp_dr.compose.inventory import InventoryView
from erlmcp_dr.watch import sampling

HOLD = "hold"  # etcd reached recently enough, or this side is still the majority: take writes as before
FENCE = "fence"  # cut off from etcd and from most peers for too long: the region's primary goes read-only
FENCE_WAIT_SECONDS = 10.0
REDIS_PAUSE_SECONDS = 300.0  # one pause's length; renewed at every check while the guard fences
PAUSES_FOLDER = "watch"  # under the state home: guard-<region>-redis-paused.json, the Redis nodes a guard paused


@dataclass(frozen=True)
class GuardDecision:
    action: str
    reason: str


def decide(seconds_without_etcd: float, guard_seconds: float, peers_reached: int, peers_total: int
           ) -> GuardDecision:
    """Fence only when etcd has been out of reach longer than guard_seconds AND this region with the peer databases
    it reaches is no majority of all the database members (itself + peers_total)."""
    if seconds_without_etcd <= guard_seconds:
        return GuardDecision(HOLD, f"etcd reached {seconds_without_etcd:.1f} s ago (the guard acts after "
                                   f"{guard_seconds:g} s without it)")
    members = peers_total + 1
    side = peers_reached + 1
    if side * 2 > members:
        return GuardDecision(HOLD, f"etcd out of reach for {seconds_without_etcd:.1f} s, but this region reaches "
                                   f"{peers_reached} of {peers_total} peer databases: {side} of {members} members, a "
                                   "majority (an etcd outage alone never demotes anything)")
    return GuardDecision(FENCE, f"etcd out of reach for {seconds_without_etcd:.1f} s (over {guard_seconds:g} s) and "
                                f"this region reaches {peers_reached} of {peers_total} peer databases: {side} of "
                                f"{members} members, not a majority. The majority may fail over, so this region's "
                                "primary stops taking writes")


class RegionGuard:
    """The guard of `region`'s databases, driven by its observer's checks."""

    def __init__(self, view: InventoryView, region: str, guard_seconds: float, sample_timeout: float) -> None:
        self.view, self.region = view, region
        self.guard_seconds, self.sample_timeout = guard_seconds, sample_timeout
        self.etcd_reached_at = time.monotonic()  # from the start: a guard never fences at once

    def reached_etcd(self, failed_over: bool = False) -> List[Dict[str, Any]]:
        """etcd answered: the clock restarts, and the Redis pauses this guard set are lifted, unless the region has
        a trigger record (failed_over): then they are forgotten and expire by themselves. What was lifted."""
        self.etcd_reached_at = time.monotonic()
        paused = self.redis_paused()
        if not paused:
            return []
        self._pauses_file().unlink(missing_ok=True)
        if failed_over:
            return []
        isolate = _isolate()
        lifted = []
        for host in paused:
            error = isolate.unpause_writes(self._redis_login(host))
            lifted.append({"host": host, "unpaused": error is None, **({"error": error} if error else {})})
        return lifted

    def check(self) -> Dict[str, Any]:
        """The decision now, and what the fence did when it fenced."""
        without = time.monotonic() - self.etcd_reached_at
        if without <= self.guard_seconds:  # the usual case: no peer is asked
            decision = decide(without, self.guard_seconds, 0, 0)
            return {"action": decision.action, "reason": decision.reason}
        reached, total = self.peers()
        decision = decide(without, self.guard_seconds, reached, total)
        found: Dict[str, Any] = {"action": decision.action, "reason": decision.reason}
        if decision.action == FENCE:
            found["fenced"] = self.fence()
            found["redis_paused"] = self.pause_redis()
        return found

    def peers(self) -> Tuple[int, int]:
        """(peer databases that answer, peer databases): every postgres host of the other regions."""
        health, _verdicts = sampling.engines()
        checks = [check for host, component, check in sampling.parts_of(self.view, "postgres", self.sample_timeout)
                  if str(self.view.hosts["postgres"][host].get("dr_region")) != self.region]
        answered = [sampling.checked(health, check).get("samples", [{}])[-1].get("reachable") for check in checks]
        return sum(1 for reachable in answered if reachable), len(checks)

    def fence(self) -> List[Dict[str, Any]]:
        """Each writable database of this region made read-only (fence engine, method read_only)."""
        paths.ensure_collection_importable()
        from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
        from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import fence

        health, _verdicts = sampling.engines()
        done = []
        for host, _component, check in sampling.parts(self.view, self.region, self.sample_timeout):
            if check["kind"] != "postgres":
                continue
            last = sampling.checked(health, check).get("samples", [{}])[-1]
            if not last.get("writable"):
                continue
            params = {"state": "fenced", "method": "read_only", "login_host": check["host"],
                      "login_port": check["port"], "login_user": check["login_user"],
                      "login_password": check["login_password"], "login_db": check["login_db"],
                      "wait_timeout": FENCE_WAIT_SECONDS, "connect_timeout": max(2, int(self.sample_timeout + 1))}
            try:
                result = fence.run(params)
                done.append({"host": host, "fenced": True, "changed": result["changed"],
                             "terminated_sessions": len(result.get("terminated_sessions") or [])})
            except ModuleFailure as exc:
                done.append({"host": host, "fenced": False, "error": str(exc)})
        return done

    def pause_redis(self) -> List[Dict[str, Any]]:
        """Each Redis primary of this region pauses its writes (CLIENT PAUSE WRITE); a replica or a node that does
        not answer takes no writes and is left alone."""
        isolate = _isolate()
        done = []
        for host, _component, check in sampling.parts(self.view, self.region, self.sample_timeout):
            if check["kind"] != "redis":
                continue
            login = self._redis_login(host)
            _probe, role = isolate.probe_redis(login)
            if role != "master":
                continue
            error = isolate.pause_writes(login, REDIS_PAUSE_SECONDS)
            if error is None:
                self._note_paused(host)
            done.append({"host": host, "paused": error is None, **({"error": error} if error else {})})
        return done

    def redis_paused(self) -> List[str]:
        """The Redis nodes of this region that a guard paused and has not lifted: the only pauses it ever lifts."""
        try:
            found = json.loads(self._pauses_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [str(host) for host in found] if isinstance(found, list) else []

    def _note_paused(self, host: str) -> None:
        paused = self.redis_paused()
        if host in paused:
            return
        target = self._pauses_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_suffix(".tmp")
        scratch.write_text(json.dumps([*paused, host]), encoding="utf-8")
        scratch.replace(target)  # whole or absent: a guard killed mid-write never leaves half a list

    def _pauses_file(self) -> Path:
        return paths.state_home() / PAUSES_FOLDER / f"guard-{self.region}-redis-paused.json"

    def _redis_login(self, host: str) -> Dict[str, Any]:
        return _isolate().failback._redis_login(self.view.hosts.get("redis") or {}, host)


def _isolate() -> Any:
    """The regional failover's isolation (its Redis probe, pause and unpause): imported when a guard acts."""
    from erlmcp_dr.compose import isolate

    return isolate
