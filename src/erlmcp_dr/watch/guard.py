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
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from erlmcp_dr import paths
from erlmcp_dr.compose.inventory import InventoryView
from erlmcp_dr.watch import sampling

HOLD = "hold"  # etcd reached recently enough, or this side is still the majority: take writes as before
FENCE = "fence"  # cut off from etcd and from most peers for too long: the region's primary goes read-only
FENCE_WAIT_SECONDS = 10.0


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

    def reached_etcd(self) -> None:
        self.etcd_reached_at = time.monotonic()

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
