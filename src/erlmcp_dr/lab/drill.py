"""The drill's faults and restores on the lab (dr_drill, docs/drill.md): kill -9, by recorded and verified PID, of
the PostgreSQL primary, the Redis primary, an application instance, the Knot DNS server the client asks first, or
every one of them but DNS in the serving region; SIGSTOP (a frozen process: its port still accepts connections,
nothing answers) of the Redis primary or of that Knot server; and the lab side of putting things back.

A fault is only ever injected on a lab: an inventory whose database data folders sit in a lab folder (one with
lab.json, lab_ports.LAB_RECORD). `lab_of(view)` finds it; None means "not a lab".
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import ports as lab_ports
from erlmcp_dr.lab import regions as lab_regions
from erlmcp_dr.lab.config import LabConfig, alive, process_state

KILL_TIMEOUT = 30.0
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGSTOP": signal.SIGSTOP}
# The kinds a SIGSTOP drill is built for: a frozen redis-server is one process, made a replica once it answers again
# (redis_failover away_from). A frozen PostgreSQL primary is not: its fence (a fast shutdown) waits on the stopped
# postmaster, and resumed it would be a second writer until rewound; not built yet. A frozen knotd (dns_server) is
# one process too: resumed, it serves the zone it had (nothing changes the zone during the drill).
FREEZABLE = ("redis_primary", "dns_server")
STOPPED = "T"  # /proc state of a process stopped by a signal


def lab_of(view: Any) -> Optional[LabConfig]:
    """The lab the inventory describes (every database data folder under one lab root), else None."""
    roots = set()
    for values in view.hosts.get("postgres", {}).values():
        data_dir = values.get("pg_data_dir")
        if not data_dir:
            return None
        roots.add(Path(str(data_dir)).resolve().parents[2])  # <root>/pg/<node>/data
    if len(roots) != 1:
        return None
    root = roots.pop()
    base = lab_ports.recorded_port_base(root)
    if base is None:
        return None
    cfg = LabConfig(root=root, port_base=base)
    ports = {int(v.get("pg_port") or 0) for v in view.hosts.get("postgres", {}).values()}
    return cfg if ports == {node.port for node in cfg.nodes} else None


def state(cfg: LabConfig) -> Dict[str, Any]:
    """What the lab serves from now: the PostgreSQL primary, the Redis primary (names and regions)."""
    primary = lab._running_primary(cfg)
    redis_primary = lab_regions._other_master(cfg, _NoNode())  # type: ignore[arg-type]
    return {"pg_primary": primary.name if primary else None, "pg_region": primary.region if primary else None,
            "redis_primary": redis_primary.name if redis_primary else None,
            "redis_region": redis_primary.region if redis_primary else None}


class _NoNode:
    """A node no lab node is: _other_master(cfg, _NoNode()) looks at every Redis node."""


def inject(cfg: LabConfig, kind: str, before: Dict[str, Any], app_region: Optional[str],
           signal_name: str = "SIGKILL") -> Dict[str, Any]:
    """kill -9 (or SIGSTOP) the fault's process; returns {target, region, pid, signal, sent_at}. Raises RuntimeError
    when there is nothing to signal (the drill then restores and fails, having changed nothing)."""
    if signal_name == "SIGSTOP" and kind not in FREEZABLE:
        raise RuntimeError(f"SIGSTOP is built for {', '.join(FREEZABLE)} only, not {kind}")
    if kind == "region":
        return fail_serving_region(cfg, before)
    if kind == "database_primary":
        node = next((n for n in cfg.nodes if n.name == before.get("pg_primary")), None)
        pid = lab._lab_postmaster_pid(node) if node else None
        target = (node.name, node.region) if node else (None, None)
    elif kind == "redis_primary":
        rnode = next((n for n in cfg.redis_nodes if n.name == before.get("redis_primary")), None)
        pid = lab._lab_redis_pid(rnode) if rnode else None
        target = (rnode.name, rnode.region) if rnode else (None, None)
    elif kind == "app_instance":
        app = next((a for a in lab_app.apps(cfg) if a.region == app_region), None)
        pid = lab_app.app_pid(app) if app else None
        target = (app.name, app.region) if app else (None, None)
    elif kind == "dns_server":  # the authoritative server the client asks first (before["dns_server"])
        srv = next((s for s in lab_dns.servers(cfg) if s.name == before.get("dns_server")), None)
        pid = lab_dns.lab_knot_pid(srv) if srv else None
        target = (srv.name, None) if srv else (None, None)
    else:
        raise RuntimeError(f"no fault of kind {kind!r} on the lab")
    if pid is None:
        raise RuntimeError(f"{kind}: no running process to signal ({target[0] or 'no target found'})")
    sent_at = time.monotonic()  # the drill's clock: the fault's moment for the RTO
    os.kill(pid, SIGNALS[signal_name])
    if signal_name == "SIGSTOP":
        lab.wait_for(lambda: process_state(pid) == STOPPED, KILL_TIMEOUT, interval=0.02, what=f"{target[0]} stopped")
    else:
        lab.wait_for(lambda: not alive(pid), KILL_TIMEOUT, interval=0.02, what=f"{target[0]} gone")
    return {"target": target[0], "region": target[1], "pid": pid, "signal": signal_name, "sent_at": sent_at}


def fail_serving_region(cfg: LabConfig, before: Dict[str, Any]) -> Dict[str, Any]:
    """The region the PostgreSQL primary is in vanishes: kill -9 of its postmaster, Redis and application
    (lab_regions.fail_region, `runbook lab fail-region`). Its target is the region's name."""
    region = before.get("pg_region")
    if not region:
        raise RuntimeError("region: no PostgreSQL primary runs, so no region serves to be lost")
    sent_at = time.monotonic()
    outcome = lab_regions.fail_region(cfg, str(region))
    if not outcome["killed"]:
        raise RuntimeError(f"region {region}: no running process to kill ({', '.join(outcome['not_running'])})")
    return {"target": str(region), "region": str(region), "pid": None, "killed": outcome["killed"],
            "signal": "SIGKILL", "sent_at": sent_at}


