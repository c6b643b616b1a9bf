"""Runs the dr_drill runbook (playbooks/dr_drill.yml holds its metadata and plan; docs/drill.md):

    runbook run dr_drill -e kind=database_primary -i <lab inventory>
    erlmcp_dr.run("dr_drill", inventory=..., extravars={"kind": "database_primary"})

1. Under the run lock of every target (compose.run.hold_locks: the children find the drill's record under its
   run id), the drill first restores what an earlier drill left (its pending record, written before injecting:
   a drill killed with kill -9 left it behind).
2. Steady state: a readiness child run, judged by drill_judge.hypothesis. A deviation: nothing is injected.
3. The pending record (what to restore) is written, the client starts, the fault is injected (lab_drill), the
   recovery runbook runs as a child run, the client waits for the service to answer again.
4. Always (a deviation, a failed recovery, an exception, Ctrl-C): restore, then readiness again. Only a verified
   restore removes the pending record; a drill whose restore failed is `restore_failed`, never passed.
5. result.json, report.md/html (with the client's timeline and the verdict table), the audit trail and the drill
   history readiness reads (<state home>/drills/history.jsonl, or the inventory's dr_drill_history).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from erlmcp_dr import audit, catalog, params, paths
from erlmcp_dr.catalog import Runbook
from erlmcp_dr.compose import inventory as inventory_module
from erlmcp_dr.compose import run as compose_run
from erlmcp_dr.compose.move_lock import MoveLock
from erlmcp_dr.compose.run import LOCK_OWNER_VAR, hold_locks
from erlmcp_dr.drill import judge as drill_judge
from erlmcp_dr.drill.client import DrillClient, PublicName, present
from erlmcp_dr.drill.judge import Attempt, Hypothesis
from erlmcp_dr.errors import ParameterError
from erlmcp_dr.lab import backup_fault
from erlmcp_dr.lab import drill as lab_drill
from erlmcp_dr.lab import partition as lab_partition
from erlmcp_dr.lab.proxy import LinkProxy
from erlmcp_dr.reporting import report
from erlmcp_dr.result import REPORT_FILE, RunResult, Step

log = logging.getLogger(__name__)

RUNBOOK = "dr_drill"
RECOVERY: Dict[str, Optional[str]] = {"database_primary": "database_failover", "redis_primary": "redis_failover",
                                      "app_instance": "dns_cutover", "region": "regional_failover",
                                      # no runbook: the next authoritative server is the recovery, once the client
                                      # resolves the name again (its cached answer lives one TTL)
                                      "dns_server": None,
                                      "redis_backup": "redis_backup",
                                      # no runbook: the links heal (the drill heals its proxies after
                                      # partition_seconds and measures the standby and the replica catching up)
                                      "partition": None}
# The region drill's way back (restore): failback to the lost region once it runs again. Its grace gate asks the
# restarted region to stay healthy this long, sampled this often, within its grace_wait (30 s): a drill's restore
# waits seconds, not failback's operator default of an hour.
FAILBACK_GRACE = {"grace_seconds": 1.0, "grace_interval": 0.1}
# Readiness runs after a restore until the steady state holds, at most this many times: a standby rejoined a moment
# ago replays what it missed, and its lag check (<= the RPO) fails until it has. Each run takes seconds, so this is
# a deadline of a few readiness runs, not a sleep.
STEADY_AFTER_ATTEMPTS = 3
TAIL_SUCCESSES = 10  # successes the client must see after the outage before it stops (a flap shows up)
Listener = Callable[[str], None]


def drills_dir() -> Path:
    return paths.state_home() / "drills"


def history_path(view: Any) -> Path:
    """Where readiness reads the drill history (docs/readiness.md): dr_drill_history, else beside the runs."""
    configured = view.all_vars.get("dr_drill_history")
    return Path(str(configured)) if configured else drills_dir() / "history.jsonl"


def pending_path(inventory: Path) -> Path:
    """The record of what a drill on this inventory must restore; one per inventory."""
    digest = hashlib.sha256(str(Path(inventory).resolve()).encode()).hexdigest()[:16]
    return drills_dir() / "pending" / f"{digest}.json"


def run(name: Any = RUNBOOK, inventory: Any = None, extravars: Optional[Dict[str, Any]] = None,
        run_id: Optional[str] = None, operator: Optional[str] = None, playbooks_dir: Any = None,
        listener: Optional[Listener] = None, **ignored: Any) -> RunResult:
    """Runs one drill; returns its RunResult (successful only when the verdict is passed). Raises ParameterError
    before anything runs (bad parameters, not a lab, unknown targets), RunBusy when a target's lock is held."""
    from erlmcp_dr import runner

    if ignored.get("check"):
        raise ParameterError("check", f"check: the drill's plan is `runbook plan {RUNBOOK}`")
    runbook = name if isinstance(name, Runbook) else catalog.load(name, playbooks_dir)
    values = params.validate(runbook, extravars)
    kind = str(values["kind"])
    if str(values.get("signal") or "SIGKILL") == "SIGSTOP" and kind not in lab_drill.FREEZABLE:
        raise ParameterError("signal", f"signal SIGSTOP is built for kind {', '.join(lab_drill.FREEZABLE)} only; "
                                       f"found kind {kind}: expected signal SIGKILL for it; nothing was run")
    inventory_path = runner.resolve_inventory(inventory)
    view = inventory_module.read(inventory_path)
    refuse_kind_without_dns(kind, view)
    cfg = lab_drill.lab_of(view)
    refuse_outside_lab(cfg is not None, view.all_vars.get("dr_environment"), values.get("environment_name"))
    try:
        targets = drill_judge.targets_for(kind, (view.all_vars.get("dr_drill") or {}).get("targets"))
    except ValueError as exc:
        raise ParameterError("dr_drill", str(exc)) from None
    run_id = run_id or runner.new_run_id(RUNBOOK)
    run_dir = paths.state_home() / "runs" / run_id
    if run_dir.exists():
        raise ParameterError("run_id", f"run {run_id} already exists at {run_dir}; choose another run id")
    lock_settings = view.lock_settings()  # the store the children's run_lock picks: directory or etcd
    keys = view.lock_keys()
    drill = Drill(runbook, run_id, run_dir, inventory_path, view, cfg, values, targets, operator, playbooks_dir,
                  listener or (lambda line: None))
    with hold_locks(lock_settings, keys, run_id, RUNBOOK, operator, str(inventory_path)) as held:
        drill.lock = held  # checked right before the fault: a drill that lost a key (etcd) injects nothing
        drill.facts.update(lock_store=held.store.kind, fencing_tokens=held.tokens())
        return drill.execute(keys)


