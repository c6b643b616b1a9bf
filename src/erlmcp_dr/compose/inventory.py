"""What a composed run reads from the inventory before its first step: regions, their hosts, the lock keys.

Read once with ansible-core's own inventory code (the same files, groups and variable precedence the child runs
see). Values are rendered only when they hold a template (the lab's `{{ playbook_dir }}` paths); the keys of the
run lock are computed exactly as each runbook computes its own (docs/design.md, "Why the key is the cluster's
identity"), from the same module_utils functions, so a child finds the parent's record under the key it asks for.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping

from erlmcp_dr import paths
from erlmcp_dr.errors import ParameterError
from erlmcp_dr.warm import parsed_inventory

SYSTEM_GROUPS = ("postgres", "redis", "app", "dns", "services")
CONNECT_TIMEOUT = 3  # seconds per database member when reading the cluster's system identifier


@dataclass
class InventoryView:
    path: Path
    hosts: Dict[str, Dict[str, Dict[str, Any]]]  # group -> host -> its variables (rendered where needed)
    all_vars: Dict[str, Any] = field(default_factory=dict)
    parsed: parsed_inventory.Kept = field(default_factory=dict)  # its files parsed, for the children

    def regions(self) -> List[str]:
        return sorted({str(v.get("dr_region")) for group in ("postgres", "redis", "app")
                       for v in self.hosts.get(group, {}).values() if v.get("dr_region") not in (None, "")})

    def region_targets(self, region: str) -> Dict[str, Any]:
        """The region's database node, Redis node and application instance (with its URL)."""
        found: Dict[str, Any] = {}
        for group in ("postgres", "redis", "app"):
            names = [name for name, v in self.hosts.get(group, {}).items() if str(v.get("dr_region")) == region]
            if len(names) == 1:
                found[group] = names[0]
            elif len(names) > 1:
                found[group] = None
                found.setdefault("ambiguous", []).append(f"{group}: {', '.join(names)}")
        app = found.get("app")
        if app:
            found["app_url"] = self.hosts["app"][app].get("app_url")
        return found

    def check_regions(self, from_region: str, to_region: str) -> Dict[str, Dict[str, Any]]:
        """targets.from / targets.to, or ParameterError naming what is wrong and what exists."""
        known = self.regions()
        if from_region == to_region:
            raise ParameterError("to_region", f"to_region is {to_region!r}, the region being left: expected another "
                                              f"region ({', '.join(r for r in known if r != from_region)})")
        targets = {}
        for parameter, region in (("from_region", from_region), ("to_region", to_region)):
            if region not in known:
                raise ParameterError(parameter, f"{parameter} {region!r} is not a region of the inventory {self.path} "
                                                f"(dr_region of its hosts: {', '.join(known) or 'none'})")
            found = self.region_targets(region)
            missing = [group for group in ("postgres", "redis", "app") if not found.get(group)]
            if missing or found.get("ambiguous"):
                raise ParameterError(parameter, f"region {region!r} has no single {', '.join(missing) or 'host'} "
                                                f"node to act on ({'; '.join(found.get('ambiguous', [])) or 'none'} "
                                                f"in groups {', '.join(missing)}): expected one host per system with "
                                                f"dr_region: {region}")
            targets["from" if parameter == "from_region" else "to"] = found
        self.check_services(to_region)
        return targets

    def lock_settings(self) -> Dict[str, Any]:
        """The run lock's store for the lock over a whole move or drill (regional_failover, failback, dr_drill): the
        one the children's run_lock picks from the same inventory (dr_lock_store and dr_lock_etcd_*, else
        ERLMCP_DR_LOCK_STORE, else the directory store in dr_lock_dir or the environment's default). ParameterError
        naming the variable on bad input."""
        lock = _lock_module()
        variables = {name: self.all_vars[name] for name in lock.STORE_VARS if self.all_vars.get(name) is not None}
        try:
            return lock.store_settings(variables, store_dir=self.lock_folder())
        except lock.LockStoreError as exc:
            message = str(exc)  # it starts with the variable it is about (others may be named as the way out)
            named = min((name for name in lock.STORE_VARS if name in message), key=message.index,
                        default=lock.STORE_VAR)
            raise ParameterError(named, message) from None

    def check_services(self, region: str) -> None:
        """The move starts the target's services with service_recovery after the point of no return: a target with
        none declared is refused now, before anything changes, not there (where the run could only stop)."""
        if any(str(v.get("dr_region")) == region for v in self.hosts.get("services", {}).values()):
            return
        having = sorted({str(v.get("dr_region")) for v in self.hosts.get("services", {}).values()})
        raise ParameterError("to_region", f"region {region!r} has no service in the inventory {self.path}: the move "
                                          "starts the target region's services (service_recovery) before its "
                                          "application check; expected hosts of the services group with dr_region: "
                                          f"{region} (regions with services: {', '.join(having) or 'none'})")

    def lock_folder(self) -> str:
        configured = self.all_vars.get("dr_lock_dir")
        return str(configured) if configured else _lock_module().default_store_dir()

    def lock_keys(self) -> List[str]:
        """The keys the children take: the database cluster, the Redis members, the DNS zone, each region's services."""
        redis_members = [{"host": v.get("redis_host") or name, "port": v.get("redis_port") or 6379}
                         for name, v in self.hosts.get("redis", {}).items()]
        keys = [self.database_lock_key()]
        if redis_members:
            keys.append(_module("_redis.plan").lock_key(redis_members))
        zone = self.all_vars.get("dns_zone")
        if zone:
            keys.append(_module("_dns.plan").lock_key(str(zone)))
        return keys + self.services_lock_keys()

    def services_lock_keys(self) -> List[str]:
        """service_recovery's key of every region with services (`services:<region>:<names>`, its own function):
        like the Redis members, every region's, so a move holds the same keys whichever way it goes."""
        by_region: Dict[str, List[Dict[str, Any]]] = {}
        for name, v in self.hosts.get("services", {}).items():
            if v.get("dr_region") not in (None, ""):
                by_region.setdefault(str(v["dr_region"]), []).append({"name": v.get("service_name") or name})
        key = _module("_services.order").lock_key
        return [key(region, services) for region, services in sorted(by_region.items())]

    def database_lock_key(self) -> str:
        """`postgres:<system identifier>` read from the first member that answers (every member of one cluster
        has the same); ParameterError when none answers: the database step could not run either."""
        errors = []
        for name, v in self.hosts.get("postgres", {}).items():
            params = {"host": v.get("pg_host") or name, "port": int(v.get("pg_port") or 5432),
                      "user": v.get("pg_login_user"), "password": v.get("pg_login_password"),
                      "dbname": v.get("pg_login_db") or "postgres", "connect_timeout": CONNECT_TIMEOUT}
            try:
                sysid = _system_identifier(params)
            except Exception as exc:  # a member that is down is expected in a failover: try the next
                errors.append(f"{name}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
                continue
            return _module("_postgres.failover_plan").lock_key({"system_identifier": sysid})
        raise ParameterError("inventory", "no database member answers, so the cluster's identity (its run lock's "
                                          "key) cannot be read: " + "; ".join(errors))


def read(path: Path) -> InventoryView:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    recorder = parsed_inventory.Recorder(loader)
    manager = InventoryManager(loader=loader, sources=[str(path)])
    variables = VariableManager(loader=loader, inventory=manager)
    playbook_dir = str(paths.collection_root() / "playbooks")
    hosts: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for group in SYSTEM_GROUPS:
        hosts[group] = {}
        for host in manager.get_hosts(group) if group in manager.groups else []:
            raw = variables.get_vars(host=host, include_hostvars=False)
            # ansible_playbook_python: what ansible-playbook runs on, this interpreter (a command's first word)
            templar = Templar(loader=loader, variables=dict(raw, playbook_dir=playbook_dir,
                                                            ansible_playbook_python=sys.executable))
            hosts[group][_plain(host.name)] = _rendered(templar, raw)
    localhost = manager.get_host("localhost") or manager.localhost
    raw_all = variables.get_vars(host=localhost, include_hostvars=False) if localhost is not None else {}
    all_vars = _rendered(Templar(loader=loader, variables=dict(raw_all, playbook_dir=playbook_dir)), raw_all)
    return InventoryView(path=path, hosts=hosts, all_vars=all_vars, parsed=recorder.kept)


_WANTED = ("dr_region", "pg_host", "pg_port", "pg_login_user", "pg_login_password", "pg_login_db", "redis_host",
           "redis_port", "app_url", "dns_zone", "dr_lock_dir", "dr_regions", "dr_datasets", "dr_residency_rules",
           "dns_region_addresses",
           # read by the drill (src/erlmcp_dr/drill/run.py): the lab's folders, the public name, its own settings
           "pg_data_dir", "dns_host", "dns_port", "dns_records", "app_port", "redis_password", "dr_drill",
           "dr_drill_history", "dr_environment",
           # read by the redis_backup drill (lab/backup_fault.py): the store, its HMAC key, readiness's thresholds
           "redis_backup_dir", "redis_backup_hmac_key", "dr_readiness", "dr_tier_objectives",
           # read by the isolation of the region left (compose/isolate.py) and for service_recovery's lock key
           "app_stop_command", "app_start_command", "service_name")


def _rendered(templar: Any, raw: Mapping[str, Any]) -> Dict[str, Any]:
    """The variables a composed run reads, rendered when they hold a template (plain data otherwise)."""
    out: Dict[str, Any] = {}
    for name in _WANTED + tuple(_lock_module().STORE_VARS):  # the run lock's store, as the children's run_lock reads it
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, str) and "{{" in value:
            value = templar.template(value)
        elif isinstance(value, list):  # a command's arguments (app_stop_command): each rendered like a string
            value = [templar.template(word) if isinstance(word, str) and "{{" in word else word for word in value]
        out[name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value
    return "".join(str(value))  # an exact str (ansible-core 2.19 tags its strings with their origin)


def _system_identifier(params: Mapping[str, Any]) -> str:
    import psycopg

    with psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=True) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    return str(row[0])


def _module(name: str) -> Any:
    paths.ensure_collection_importable()
    import importlib

    return importlib.import_module(f"ansible_collections.erlmcp.dr.plugins.module_utils.{name}")


def _lock_module() -> Any:
    return _module("_lock.store")

