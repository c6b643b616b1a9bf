"""One health sample of each watched region, judged as region_health judges it.

The parts of a region are the ones region_health checks (playbooks/region_health.yml): each `app` host's
`<app_url>/health` over HTTP, each `postgres` host (does it answer, does it take writes), each `redis` host (does it
answer, its role). Each part is sampled ONCE per check through the collection's health engine
(_region/health.py, one sample: consecutive_failures = consecutive_successes = 1), and the region's verdict comes
from _region/verdicts.py (a failed part, or one of two writers of one system, fails the region). The observer counts
consecutive failed checks itself, across its intervals (observer.py): that count is what the quorum reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Tuple

from erlmcp_dr import paths
from erlmcp_dr.compose.inventory import InventoryView

REGISTER = "watch_checks"  # the name verdicts.rows reads each host's results under (region_health's `register`)


@dataclass(frozen=True)
class RegionSample:
    region: str
    failed: bool
    reasons: Tuple[str, ...]


def engines() -> Tuple[Any, Any]:
    """The collection's health engine and region verdicts (module_utils/_region/health.py, verdicts.py)."""
    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._region import health, verdicts

    return health, verdicts


def _module_failure() -> Any:
    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure

    return ModuleFailure


GROUPS = (("app", "app"), ("postgres", "database"), ("redis", "redis"))  # inventory group -> region_health's part


def parts_of(view: InventoryView, group: str, sample_timeout: float) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(host, component, health_check parameters) for every host of `group`, as region_health checks them."""
    component = dict(GROUPS)[group]
    common = {"interval": 0.01, "timeout": sample_timeout, "sample_timeout": sample_timeout,
              "consecutive_failures": 1, "consecutive_successes": 1}
    found = []
    for host, hv in sorted(view.hosts.get(group, {}).items()):
        if group == "app":
            check = {"kind": "http", "url": f"{hv.get('app_url') or ''}/health"}
        elif group == "postgres":
            check = {"kind": "postgres", "host": hv.get("pg_host") or host, "port": int(hv.get("pg_port") or 5432),
                     "login_user": hv.get("pg_login_user"), "login_password": hv.get("pg_login_password"),
                     "login_db": hv.get("pg_login_db") or "postgres"}
        else:
            check = {"kind": "redis", "host": hv.get("redis_host") or host,
                     "port": int(hv.get("redis_port") or 6379), "login_password": hv.get("redis_password")}
        found.append((host, component, dict(common, **check)))
    return found


def parts(view: InventoryView, region: str, sample_timeout: float) -> List[Tuple[str, str, Dict[str, Any]]]:
    """Every part of `region` (its app, database and Redis hosts), as region_health loops over them."""
    return [(host, component, check) for group, _ in GROUPS for host, component, check in
            parts_of(view, group, sample_timeout) if str(view.hosts[group][host].get("dr_region")) == region]


def sample_regions(view: InventoryView, regions: Iterable[str], sample_timeout: float) -> Dict[str, RegionSample]:
    """Each region sampled once: failed (a part failed, a split, or no part found to check) or not, and why."""
    health, verdicts = engines()
    hostvars: Dict[str, Dict[str, Any]] = {}
    hosts: List[str] = []
    wanted = list(regions)
    for region in wanted:
        for host, component, check in parts(view, region, sample_timeout):
            entry = hostvars.setdefault(host, {"dr_region": region, REGISTER: {"results": []}})
            entry[REGISTER]["results"].append(dict(checked(health, check), item={"component": component}))
            hosts.append(host)
    judged = verdicts.region_verdicts(verdicts.rows(hosts, hostvars, register=REGISTER))
    out = {}
    for region in wanted:
        found = judged.get(region)
        if found is None:
            out[region] = RegionSample(region, True, (f"no app, postgres or redis host of the inventory has "
                                                      f"dr_region: {region}",))
        else:
            out[region] = RegionSample(region, found["verdict"] == "failed", tuple(found["reasons"]))
    return out


def checked(health: Any, check: Dict[str, Any]) -> Dict[str, Any]:
    """health.run's result; a refused login or a bad setting (ModuleFailure) is a failed part naming why."""
    try:
        return health.run(check)
    except _module_failure() as exc:  # a refused login, a missing driver: the region cannot be judged healthy
        return {"verdict": "failed", "confirmed": True, "target": health.target(check),
                "samples": exc.facts.get("samples") or [{}], "sample_count": 1, "failures": 1, "last_error": str(exc)}