def refuse_outside_lab(is_lab: bool, environment: Any, typed: Any) -> None:
    """Faults are injected on the lab only. Outside it the operator must type the inventory's dr_environment;
    and since injection outside the lab is not built, even then the drill is refused (saying so)."""
    if is_lab:
        return
    if not environment or typed != environment:
        raise ParameterError("environment_name", "this inventory is not the lab (its database folders are not in a "
                                                 "lab folder with lab.json): a drill injects real faults, so it is "
                                                 f"refused unless environment_name is the inventory's dr_environment "
                                                 f"({environment or 'not set'}); found {typed or 'nothing'}")
    raise ParameterError("environment_name", f"environment {environment} confirmed, but fault injection outside the "
                                             "lab is not built yet: nothing was run")


def refuse_kind_without_dns(kind: str, view: Any) -> None:
    """A dns_server drill stops the authoritative server the client asks first and measures whether the client
    carries on at the next: the inventory must give the client a public name (dns_zone, dns_records) and at least two
    authoritative servers (its dns group). Refused before anything runs, naming `kind`."""
    if kind != "dns_server":
        return
    servers = list(view.hosts.get("dns", {}))
    zone, records = view.all_vars.get("dns_zone"), str(view.all_vars.get("dns_records") or "").split(",")[0].strip()
    if not zone or not records or len(servers) < 2:
        raise ParameterError("kind", "kind dns_server needs the public name (dns_zone, dns_records) and at least two "
                                     "authoritative servers in the inventory's dns group (the first is stopped, the "
                                     f"next must answer); found dns_zone {zone or 'not set'}, dns_records "
                                     f"{records or 'not set'}, {len(servers)} server(s)"
                                     + (f" ({', '.join(servers)})" if servers else "") + "; nothing was run")


