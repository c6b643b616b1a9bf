"""A whole lab region's failure and return, as a regional failover meets them (its residency data: lab/residency.py).

- `fail_region(cfg, region)` (`runbook lab fail-region a`): kill -9, by PID, the region's PostgreSQL postmaster,
  Redis server and application instance: a region that vanished, not one shut down cleanly.
- `restore_region(cfg, region)` (`runbook lab restore-region a`): start them again without ever making a second
  writer: a former PostgreSQL primary stays down (lab.up's rule; database_rejoin brings it back as a standby), a
  Redis node that was a primary comes back as a replica of the primary that took over.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Dict, List, Optional

from erlmcp_dr.lab.config import LabConfig, LabRedisNode, alive


def regions(cfg: LabConfig) -> List[str]:
    return sorted({node.region for node in cfg.nodes})


def _check_region(cfg: LabConfig, region: Optional[str]) -> str:
    known = regions(cfg)
    if region not in known:
        raise ValueError(f"region {region!r} is not one of the lab's regions ({', '.join(known)}): "
                         "e.g. `runbook lab fail-region a`")
    return str(region)


def fail_region(cfg: LabConfig, region: Optional[str]) -> Dict[str, Any]:
    """kill -9 the region's PostgreSQL, Redis and application processes (by their recorded, verified PIDs)."""
    from erlmcp_dr.lab import app as lab_app
    from erlmcp_dr.lab import lifecycle as lab

    region = _check_region(cfg, region)
    killed: Dict[str, int] = {}
    not_running: List[str] = []
    targets = [(node.name, lab._lab_postmaster_pid(node)) for node in cfg.nodes if node.region == region]
    targets += [(node.name, lab._lab_redis_pid(node)) for node in cfg.redis_nodes if node.region == region]
    targets += [(app.name, lab_app.app_pid(app)) for app in lab_app.apps(cfg) if app.region == region]
    for name, pid in targets:
        if pid is None:
            not_running.append(name)
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed[name] = pid
        except ProcessLookupError:
            not_running.append(name)
    lab.wait_for(lambda: all(not alive(pid) for pid in killed.values()), 30, interval=0.05,
                 what=f"region {region}'s processes gone")
    return {"ok": True, "region": region, "killed": killed, "not_running": not_running}


def restore_region(cfg: LabConfig, region: Optional[str]) -> Dict[str, Any]:
    """Start the region's stopped parts again, never as a second writer."""
    from erlmcp_dr.lab import app as lab_app
    from erlmcp_dr.lab import lifecycle as lab

    region = _check_region(cfg, region)
    with lab._lab_lock(cfg):
        warnings = lab._bring_up(cfg)  # a former primary stays down, with the database_rejoin command
        started_redis = []
        for node in cfg.redis_nodes:
            if node.region != region or lab._lab_redis_pid(node) is not None:
                continue
            master = _other_master(cfg, node)
            made_replica = master is not None and not _follows_someone(node)
            if made_replica:
                with open(node.conf_file, "a", encoding="utf-8") as conf:  # keeps the file's owner and 0600 mode
                    conf.write(f"replicaof 127.0.0.1 {master.port}\n")
            lab._start_redis(node, lab.START_TIMEOUT)
            if made_replica:
                _wait_linked(node, master)
            started_redis.append(node.name)
        started_apps = lab_app.up(cfg, lab.status(cfg))
    return {"ok": True, "region": region, "warnings": warnings, "redis_started": started_redis,
            "app_started": started_apps}


def _other_master(cfg: LabConfig, node: LabRedisNode) -> Optional[LabRedisNode]:
    from erlmcp_dr.lab import lifecycle as lab

    for other in cfg.redis_nodes:
        if other is node or lab._lab_redis_pid(other) is None:
            continue
        client, _error, _kind = lab.rd.try_connect(other.conn_params())
        if client is None:
            continue
        with client:
            if client.info("replication").get("role") == "master":
                return other
    return None


def _wait_linked(node: LabRedisNode, master: LabRedisNode) -> None:
    """Wait until a restarted replica's link to its master is up (its first sync done): a Redis node answering is not
    yet a replica that can take the role back (redis_failover refuses a candidate whose link is down)."""
    from erlmcp_dr.lab import lifecycle as lab

    def linked() -> bool:
        row = lab._redis_node_status(node)
        return row["link"] == "up" and row["upstream"] == f"127.0.0.1:{master.port}"

    lab.wait_for(linked, lab.STREAM_TIMEOUT, interval=0.05, what=f"{node.name} linked to {master.name}")


def _follows_someone(node: LabRedisNode) -> bool:
    lines = node.conf_file.read_text(encoding="utf-8", errors="replace").splitlines()
    return any(line.split()[:1] in (["replicaof"], ["slaveof"]) for line in lines)


def format_outcome(outcome: Dict[str, Any]) -> str:
    lines = [f"region {outcome['region']}:"]
    for key in ("killed", "not_running", "redis_started", "app_started", "warnings"):
        value = outcome.get(key)
        if value:
            shown = ", ".join(f"{k} (pid {v})" for k, v in value.items()) if isinstance(value, dict) else ", ".join(
                map(str, value))
            lines.append(f"  {key.replace('_', ' ')}: {shown}")
    return "\n".join(lines)
