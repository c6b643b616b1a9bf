"""A drill as Chaos Toolkit reads it (docs/drill.md, "Chaos Toolkit"): the experiment (steady-state hypothesis,
method, rollbacks) and the journal of its run, built from the drill's result.json. Pure: no chaostoolkit import,
no I/O; `runbook drill export <run id>` writes the two files. The structure we emit is published as a JSON Schema
(chaostoolkit.schema.json beside this file), checked by tests/unit/test_drill_chaos.py.

Every activity is a `process` provider running our own CLI (what a Chaos Toolkit user would run to replay it); the
journal's `run` entries carry what the drill measured as their `output`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

SCHEMA_FILE = Path(__file__).with_name("chaostoolkit.schema.json")
RECOVERY_STEP = "recover"


def schema() -> Dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def _process(arguments: str, timeout: Optional[float] = None) -> Dict[str, Any]:
    provider: Dict[str, Any] = {"type": "process", "path": "runbook", "arguments": arguments}
    if timeout is not None:
        provider["timeout"] = timeout
    return provider


# What the restore (the rollbacks) does, per kind where it differs from the default.
ROLLBACK_NAMES = {"default": "restore the steady state (restart, database_rejoin, DNS back)",
                  "dns_server": "restore the steady state (SIGCONT or restart of the Knot server, both at one serial)",
                  "redis_backup": "restore: the backup's original bytes put back (its sha256 checked), then the "
                                  "steady state",
                  "partition": "restore: the region's standby and replica pointed directly at their primaries again, "
                               "the drill's proxies stopped, then the steady state"}


def _inject_name(kind: str, fault: Mapping[str, Any]) -> str:
    target = f" ({fault.get('target')})" if fault.get("target") else ""
    if kind == "redis_backup":  # no signal: bytes flipped inside the newest verified backup's RDB
        return f"inject: corrupt the newest verified Redis backup{target}"
    if kind == "partition":  # no signal: the region's replication links cut, or slowed, through the drill's proxies
        how = f"{fault.get('latency_ms'):g} ms added to" if fault.get("mode") == "latency" else "cut"
        return f"inject: the replication links of region {fault.get('target')} {how} for " \
            f"{fault.get('partition_seconds')} s (TCP proxies)"
    return f"inject: {'SIGSTOP' if fault.get('signal') == 'SIGSTOP' else 'kill -9'} of the {kind.replace('_', ' ')}" \
        + target


def experiment(result: Mapping[str, Any]) -> Dict[str, Any]:
    """The Chaos Toolkit experiment a drill's result.json describes."""
    summary = (result.get("facts") or {}).get("summary") or {}
    details = summary.get("details") or {}
    kind = str(details.get("kind") or "unknown")
    inventory = str(result.get("inventory") or "")
    recovery = str(details.get("recovery_runbook") or "")
    fault = details.get("fault") or {}
    probes = [{
        "type": "probe", "name": "steady-state: readiness replication, reachability and DNS checks",
        "tolerance": 0,  # the process's exit code: 0 ready (1 warnings is accepted by the drill itself)
        "provider": _process(f"readiness -i {inventory} --json", 60),
    }]
    for criterion in details.get("criteria") or []:
        probes.append({"type": "probe", "name": f"criterion {criterion.get('name')} {criterion.get('target')}",
                       "tolerance": True, "provider": _process(f"report {result.get('run_id')} --json", 30)})
    method: List[Dict[str, Any]] = [
        {"type": "action", "name": _inject_name(kind, fault),
         "provider": _process(f"run dr_drill -i {inventory} -e kind={kind} --yes")},
    ]
    if recovery:
        method.append({"type": "action", "name": f"{RECOVERY_STEP}: {recovery}",
                       "provider": _process(f"run {recovery} -i {inventory} --yes"), "pauses": {"after": 0}})
    # No recovery runbook (dns_server): nothing is run; the next authoritative server answers the client, which the
    # journal's run shows (the drill's step that waits for the client to resolve the name again). Nor for a partition:
    # the drill heals its proxies and the journal's run shows the links catching up.
    rollbacks = [{"type": "action", "name": ROLLBACK_NAMES.get(kind, ROLLBACK_NAMES["default"]),
                  "provider": _process(f"run dr_drill -i {inventory} -e kind={kind} --yes")}]
    targets = details.get("targets") or {}
    return {
        "version": "1.0.0",
        "title": f"erlmcp.dr drill: {kind} (run {result.get('run_id')})",
        "description": "Exported by erlmcp.dr (runbook drill export): a DR drill that injects a fault on the lab, "
                       + ("runs the recovery runbook" if recovery else "runs no recovery runbook (the links heal "
                          "and catch up)" if kind == "partition" else "runs no recovery runbook (the next "
                          "authoritative DNS server is the recovery)")
                       + " and measures RTO and RPO with an independent client.",
        "tags": ["erlmcp.dr", "dr_drill", kind],
        "configuration": {"inventory": inventory, "kind": kind,
                          "targets": {k: v.get("target") for k, v in targets.items() if isinstance(v, Mapping)}},
        "steady-state-hypothesis": {"title": "the service is in its steady state", "probes": probes},
        "method": method,
        "rollbacks": rollbacks,
        "runtime": {"rollbacks": {"strategy": "always"}},  # ours are always played (chaostoolkit-lib 1.11+)
    }