class Drill:
    def __init__(self, runbook: Runbook, run_id: str, run_dir: Path, inventory: Path, view: Any, cfg: Any,
                 values: Dict[str, Any], targets: Dict[str, Any], operator: Optional[str], playbooks_dir: Any,
                 listener: Listener) -> None:
        self.runbook, self.run_id, self.run_dir, self.inventory = runbook, run_id, run_dir, inventory
        self.view, self.cfg, self.values, self.targets = view, cfg, values, targets
        self.operator, self.playbooks_dir, self.say = operator, playbooks_dir, listener
        self.kind = str(values["kind"])
        self.signal = str(values.get("signal") or "SIGKILL")
        self.steps: List[Step] = []
        self.facts: Dict[str, Any] = {"kind": self.kind, "signal": self.signal, "targets": targets}
        self.children: Dict[str, RunResult] = {}
        self.outcome: Dict[str, Any] = {"injected": False, "recovery_ok": None}
        self.lock: Optional[MoveLock] = None  # every target's key, held by run() for the whole drill
        self.record: Dict[str, Any] = {}  # the pending record, once written
        self.proxies: Dict[str, LinkProxy] = {}  # partition: the proxies the region's links go through

    # ------------------------------------------------------------ the drill

    def execute(self, keys: List[str]) -> RunResult:
        started_at, started = _now_iso(), time.monotonic()
        self.run_dir.mkdir(mode=0o700, parents=True)
        audit.append_quietly(audit.run_start(self.run_id, RUNBOOK, params.redact(self.runbook, self.values),
                                             check=False, operator=self.operator, inventory=str(self.inventory)))
        outcome = self.outcome  # filled as the drill goes: an interrupted drill is restored from what it did
        try:
            self.drill(outcome)
        except BaseException as exc:  # Ctrl-C (KeyboardInterrupt) or an error: restore, record, then re-raise
            outcome["interrupted"] = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise
        finally:
            outcome["restored"] = self.restore_and_check(outcome)
            result = self.finish(outcome, keys, started_at, time.monotonic() - started)
        return result

    def drill(self, outcome: Dict[str, Any]) -> Dict[str, Any]:
        left = self.load_pending()
        if left is not None:
            self.step("restore what an earlier drill left", lambda: self.restore(left), data={"pending": left})
            self.facts["restored_first"] = left
        before = self.steady_state("before")
        outcome["before"] = before
        if not before.holds:
            return outcome
        lab_before = lab_drill.state(self.cfg)
        if self.kind == "region" and not self.choose_target_region(before, lab_before):
            outcome["before"] = self.no_target_region(before)
            return outcome  # nothing injected: a region lost with nowhere to go is an outage, not a drill
        if self.kind == "partition" and not self.choose_partition_region(lab_before):
            outcome["before"] = self.no_partition_region(before)
            return outcome
        public = self.public_name()
        if self.kind == "dns_server":  # the authoritative server the client asks first
            lab_before["dns_server"] = lab_drill.dns_server_at(self.cfg, int(public.servers[0][1]))
        app_region = self.serving_region(public)
        record = {"run_id": self.run_id, "kind": self.kind, "inventory": str(self.inventory), "before": lab_before,
                  "app_region": app_region, "recorded_at": _now_iso(), "fault": None, "signal": self.signal}
        self.record = record
        self.write_pending(record)  # before the fault: a drill killed from here on is restored by the next run
        if self.kind == "partition" and self.step("partition: the region's links through the drill's proxies",
                                                  lambda: self.partition_links(lab_before)) is None:
            return outcome  # nothing injected; the restore re-points whatever was re-pointed
        client = DrillClient(public, f"drill {self.run_id}", float(self.values.get("client_interval") or 0.02))
        origin = client.clock()
        client.start()
        outcome.update(client=client, origin=origin, public=public.describe(), lab_before=lab_before)
        try:
            self.wait_baseline(client)
            fault_at = client.clock()
            fault = self.step("inject the fault", lambda: self.inject(lab_before, app_region))
            if fault is not None:  # the moment the signal was sent, on the client's clock (time.monotonic)
                fault_at = float(fault.pop("sent_at", fault_at))
            outcome.update(fault=fault, fault_at=fault_at, injected=fault is not None)
            if fault is None:
                return outcome
            record["fault"] = fault
            self.write_pending(record)
            ok = self.recover(fault, lab_before, app_region)
            outcome["recovery_ok"] = ok
            outcome["recovered_at"] = client.clock()
            if self.kind == "dns_server":  # no runbook: recovered once the client has resolved the name again
                outcome["recovered_at"] = self.wait_resolved(public, client, fault_at)
            elif self.kind == "partition":  # no runbook: recovered once the healed links have caught up
                outcome["recovered_at"] = ((self.facts.get("partition") or {}).get("healed") or {}).get(
                    "caught_up_at")
            if ok and outcome["recovered_at"] is not None:
                self.wait_back(client, outcome["recovered_at"])
        finally:
            outcome["attempts"] = client.stop()
            outcome["resolutions"] = list(public.resolutions)
        return outcome

    def inject(self, lab_before: Dict[str, Any], app_region: Optional[str]) -> Dict[str, Any]:
        """The fault, only while the drill still holds every target's key: with etcd a lease can be lost (a paused
        controller), and a fault whose recovery another controller may be running meanwhile is not a drill."""
        if self.lock is not None:
            lost = self.lock.lost()
            if lost is not None:
                raise RuntimeError(f"nothing was injected: {lost}")
        if self.kind == "redis_backup":  # the original bytes go into the pending record before they change
            planned = backup_fault.plan(backup_fault.store_dir(self.view))
            self.record["fault"] = {"target": planned["target"], "backup": planned, "planned_only": True}
            self.write_pending(self.record)
            return backup_fault.corrupt(planned)
        if self.kind == "partition":
            return self.partition_fault()
        return lab_drill.inject(self.cfg, self.kind, lab_before, app_region, self.signal)

    def wait_baseline(self, client: DrillClient) -> None:
        deadline = client.clock() + max(1.0, 20 * float(self.values.get("baseline_seconds") or 1.0))
        start = client.clock()
        wanted = float(self.values.get("baseline_seconds") or 1.0)
        while client.clock() < deadline and (client.clock() - start < wanted or client.successes_since(start) < 3):
            time.sleep(0.02)

    def wait_back(self, client: DrillClient, since: float) -> None:
        """Until the client has seen TAIL_SUCCESSES successes after the recovery ended, or the timeout."""
        deadline = since + float(self.values.get("recovery_timeout") or 120.0)
        while client.clock() < deadline and client.successes_since(since) < TAIL_SUCCESSES:
            time.sleep(0.02)

    def wait_resolved(self, public: PublicName, client: DrillClient, fault_at: float) -> Optional[float]:
        """dns_server: until the client has resolved the public name again after the fault (at the next server; its
        cached answer lived one TTL), at most recovery_timeout. The moment that resolution ended, else None (then the
        recovery_seconds criterion has nothing measured, and fails)."""
        deadline = fault_at + float(self.values.get("recovery_timeout") or 120.0)

        def wait() -> Dict[str, Any]:
            while client.clock() < deadline and public.resolved_since(fault_at) is None:
                time.sleep(0.02)
            found = public.resolved_since(fault_at)
            if found is None:
                raise RuntimeError(f"the client did not resolve {public.name} again within recovery_timeout "
                                   f"({deadline - fault_at:g} s after the fault)")
            return {"answered_by": found["server"], "failed_first": found["failed"],
                    "seconds_after_fault": round(found["ended"] - fault_at, 3),
                    "resolution_seconds": round(found["ended"] - found["started"], 3)}

        resolved = self.step("the client resolves the public name again (no recovery runbook: the next "
                             "authoritative server answers)", wait)
        return None if resolved is None else fault_at + float(resolved["seconds_after_fault"])

    def recover(self, fault: Dict[str, Any], before: Dict[str, Any], app_region: Optional[str]) -> bool:
        recovery = RECOVERY[self.kind]
        if self.kind == "partition":
            return self.recover_partition(fault)
        if recovery is None:  # dns_server: nothing to run (the drill then waits for the client: wait_resolved)
            return True
        if self.kind == "redis_backup":
            return self.recover_backup(fault)
        if self.kind == "app_instance":
            others = [r for r, up in lab_drill.apps_running(self.cfg).items() if up and r != app_region]
            arguments: Dict[str, Any] = {"region": sorted(others)[0]} if others else {}
        elif self.kind == "region":  # a composed child, under the drill's lock (compose/move_lock.OwnersLock)
            to_region = self.facts["target_region"]["region"]
            arguments = {"from_region": fault["region"], "to_region": to_region, "mode": "unplanned"}
        else:
            arguments = {"away_from": fault["target"]}
        result = self.child("recover", recovery, arguments)
        if result is not None and result.status == "canceled":  # Ctrl-C: the runner stopped the child and returned
            self.outcome["interrupted"] = f"{recovery} canceled (SIGINT)"
        return bool(result is not None and result.succeeded)

    def choose_target_region(self, before: Hypothesis, lab_before: Dict[str, Any]) -> bool:
        """kind=region: the region the recovery moves the service to, chosen from the steady-state readiness run
        (drill_judge.region_target: the lab's next region that is reachable, has the capacity and may hold the
        data). Recorded in facts["target_region"]; False when no region can take the service."""
        lost = str(lab_before.get("pg_region") or "")
        target, ruled_out = drill_judge.region_target(lost, lab_drill.regions(self.cfg), before.checks)
        self.facts["target_region"] = {"region": target, "lost": lost, "ruled_out": ruled_out}
        return target is not None

    def no_target_region(self, before: Hypothesis) -> Hypothesis:
        """The steady state, deviating: no region can take the service (the reasons from readiness's checks)."""
        ruled_out = self.facts["target_region"]["ruled_out"]
        message = "no region can take the service, so nothing was injected: " + ("; ".join(
            f"region {region}: {', '.join(failed)}" for region, failed in ruled_out.items()) or "the lab has no other "
            "region")
        return self.deviated_before(before, "target region", message)

    def deviated_before(self, before: Hypothesis, name: str, message: str) -> Hypothesis:
        """The steady state before, held by readiness, made a deviation by the drill's own check `name` (no region to
        fail over to, none to partition): recorded as readiness's deviations are, so nothing is injected."""
        deviations = before.deviations + [{"name": name, "measured": None, "threshold": None, "detail": message}]
        self.facts["steady_state_before"].update(holds=False, message=message, deviations=deviations)
        self.say(f"steady state before: {message}")
        return Hypothesis(False, deviations, before.checked, message, before.checks)

    # ------------------------------------------------------------ partition

    def choose_partition_region(self, lab_before: Dict[str, Any]) -> bool:
        """kind=partition: the lab's last region that serves neither primary (drill_judge.partition_target); False
        when there is none (the serving region is never partitioned: that needs fencing, docs/drill.md)."""
        region = drill_judge.partition_target(
            lab_drill.regions(self.cfg), lab_before.get("pg_region"), lab_before.get("redis_region"),
            [n.region for n in self.cfg.nodes], [n.region for n in self.cfg.redis_nodes])
        self.facts["partition"] = {"region": region, "mode": self.partition_mode(),
                                   "latency_ms": float(self.values.get("latency_ms") or 0)}
        return region is not None

    def no_partition_region(self, before: Hypothesis) -> Hypothesis:
        message = "no standby region to partition (one that serves neither primary, with a standby and a replica), " \
                  "so nothing was injected"
        return self.deviated_before(before, "partition region", message)

    def partition_mode(self) -> str:
        return "latency" if float(self.values.get("latency_ms") or 0) > 0 else "cut"

    def partition_links(self, lab_before: Dict[str, Any]) -> Dict[str, Any]:
        """The region's standby and replica re-pointed through a proxy each (started here, in the drill's process),
        recorded in the pending record before either changes: a drill killed from here on leaves their original
        conninfo and the primaries behind, and the next drill's restore points them directly again."""
        evidence = self.facts["partition"]
        links = lab_partition.links_of(self.cfg, str(evidence["region"]), lab_before)
        self.proxies = lab_partition.open_links(links)
        links.update(pg_proxy_port=self.proxies["postgres"].port, redis_proxy_port=self.proxies["redis"].port)
        evidence.update(standby=links["standby"], replica=links["replica"])
        self.record["partition"] = links
        self.write_pending(self.record)
        done = lab_partition.through(self.cfg, links, self.proxies)
        evidence["before"] = lab_partition.snapshot(self.cfg, links)  # after the re-point's own partial resync
        return dict(links, **done)

    def partition_fault(self) -> Dict[str, Any]:
        """cut: both proxies drop their connections and hold new ones unanswered; latency: every chunk either way
        delayed latency_ms. The region's name is the target."""
        evidence = self.facts["partition"]
        latency = float(self.values.get("latency_ms") or 0) / 1000.0
        sent_at = time.monotonic()
        for proxy in self.proxies.values():
            if latency > 0:
                proxy.delay = latency
            else:
                proxy.cut()
        return {"target": evidence["region"], "region": evidence["region"], "mode": evidence["mode"],
                "latency_ms": round(latency * 1000, 3), "partition_seconds": self.partition_seconds(),
                "links": {"postgres": f"{evidence['standby']} via {self.proxies['postgres'].address}",
                          "redis": f"{evidence['replica']} via {self.proxies['redis'].address}"},
                "pid": None, "signal": None, "sent_at": sent_at}

    def partition_seconds(self) -> float:
        return float(self.values.get("partition_seconds") or 5.0)

    def recover_partition(self, fault: Dict[str, Any]) -> bool:
        """No recovery runbook: readiness runs during the fault (its replication checks must fail for a cut; for
        latency, the lag it saw is reported), the fault holds partition_seconds from its moment, then the drill heals
        the proxies and waits (recovery_timeout) until the standby has replayed the primary's LSN of the heal and
        the replica has its offset; whether that needed a rebuild is judged (drill_judge.partition_criteria)."""
        evidence = self.facts["partition"]
        if evidence.get("mode") == "latency":  # what the delay does to one write's way to the standby
            evidence["probe_seconds"] = self.step("the standby's replication delay under the latency (one write)",
                                                  lambda: {"seconds": lab_partition.replication_delay(
                                                      self.cfg, self.record["partition"], 10.0)})
        result = self.child("during", "readiness", {"require_ready": False}, lock_owner=False)
        checks = ((result.summary if result is not None else None) or {}).get("details", {}).get("checks") or []
        names = (f"pg_standbys region {evidence['region']}", f"pg_replay_lag {evidence['standby']}",
                 f"redis_link {evidence['replica']}", f"redis_offset {evidence['replica']}")
        evidence["during"] = [c for c in checks if isinstance(c, dict) and c.get("name") in names]
        evidence["during_run_id"] = result.run_id if result is not None else None
        until = float(self.outcome.get("fault_at") or time.monotonic()) + self.partition_seconds()
        if result is not None and result.status == "canceled":  # Ctrl-C: the runner stopped readiness and returned
            self.outcome["interrupted"] = "readiness during the partition canceled (SIGINT)"
            until = time.monotonic()  # heal now; the restore follows

        def hold() -> Dict[str, Any]:
            while time.monotonic() < until:  # the fault's own length (a parameter), not a wait for a condition
                time.sleep(min(0.05, max(0.0, until - time.monotonic())))
            return {"held_seconds": round(time.monotonic() - (until - self.partition_seconds()), 3)}

        self.step(f"partition held {self.partition_seconds():g} s", hold)
        before = evidence.get("before") or {}
        healed = self.step("heal the links; the standby and the replica catch up", lambda: lab_partition.heal_and_wait(
            self.cfg, self.record["partition"], self.proxies, before, float(self.values.get("recovery_timeout")
                                                                             or 120.0)))
        evidence["healed"] = healed or {"caught_up": False, "detail": "the heal failed (see its step)"}
        return healed is not None

    def recover_backup(self, fault: Dict[str, Any]) -> bool:
        """A corrupt backup: readiness's backup check must find it and redis_restore's verification refuse it (both
        in this process, touching no server); the recovery is a fresh verified backup (redis_backup), after which
        the check must pass again. The three are rows of the verdict table (drill_judge.backup_fault_criteria)."""
        folder, backup_id = fault["backup"]["store"], fault["target"]
        evidence: Dict[str, Any] = {}
        self.facts["backup_fault"] = evidence
        evidence["detected"] = self.step("detect: readiness's redis_backup_age on the corrupt backup",
                                         lambda: backup_fault.readiness_check(self.view, folder))

        def refusal() -> Dict[str, Any]:
            message = backup_fault.restore_refusal(folder, backup_id, self.view.all_vars.get("redis_backup_hmac_key"))
            return {"backup": backup_id, "refused": message is not None, "message": message}

        evidence["restore"] = self.step("redis_restore's verification of the corrupt backup", refusal)
        result = self.child("recover", "redis_backup", {})
        if result is not None and result.status == "canceled":
            self.outcome["interrupted"] = "redis_backup canceled (SIGINT)"
        evidence["after"] = self.step("readiness's redis_backup_age after the recovery",
                                      lambda: backup_fault.readiness_check(self.view, folder))
        return bool(result is not None and result.succeeded)

    # ------------------------------------------------------------ restore

    def restore_and_check(self, outcome: Dict[str, Any]) -> Optional[bool]:
        """Restore what this drill did (nothing when nothing was injected), then check the steady state again.
        None: nothing was injected and nothing had to be restored (the `before` check stands)."""
        pending = self.load_pending()
        if pending is None and not outcome.get("injected"):
            return None
        try:
            if pending is not None:
                self.step("restore the steady state", lambda: self.restore(pending), data={"pending": pending})
            after = self.steady_state("after")
            for attempt in range(2, STEADY_AFTER_ATTEMPTS + 1):  # a just-rejoined standby may still be catching up
                if after.holds:
                    break
                after = self.steady_state(f"after-{attempt}")
        except BaseException:  # noqa: BLE001 - a second Ctrl-C during the restore: the pending record stays
            log.exception("drill %s: the restore did not finish; the next drill restores first", self.run_id)
            return False
        outcome["after"] = after
        if after.holds and not self.facts.get("restore_problems"):
            self.pending_file().unlink(missing_ok=True)
            return True
        return False

    def restore(self, pending: Dict[str, Any]) -> Dict[str, Any]:
        """Put the lab back as `pending.before` recorded it, as far as a steady state needs: what was killed runs
        again (a former primary as a standby: database_rejoin), DNS points where it pointed."""
        before = pending.get("before") or {}
        fault = pending.get("fault") or {}
        done: Dict[str, Any] = {}
        problems: List[str] = []
        # A frozen knotd first (SIGCONT, read from the processes), then one killed started again and both servers
        # waited for at the same serial: a dns_server drill's fault, or whatever a torn record may have left.
        done["resumed knotd (SIGCONT)"] = resumed_dns = lab_drill.thaw_dns(self.cfg)
        if lab_drill.has_dns(self.cfg) and (resumed_dns or self.kind_of(pending) in ("dns_server", "unknown")):
            done["dns"] = lab_drill.restart_dns(self.cfg)
        if self.kind_of(pending) == "redis_backup" and fault.get("backup"):  # the backup's original bytes first
            try:
                done["backup put back"] = backup_fault.put_back(fault)
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                problems.append(f"putting backup {fault.get('target')} back failed: {exc}")
        # A frozen process first: SIGCONT, whatever the record says (a drill killed right after its SIGSTOP may not
        # have recorded the fault), and before anything else asks the lab's Redis nodes (a stopped one never answers).
        done["resumed (SIGCONT)"] = resumed = lab_drill.thaw(self.cfg)
        problems += self.demote_resumed(resumed)
        if self.kind_of(pending) in ("partition", "unknown"):  # links through a proxy: directly again, then no proxy
            try:
                done["links direct"] = lab_partition.direct(self.cfg, pending.get("partition"))
            except Exception as exc:  # noqa: BLE001 - said, and the restore fails (the record stays)
                problems.append(f"re-pointing the partitioned links directly failed: {exc}")
            for proxy in self.proxies.values():
                proxy.close()
            done["proxies stopped"] = sorted(self.proxies)
        regions = {r for r in (fault.get("region"), before.get("pg_region"), before.get("redis_region")) if r}
        for region in sorted(regions):
            done[f"restart region {region}"] = lab_drill.restart_region(self.cfg, region)
        for node in lab_drill.pg_stopped(self.cfg):
            result = self.child(f"rejoin-{node}", "database_rejoin", {"node": node})
            if result is None or not result.succeeded:
                problems.append(f"database_rejoin of {node} failed")
        failed_back = self.fail_back(pending)
        problems += failed_back or self.redis_back(pending)
        app_region = pending.get("app_region")
        if self.kind_of(pending) == "app_instance" and app_region and self.serving_region(self.public_name()) \
                != app_region:
            result = self.child("dns-back", "dns_cutover", {"region": app_region})
            if result is None or not result.succeeded:
                problems.append(f"dns_cutover back to region {app_region} failed")
        if problems:
            self.facts.setdefault("restore_problems", []).extend(problems)
            raise RuntimeError("; ".join(problems))
        return done

    def fail_back(self, pending: Dict[str, Any]) -> List[str]:
        """A region drill's service moved away from the lost region: once that region runs again, failback moves it
        back (it rejoins the region's database if still needed, waits for it to catch up, moves Redis and DNS)."""
        home = (pending.get("before") or {}).get("pg_region")
        if self.kind_of(pending) != "region" or not home:
            return []
        serving = lab_drill.state(self.cfg).get("pg_region")
        if serving in (None, home):
            return []  # nothing moved (the recovery never promoted), or back already
        result = self.child("failback", "failback", {"from_region": serving, "to_region": home, **FAILBACK_GRACE})
        if result is None or not result.succeeded:
            return [f"failback from region {serving} to region {home} failed"]
        return []

    def redis_back(self, pending: Dict[str, Any]) -> List[str]:
        """A region drill killed while its recovery was moving the service, after regional_failover moved Redis and
        before it promoted the database (Redis goes first): the database primary is back in the recorded region once
        the region restarts (nothing replaced it), so failback has nothing to move, but Redis is still served from
        the other region. Redis is handed back to the node that was primary (redis_failover, under the drill's lock)."""
        before = pending.get("before") or {}
        home, node = before.get("pg_region"), before.get("redis_primary")
        if self.kind_of(pending) != "region" or not home or not node:
            return []
        now = lab_drill.state(self.cfg)
        if now.get("pg_region") != home or now.get("redis_primary") in (None, node):
            return []  # the database is not home (failback's to move), or Redis never moved
        result = self.child("redis-back", "redis_failover", {"away_from": now["redis_primary"], "candidate": node})
        if result is None or not result.succeeded:
            return [f"redis_failover from {now['redis_primary']} back to {node} failed"]
        return []

    def demote_resumed(self, resumed: List[str]) -> List[str]:
        """A resumed Redis primary that another node replaced meanwhile takes writes beside it: made a replica of the
        node the application's Redis config names, as redis_failover does for a returning old primary (away_from).
        A resumed primary nobody replaced (the recovery never ran) is the only primary: it stays one."""
        primaries = lab_drill.redis_primaries(self.cfg) if resumed else []
        problems = []
        for node in resumed:
            if node in primaries and len(primaries) > 1:
                result = self.child(f"demote-{node}", "redis_failover", {"away_from": node})
                if result is None or not result.succeeded:
                    problems.append(f"redis_failover making the resumed {node} a replica failed")
        return problems

    @staticmethod
    def kind_of(pending: Dict[str, Any]) -> str:
        return str(pending.get("kind") or "")

    def pending_file(self) -> Path:
        return pending_path(self.inventory)

    def load_pending(self) -> Optional[Dict[str, Any]]:
        path = self.pending_file()
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # a torn record still means "restore": the lab's state is read again anyway
            return {"kind": "unknown", "before": {}, "fault": None, "torn": str(path)}

    def write_pending(self, record: Dict[str, Any]) -> None:
        path = self.pending_file()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        paths.write_private_atomic(path, json.dumps(record, indent=1, sort_keys=True))

    # ------------------------------------------------------------ steady state, public name

    def steady_state(self, when: str) -> Hypothesis:
        result = self.child(f"steady-{when}", "readiness", {"require_ready": False}, lock_owner=False)
        verdict = drill_judge.hypothesis(result.summary if result is not None else None)
        self.facts[f"steady_state_{when.split('-')[0]}"] = {"holds": verdict.holds, "message": verdict.message,
                                              "deviations": verdict.deviations, "checked": verdict.checked,
                                              "run_id": result.run_id if result is not None else None,
                                              "attempt": int(when.split("-")[1]) if "-" in when else 1}
        self.say(f"steady state {when}: {verdict.message}")
        return verdict

    def public_name(self) -> PublicName:
        data = self.view.all_vars
        servers = [(str(v.get("dns_host") or "127.0.0.1"), int(v.get("dns_port") or 53))
                   for v in self.view.hosts.get("dns", {}).values()]
        apps = self.view.hosts.get("app", {})
        records = str(data.get("dns_records") or "").split(",")
        zone = str(data.get("dns_zone") or "").rstrip(".")
        if servers and zone and records[0] and apps:
            port = int(next(iter(apps.values())).get("app_port") or 0)
            return PublicName(name=f"{records[0].strip()}.{zone}.", servers=servers, port=port)
        primary_region = (lab_drill.state(self.cfg) or {}).get("pg_region")
        url = next((v.get("app_url") for v in apps.values() if v.get("dr_region") == primary_region), None)
        if not url:
            raise ParameterError("inventory", "the drill's client needs the public name (dns group, dns_zone, "
                                              "dns_records) or an application (app group with app_url): found "
                                              "neither")
        return PublicName(url=str(url))

    def serving_region(self, public: PublicName) -> Optional[str]:
        if public.url:
            return next((str(v.get("dr_region")) for v in self.view.hosts.get("app", {}).values()
                         if v.get("app_url") == public.url), None)
        try:
            address = public.base_url().split("//", 1)[1].rsplit(":", 1)[0]
        except OSError:
            return None
        return lab_drill.serving_app_region(self.cfg, address)

    # ------------------------------------------------------------ steps and child runs

    def step(self, title: str, action: Callable[[], Any], data: Optional[Dict[str, Any]] = None) -> Any:
        started_at, started = _now_iso(), time.monotonic()
        failed, message, value = False, "", None
        try:
            value = action()
        except Exception as exc:  # the drill goes on to its restore and verdict; the step says what failed
            failed, message = True, f"{type(exc).__name__}: {exc}"
        self.steps.append(Step(task=title, host="localhost", action="dr_drill", start=started_at, end=_now_iso(),
                               duration=round(time.monotonic() - started, 3), changed=not failed, failed=failed,
                               message=message, data=dict(data or {}, result=value if isinstance(value, dict)
                                                          else None)))
        self.say(f"{title}: {'FAILED ' + message if failed else 'done'}")
        return None if failed else value

    def child(self, step_id: str, runbook: str, arguments: Dict[str, Any], lock_owner: bool = True
              ) -> Optional[RunResult]:
        from erlmcp_dr import runner
        from erlmcp_dr.errors import RunbookError, RunBusy

        child_id = f"{self.run_id}.{step_id}"
        started_at, started = _now_iso(), time.monotonic()
        result: Optional[RunResult] = None
        message = ""
        try:
            if lock_owner and catalog.load(runbook, self.playbooks_dir).workflow is not None:
                # A composed runbook (regional_failover, failback) runs here, under the drill's lock: it finds
                # every key held by the drill's run id (compose/move_lock.OwnersLock) and hands that id on.
                result = compose_run.run(runbook, inventory=self.inventory, run_id=child_id, operator=self.operator,
                                         extravars={**arguments, LOCK_OWNER_VAR: self.run_id},
                                         playbooks_dir=self.playbooks_dir)
            else:
                config = runner.RunConfig.prepare(runbook, inventory=self.inventory, extravars=arguments,
                                                  run_id=child_id, operator=self.operator,
                                                  playbooks_dir=self.playbooks_dir)
                if lock_owner:  # not a parameter of the child: its run_lock finds the drill's record under this id
                    config.extravars[LOCK_OWNER_VAR] = self.run_id
                result = runner.run(config=config)
            message = "" if result.succeeded else (result.error or f"{runbook} failed")
        except RunBusy as exc:
            message = f"{runbook} was refused: {exc}"
        except RunbookError as exc:  # e.g. a composed child's parameters or store refused before it changed anything
            message = f"{runbook} was not run: {exc}"
        self.children[step_id] = result  # type: ignore[assignment]
        failed = result is None or not result.succeeded
        self.steps.append(Step(task=f"{step_id}: {runbook}", host="localhost", action=runbook, start=started_at,
                               end=_now_iso(), duration=round(time.monotonic() - started, 3),
                               changed=runbook != "readiness", failed=failed and runbook != "readiness",
                               message=" ".join(message.split())[:600], data={"child_run_id": child_id,
                                                                              "arguments": arguments}))
        self.say(f"{step_id} ({runbook} run {child_id}) {'FAILED' if failed else 'ok'}")
        return result

    # ------------------------------------------------------------ measure, verdict, records

    def measure(self, outcome: Dict[str, Any]) -> Dict[str, Any]:
        attempts: List[Attempt] = outcome.get("attempts") or []
        fault_at = outcome.get("fault_at")
        if not outcome.get("injected") or fault_at is None:
            return {"table": [], "measured": None}
        resolution = float(self.values.get("client_interval") or 0.02)
        seen = drill_judge.outage(attempts, fault_at, resolution)
        try:
            ids, keys = present(attempts, self.primary_params("postgres"), self.primary_params("redis"))
            loss = drill_judge.data_loss(attempts, ids, keys, resolution)
        except Exception as exc:  # the data could not be read back: RPO unknown, so its criterion fails
            log.warning("drill %s: could not read the acknowledged writes back: %s", self.run_id, exc)
            loss = drill_judge.DataLoss(0, [], 10**9, float("inf"), 0.0)
        errors = drill_judge.steady_error_rate(attempts, fault_at, seen.first_success)
        recovered_at = outcome.get("recovered_at")
        recovery = None if recovered_at is None or not outcome.get("recovery_ok") else round(
            max(recovered_at, seen.first_success or recovered_at) - fault_at, 3)
        table = drill_judge.criteria(self.kind, self.targets, seen, loss, errors, recovery)
        if self.kind == "redis_backup":
            table += drill_judge.backup_fault_criteria(self.facts.get("backup_fault"),
                                                       (outcome.get("fault") or {}).get("target"))
        if self.kind == "partition":
            table += drill_judge.partition_criteria(self.facts.get("partition"))
        origin = float(outcome.get("origin") or 0.0)
        measured = {
            "rto_seconds": seen.rto_seconds, "client_outage_seconds": seen.client_outage_seconds,
            "resolution_seconds": seen.resolution_seconds, "client_interval": resolution,
            "failed_attempts": seen.failed_attempts,
            "rpo_seconds": loss.rpo_seconds if loss.rpo_seconds != float("inf") else None,
            "acknowledged_writes": loss.acknowledged, "lost_writes": loss.lost_ids[:100],
            "lost_writes_count": len(loss.lost_ids), "lost_span_seconds": loss.lost_span_seconds,
            "sessions_lost": loss.sessions_lost, "errors": errors, "recovery_seconds": recovery,
            "fault_at": round(fault_at - origin, 3),
            "first_failure": _rel(seen.first_failure, origin), "last_failure": _rel(seen.last_failure, origin),
            "first_success": _rel(seen.first_success, origin), "recovered_at": _rel(recovered_at, origin),
            "timeline": drill_judge.timeline(attempts, origin, bucket=0.25),
            "resolutions_after_fault": _resolutions(outcome.get("resolutions") or [], fault_at, origin),
        }
        return {"table": table, "measured": measured}

    def primary_params(self, group: str) -> Optional[Dict[str, Any]]:
        state = lab_drill.state(self.cfg)
        name = state.get("pg_primary" if group == "postgres" else "redis_primary")
        values = self.view.hosts.get(group, {}).get(name or "")
        if not values:
            return None
        if group == "postgres":
            return {"host": values.get("pg_host") or "127.0.0.1", "port": int(values["pg_port"]),
                    "user": values.get("pg_login_user"), "password": values.get("pg_login_password"),
                    "dbname": values.get("pg_login_db") or "postgres", "connect_timeout": 3}
        return {"host": values.get("redis_host") or "127.0.0.1", "port": int(values["redis_port"]),
                "password": values.get("redis_password") or self.view.all_vars.get("redis_password"),
                "socket_timeout": 3}

    def finish(self, outcome: Dict[str, Any], keys: List[str], started_at: str, elapsed: float) -> RunResult:
        measured = self.measure(outcome)
        before = outcome.get("before") or Hypothesis(False, [], [], "the steady state was not checked")
        judged = drill_judge.verdict(before, bool(outcome.get("injected")), outcome.get("recovery_ok"),
                                     measured["table"], outcome.get("restored"), outcome.get("interrupted"))
        finished_at = _now_iso()
        # The history's time as docs/readiness.md shows it (+00:00: parsed by Python 3.8's fromisoformat too).
        history = {"kind": self.kind, "verdict": judged["verdict"],
                   "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                   "run_id": self.run_id}
        try:
            _append_line(history_path(self.view), history)
        except OSError as exc:
            log.error("drill %s: could not append to the drill history: %s", self.run_id, exc)
        passed = judged["verdict"] == drill_judge.PASSED
        details = dict(self.facts, verdict=judged["verdict"], verdict_reason=judged["reason"],
                       criteria=[vars(c) for c in measured["table"]], measured=measured["measured"],
                       fault=outcome.get("fault"), recovery_runbook=RECOVERY[self.kind],
                       recovery_ok=outcome.get("recovery_ok"), restored=outcome.get("restored"),
                       public_name=outcome.get("public"), interrupted=outcome.get("interrupted"),
                       lab_before=outcome.get("lab_before"),
                       history_file=str(history_path(self.view)), locks=sorted(keys))
        summary_module = inventory_module._module("_common.summary")
        m = measured["measured"] or {}
        envelope = summary_module.envelope(
            RUNBOOK, action="drill", reason=judged["reason"], completed=passed,
            did=[s.task for s in self.steps if s.changed and not s.failed],
            end={"ok": bool(outcome.get("restored") in (True, None)), "problems": self.facts.get(
                "restore_problems", [])}, lock_key=", ".join(sorted(keys)), details=details,
            recovery=summary_module.recovery_point(None, m.get("rpo_seconds"),
                                                   self.targets["rpo_seconds"]["target"]) if m else None)
        result = RunResult(
            run_id=self.run_id, runbook=RUNBOOK, status="successful" if passed else "failed", rc=0 if passed else 1,
            check=False, started_at=started_at, ended_at=finished_at, duration_seconds=round(elapsed, 3),
            inventory=str(self.inventory), extravars=params.redact(self.runbook, self.values), steps=self.steps,
            facts={"summary": envelope}, run_dir=str(self.run_dir), title=self.runbook.title,
            rto_target_seconds=self.runbook.rto_seconds, rpo_target_seconds=self.runbook.rpo_seconds,
            error="" if passed else judged["reason"], point_of_no_return=None, operator=self.operator,
            os_user=audit.os_user())
        end = audit.append_quietly(audit.run_end(
            self.run_id, RUNBOOK, operator=self.operator, status=result.status, rc=result.rc, check=False,
            duration_seconds=result.duration_seconds, failing_step=None if passed else judged["verdict"],
            targets=[str((outcome.get("fault") or {}).get("target") or "")] if outcome.get("fault") else []))
        result.audit_head = audit.anchor_of(end)
        result.save(self.run_dir)
        _write_attempts(self.run_dir, outcome.get("attempts") or [], float(outcome.get("origin") or 0.0))
        for name, render in ((REPORT_FILE, lambda: report.render_markdown(result)), ("report.html", lambda: _html(
                result))):
            try:
                paths.write_private_atomic(self.run_dir / name, render())
            except Exception:  # the result is written; a report that cannot be drawn is not a failed drill
                log.exception("could not write %s of drill %s", name, self.run_id)
        return result


def _html(result: RunResult) -> str:
    from erlmcp_dr.reporting import html_report

    return html_report.render(result)


def _write_attempts(run_dir: Path, attempts: List[Attempt], origin: float) -> None:
    """Every attempt of the client (times from the client's start): the raw evidence behind RTO and RPO."""
    lines = [json.dumps(dict(a.to_dict(), started=round(a.started - origin, 4), ended=round(a.ended - origin, 4)))
             for a in attempts]
    paths.write_private_atomic(run_dir / "client.jsonl", "\n".join(lines) + ("\n" if lines else ""))


def _append_line(path: Path, record: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


def _resolutions(resolutions: List[Dict[str, Any]], fault_at: float, origin: float, first: int = 50
                 ) -> List[Dict[str, Any]]:
    """The client's resolutions of the public name after the fault (the first `first`): when (from the client's
    start), how long, which server answered (None: none did), and what the servers asked before it said."""
    after = [r for r in resolutions if r["started"] >= fault_at][:first]
    return [{"at": round(r["started"] - origin, 3), "seconds": round(r["ended"] - r["started"], 4),
             "answered_by": r["server"], "failed": r["failed"]} for r in after]


def _rel(value: Optional[float], origin: float) -> Optional[float]:
    return None if value is None else round(value - origin, 3)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