def regions(cfg: LabConfig) -> List[str]:
    """The lab's regions, in the order a region drill considers them as the service's next home
    (drill_judge.region_target)."""
    return lab_regions.regions(cfg)


def thaw(cfg: LabConfig) -> List[str]:
    """SIGCONT every lab redis-server stopped by a signal (a SIGSTOP drill's target, whatever the record says: a drill
    killed right after its signal may not have written it). Returns the nodes resumed."""
    return _resume_stopped((node.name, lab._lab_redis_pid(node)) for node in cfg.redis_nodes)


def _resume_stopped(processes: Iterable[Tuple[str, Optional[int]]]) -> List[str]:
    """SIGCONT each (name, pid) whose process is stopped by a signal; the names resumed."""
    resumed = []
    for name, pid in processes:
        if pid is not None and process_state(pid) == STOPPED:
            os.kill(pid, signal.SIGCONT)
            resumed.append(name)
    return resumed


def dns_server_at(cfg: LabConfig, port: int) -> Optional[str]:
    """The lab Knot server listening on `port` (the inventory's first authoritative server), else None."""
    return next((srv.name for srv in lab_dns.servers(cfg) if srv.port == port), None)


def has_dns(cfg: LabConfig) -> bool:
    """The lab was made with its Knot servers (new_lab(dns=True), `runbook lab up`): their configs exist."""
    return any(srv.conf_file.is_file() for srv in lab_dns.servers(cfg))


def thaw_dns(cfg: LabConfig) -> List[str]:
    """SIGCONT every lab knotd stopped by a signal (a dns_server SIGSTOP drill's target, read from the processes as
    thaw() does for Redis). Returns the servers resumed."""
    return _resume_stopped((srv.name, lab_dns.lab_knot_pid(srv)) for srv in lab_dns.servers(cfg))


def restart_dns(cfg: LabConfig) -> Dict[str, Any]:
    """Start the lab's Knot servers that are not running (a dns_server drill's kill -9), then wait until both serve
    the same serial (lab dns `up`, wait_in_sync). Returns {started, serial}."""
    stopped = [srv.name for srv in lab_dns.servers(cfg) if lab_dns.lab_knot_pid(srv) is None]
    lab_dns.up(cfg)  # starts what is stopped, asks a restarted secondary to refresh, waits until in sync
    return {"started": stopped, "serial": lab_dns.wait_in_sync(cfg)}


def redis_primaries(cfg: LabConfig) -> List[str]:
    """The lab's Redis nodes that take writes now (more than one after a frozen primary resumed beside the node that
    replaced it)."""
    primaries = []
    for node in cfg.redis_nodes:
        if lab._lab_redis_pid(node) is None:
            continue
        client, _error, _kind = lab.rd.try_connect(node.conn_params())
        if client is None:
            continue
        with client:
            if client.info("replication").get("role") == "master":
                primaries.append(node.name)
    return primaries


def restart_region(cfg: LabConfig, region: str) -> Dict[str, Any]:
    """Start what is down in the region again, never as a second writer (lab_regions.restore_region): a former
    PostgreSQL primary another node replaced stays down (database_rejoin brings it back); a former Redis primary
    comes back as a replica of the one that took over; the application starts."""
    return lab_regions.restore_region(cfg, region)


def pg_stopped(cfg: LabConfig) -> List[str]:
    return [node.name for node in cfg.nodes if lab._lab_postmaster_pid(node) is None]


def serving_app_region(cfg: LabConfig, address: Optional[str]) -> Optional[str]:
    """The region whose application listens on `address` (what the public name resolves to)."""
    return next((app.region for app in lab_app.apps(cfg) if app.host == address), None)


def apps_running(cfg: LabConfig) -> Dict[str, bool]:
    return {app.region: lab_app.app_pid(app) is not None for app in lab_app.apps(cfg)}