def journal(result: Mapping[str, Any]) -> Dict[str, Any]:
    """The Chaos Toolkit journal of the drill's run: status, deviated, steady states before/after, run, rollbacks."""
    summary = (result.get("facts") or {}).get("summary") or {}
    details = summary.get("details") or {}
    steps = result.get("steps") or []
    exp = experiment(result)
    before = details.get("steady_state_before") or {}
    after = details.get("steady_state_after")
    verdict = str(details.get("verdict") or "")
    run: List[Dict[str, Any]] = []
    rollbacks: List[Dict[str, Any]] = []
    for step in steps:
        task = str(step.get("task") or "")
        entry = {"activity": {"type": "action", "name": task, "provider": _process(str(step.get("action") or ""))},
                 "status": "failed" if step.get("failed") else "succeeded",
                 "start": step.get("start"), "end": step.get("end"), "duration": step.get("duration") or 0.0,
                 "output": (step.get("data") or {}).get("child_run_id") or (step.get("data") or {}).get("result")}
        if step.get("failed"):
            entry["exception"] = [str(step.get("message") or "failed")]
        (rollbacks if task.startswith(("restore", "rejoin", "dns-back")) else run).append(entry)
    run.append({"activity": {"type": "probe", "name": "measure: the client's RTO, RPO, errors, sessions lost",
                             "provider": _process(f"report {result.get('run_id')} --json")},
                "status": "succeeded", "start": result.get("ended_at"), "end": result.get("ended_at"),
                "duration": 0.0, "output": {"measured": _measured(details), "criteria": details.get("criteria")}})
    deviated = verdict != "passed"
    status = "completed" if verdict in ("passed", "failed", "deviated") else "failed"
    return {
        "chaoslib-version": None,
        "platform": "erlmcp.dr",
        "node": None,
        "experiment": exp,
        "start": result.get("started_at"),
        "end": result.get("ended_at"),
        "duration": result.get("duration_seconds") or 0.0,
        "status": status,
        "deviated": deviated,
        "steady_states": {
            "before": _steady(before),
            "after": _steady(after) if isinstance(after, Mapping) else None,
            "during": [],
        },
        "run": run,
        "rollbacks": rollbacks,
        "erlmcp_dr": {"run_id": result.get("run_id"), "verdict": verdict, "reason": details.get("verdict_reason"),
                      "restored": details.get("restored")},
    }


def _steady(state: Mapping[str, Any]) -> Dict[str, Any]:
    return {"steady_state_met": bool(state.get("holds")),
            "probes": [{"activity": {"type": "probe", "name": "readiness", "tolerance": 0,
                                     "provider": _process("readiness --json")},
                        "status": "succeeded" if state.get("holds") else "failed",
                        "output": {"run_id": state.get("run_id"), "message": state.get("message"),
                                   "deviations": state.get("deviations")},
                        "tolerance_met": bool(state.get("holds"))}]}


def _measured(details: Mapping[str, Any]) -> Dict[str, Any]:
    measured = dict(details.get("measured") or {})
    measured.pop("timeline", None)
    return measured
