"""One observer: every interval, sample the watched regions, publish its verdicts, read everyone's, decide, trigger.

A check (tick):
1. sample each watched region once (sampling.py) and count consecutive checks with the same answer;
2. publish this observer's verdicts under its lease and read every live verdict and trigger record (board.py);
   when etcd cannot be reached: "automation unavailable", no decision, no trigger (sampling goes on, and nothing
   is ever demoted or stopped because etcd is away);
3. per region, watch_quorum.decide over the static membership; on FAIL_OVER, unless a trigger record exists for
   the region, claim it (one observer wins) and start regional_failover (unplanned, to the declared target) through
   erlmcp_dr.run() in a thread (the claim has a lease of its own, renewed by a keeper thread while the run lasts);
   the run takes its run lock as every run does (RunBusy: another run holds the targets, this trigger stands down
   and gives its claim back);
4. when the run ends, its outcome is written as the region's trigger record, without a lease.
Each check returns a report (a dict, one JSON line in `runbook watch --json`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from erlmcp_dr.compose import inventory as compose_inventory
from erlmcp_dr.errors import ParameterError, RunBusy
from erlmcp_dr.watch import sampling
from erlmcp_dr.watch.board import Board, ClaimKeeper, store_error
from erlmcp_dr.watch.guard import RegionGuard
from erlmcp_dr.watch.settings import WatchSettings
from erlmcp_dr.watch_quorum import FAIL_OVER, Verdict, decide

log = logging.getLogger(__name__)

RUNBOOK = "regional_failover"
UNAVAILABLE = "automation unavailable"
STANDING_DOWN = "stood down"


@dataclass
class Count:
    failed: bool = False
    consecutive: int = 0

    def add(self, failed: bool) -> None:
        self.consecutive = self.consecutive + 1 if failed == self.failed and self.consecutive else 1
        self.failed = failed


@dataclass
class Trigger:
    """A regional_failover this observer started: its thread, and its outcome once it ended."""

    region: str
    to_region: str
    started_at: str
    keeper: Optional[ClaimKeeper] = None  # renews the claim's lease while the run lives
    thread: Optional[threading.Thread] = None
    outcome: Optional[Dict[str, Any]] = None
    settled: bool = False


@dataclass
class Observer:
    settings: WatchSettings
    name: str
    inventory: Path
    board: Board = None  # type: ignore[assignment]  # made from the settings unless given
    start_run: Callable[..., Any] = None  # type: ignore[assignment]  # erlmcp_dr.run unless given
    counts: Dict[str, Count] = field(default_factory=dict)
    triggers: List[Trigger] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.name not in self.settings.membership.observers:
            raise ParameterError("--name", f"observer {self.name!r} is not in dr_watch.observers (the static "
                                           f"membership: {', '.join(self.settings.membership.observers)})")
        self.view = compose_inventory.read(self.inventory)
        named = set(self.settings.failover_to) | set(self.settings.failover_to.values())
        missing = [region for region in named if region not in self.view.regions()]
        if missing:
            raise ParameterError("dr_watch.failover_to", f"dr_watch.failover_to names {', '.join(sorted(missing))}, "
                                                         f"not a region of the inventory {self.inventory} (dr_region "
                                                         f"of its hosts: {', '.join(self.view.regions())})")
        own_region = self.settings.membership.region_of(self.name)
        self.guard = (RegionGuard(self.view, own_region, self.settings.guard_seconds, self.settings.sample_timeout)
                      if self.settings.guard and own_region else None)
        if self.board is None:
            self.board = Board(self.settings.etcd, self.settings.prefix, self.name, self.settings.lease_seconds)
        if self.start_run is None:
            import erlmcp_dr

            self.start_run = erlmcp_dr.run

    # ------------------------------------------------------------ one check

    def tick(self) -> Dict[str, Any]:
        regions = sorted(self.settings.failover_to)
        samples = sampling.sample_regions(self.view, regions, self.settings.sample_timeout)
        for region, sample in samples.items():
            self.counts.setdefault(region, Count()).add(sample.failed)
        report: Dict[str, Any] = {"observer": self.name, "at": _now(), "regions": {
            region: {"failed": samples[region].failed, "consecutive": self.counts[region].consecutive,
                     "reasons": list(samples[region].reasons)} for region in regions}}
        mine = [Verdict(self.name, region, self.counts[region].failed, self.counts[region].consecutive,
                        self.settings.interval) for region in regions]
        try:
            self._settle_ended()
            self.board.publish(mine, {r: {"at": report["at"], "reasons": report["regions"][r]["reasons"][:3]}
                                      for r in regions})
            verdicts, failovers = self.board.read()
        except store_error() as exc:
            report.update(status=UNAVAILABLE, message=f"{UNAVAILABLE}: {exc}")
            return self._guarded(report)
        if self.guard is not None:
            lifted = self.guard.reached_etcd(failed_over=self.guard.region in failovers)
            if lifted:
                report["guard_lifted"] = lifted
        report["status"] = "ok"
        for region in regions:
            report["regions"][region].update(self._decide(region, verdicts, failovers))
        report["triggers"] = [self._describe(trigger) for trigger in self.triggers]
        return self._guarded(report)

    def _guarded(self, report: Dict[str, Any]) -> Dict[str, Any]:
        """The regional write guard's decision (guard.py), when this observer guards its region."""
        if self.guard is not None:
            report["guard"] = self.guard.check()
        return report

    def _decide(self, region: str, verdicts: List[Verdict], failovers: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
        decision = decide(self.settings.membership, region, verdicts, self.settings.bands)
        found: Dict[str, Any] = {"decision": decision.action, "reason": decision.reason,
                                 "failed_votes": list(decision.failed_votes), "dissent": list(decision.dissent)}
        if decision.action != FAIL_OVER:
            return found
        running = next((t for t in self.triggers if t.region == region and t.outcome is None), None)
        if running is not None:
            return dict(found, trigger=f"this observer's {RUNBOOK} from {region} to {running.to_region} runs")
        if region in failovers:
            return dict(found, trigger=f"{STANDING_DOWN}: {_record_text(region, failovers[region])}")
        return dict(found, trigger=self._start(region))

    # ------------------------------------------------------------ the trigger

    def _start(self, region: str) -> str:
        to_region = self.settings.failover_to[region]
        lease_id, holder = self.board.claim(region, {"to_region": to_region, "started_at": _now(),
                                                     "pid": os.getpid()})
        if lease_id is None:
            return f"{STANDING_DOWN}: {_record_text(region, holder or {})}"
        trigger = Trigger(region, to_region, _now(), keeper=ClaimKeeper(self.board, lease_id))
        trigger.thread = threading.Thread(target=self._failover, args=(trigger,), daemon=True,
                                          name=f"watch-{self.name}-{RUNBOOK}-{region}")
        self.triggers.append(trigger)
        trigger.thread.start()
        return f"started {RUNBOOK} from {region} to {to_region} (this observer won the region's trigger)"

    def _failover(self, trigger: Trigger) -> None:
        extravars = {"from_region": trigger.region, "to_region": trigger.to_region, "mode": "unplanned",
                     "health_interval": self.settings.interval}
        try:
            result = self.start_run(RUNBOOK, inventory=str(self.inventory), extravars=extravars,
                              operator=f"runbook watch ({self.name})")
            trigger.outcome = {"state": "completed" if result.status == "successful" else "failed",
                               "run_id": result.run_id, "status": result.status, "run_dir": result.run_dir,
                               "error": result.error or None}
        except RunBusy as exc:
            trigger.outcome = {"state": "busy", "message": str(exc)}
        except Exception as exc:  # a refused parameter, an unreadable inventory: recorded, an operator must look
            log.exception("%s: %s from %s failed to start", self.name, RUNBOOK, trigger.region)
            trigger.outcome = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}

    def _settle_ended(self) -> None:
        """Write each ended run's outcome as the region's trigger record (kept until an operator clears it); a run
        turned away by the run lock gives the claim back instead (another run holds the targets: look again)."""
        for trigger in self.triggers:
            if trigger.outcome is None or trigger.settled:
                continue
            if trigger.outcome["state"] == "busy":
                self.board.give_back(trigger.region)
            else:
                self.board.settle(trigger.region, dict(trigger.outcome, to_region=trigger.to_region,
                                                       started_at=trigger.started_at, ended_at=_now()))
            if trigger.keeper is not None:
                trigger.keeper.end()
                self.board.revoke(trigger.keeper.lease_id)  # the record no longer hangs on it
            trigger.settled = True

    def _describe(self, trigger: Trigger) -> Dict[str, Any]:
        return {"region": trigger.region, "to_region": trigger.to_region, "started_at": trigger.started_at,
                "outcome": trigger.outcome}

    # ------------------------------------------------------------ the loop

    def watch(self, stop: threading.Event, on_report: Callable[[Dict[str, Any]], None],
              ticks: Optional[int] = None) -> None:
        """A check every interval (deadline-driven: a slow check shortens the wait, never shifts the schedule)
        until `stop` is set or `ticks` checks were made; then the lease is revoked (a clean stop: the verdicts go)."""
        due = time.monotonic()
        made = 0
        try:
            while not stop.is_set() and (ticks is None or made < ticks):
                on_report(self.tick())
                made += 1
                due += self.settings.interval
                stop.wait(max(0.0, due - time.monotonic()))
                due = max(due, time.monotonic() - self.settings.interval)  # after a stall: no burst of checks
        finally:
            for trigger in self.triggers:
                if trigger.thread is not None:
                    trigger.thread.join()
            try:
                self._settle_ended()
                self.board.release()
            except store_error() as exc:
                log.warning("%s: could not record the end in etcd: %s", self.name, exc)


def _record_text(region: str, record: Dict[str, Any]) -> str:
    state = record.get("state")
    who = f"observer {record.get('observer')} on {record.get('host')}"
    if state == "running":
        return (f"{who} started {RUNBOOK} from {region} to {record.get('to_region')} at {record.get('started_at')} "
                "and holds the region's trigger")
    return (f"{RUNBOOK} from {region} to {record.get('to_region')} by {who} ended {state} (run "
            f"{record.get('run_id') or '-'}{', ' + str(record.get('error')) if record.get('error') else ''}); no "
            f"observer triggers region {region} again until an operator clears it (runbook watch --clear-failover "
            f"{region}, after the failback)")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
