"""What `runbook watch` reads from the inventory: the static observer list, the declared targets, the interval and
bands (the inventory's `dr_watch`), and the etcd members the verdicts live in (the run lock's `dr_lock_etcd_*`: the
observers use the same three members, one per region).

    dr_watch:
      observers:                 # static: one per region plus a witness (no region); never discovered
        - {name: obs-a, region: a}
        - {name: obs-b, region: b}
        - {name: witness}
      failover_to: {a: b}        # the regions watched, each with the region regional_failover moves it to
      interval: 5                # seconds between two checks (the seeds: every 5-10 s)
      consecutive_checks: 3      # N failed checks in a row before a verdict counts as failed
      carry_on_seconds: 30       # the seeds' partition bands (watch_quorum.py)
      fail_over_seconds: 60
      sample_timeout: 2          # seconds one health sample may take
      guard: false               # the regional write guard (guard.py): a region's observer makes its region's
                                 # primary read-only once it lost etcd AND most peer databases for guard_seconds
      guard_seconds: 25          # default carry_on_seconds - interval: before the majority may fail over

Bad input raises ParameterError naming the variable, what was found and what is expected; nothing is started.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from erlmcp_dr import paths
from erlmcp_dr.errors import ParameterError
from erlmcp_dr.watch_quorum import Bands, Membership

VARIABLE = "dr_watch"
DEFAULT_PREFIX = "/erlmcp-dr/watch/"
DEFAULTS: Dict[str, float] = {"interval": 5.0, "consecutive_checks": 3, "carry_on_seconds": 30.0,
                              "fail_over_seconds": 60.0, "sample_timeout": 2.0}
LIMITS: Dict[str, Tuple[float, float]] = {"interval": (0.1, 300.0), "consecutive_checks": (1, 100),
                                          "carry_on_seconds": (0.1, 3600.0), "fail_over_seconds": (0.1, 3600.0),
                                          "sample_timeout": (0.1, 60.0)}
MIN_LEASE_SECONDS = 5  # etcd grants no less than 2 s (_lock/etcd.py MIN_TTL); a loaded controller needs more


@dataclass(frozen=True)
class WatchSettings:
    membership: Membership
    failover_to: Dict[str, str]  # watched region -> the region regional_failover moves the service to
    interval: float
    bands: Bands
    sample_timeout: float
    prefix: str
    etcd: Dict[str, Any]  # _lock/etcd.settings(): endpoints, TLS, credentials, timeout
    guard: bool = False
    guard_seconds: float = 0.0

    @property
    def lease_seconds(self) -> int:
        """An observer's verdicts live this long without a renewal: three checks (at least 5 s), so a check slowed
        down on a busy controller does not drop them, and a dead or cut-off observer's verdicts are gone soon."""
        return max(MIN_LEASE_SECONDS, int(math.ceil(3 * self.interval)))


def parse(variables: Mapping[str, Any], etcd_settings: Optional[Dict[str, Any]] = None) -> WatchSettings:
    """WatchSettings from the inventory's variables (dr_watch, dr_lock_etcd_*), or ParameterError."""
    raw = variables.get(VARIABLE)
    if not isinstance(raw, Mapping):
        raise ParameterError(VARIABLE, f"{VARIABLE} is {type(raw).__name__ if raw is not None else 'not set'}: "
                                       "expected a mapping with observers (one per region plus a witness) and "
                                       "failover_to (e.g. {a: b}) in the inventory's vars (docs/watch.md)")
    membership = _membership(raw.get("observers"))
    numbers = {name: _number(raw, name) for name in DEFAULTS}
    try:
        bands = Bands(numbers["carry_on_seconds"], numbers["fail_over_seconds"], int(numbers["consecutive_checks"]))
    except ValueError as exc:
        raise ParameterError(f"{VARIABLE}.carry_on_seconds", f"{VARIABLE}: {exc}") from None
    return WatchSettings(membership=membership, failover_to=_targets(raw.get("failover_to")),
                         interval=numbers["interval"], bands=bands, sample_timeout=numbers["sample_timeout"],
                         prefix=_prefix(raw.get("prefix")),
                         etcd=etcd_settings if etcd_settings is not None else _etcd(variables),
                         guard=_flag(raw, "guard"), guard_seconds=_guard_seconds(raw, bands, numbers["interval"]))


def _flag(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ParameterError(f"{VARIABLE}.{key}", f"{VARIABLE}.{key} is {value!r}: expected true or false "
                                                  "(default false)")
    return value


def _guard_seconds(raw: Mapping[str, Any], bands: Bands, interval: float) -> float:
    """How long a region's guard may be without etcd (and most peers) before it makes its primary read-only:
    strictly shorter than carry_on_seconds, the earliest time the majority may decide to fail over, so the cut-off
    primary stops taking writes before another one can be promoted."""
    default = max(bands.carry_on_seconds - interval, bands.carry_on_seconds / 2)
    value = raw.get("guard_seconds", default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds < bands.carry_on_seconds:
        raise ParameterError(f"{VARIABLE}.guard_seconds", f"{VARIABLE}.guard_seconds is {value!r}: expected seconds "
                                                          f"above 0 and below carry_on_seconds "
                                                          f"({bands.carry_on_seconds:g}), so a cut-off primary stops "
                                                          f"taking writes before the majority may fail over "
                                                          f"(default {default:g})")
    return seconds


def _membership(raw: Any) -> Membership:
    name = f"{VARIABLE}.observers"
    if not isinstance(raw, list) or not all(isinstance(item, Mapping) and item.get("name") for item in raw):
        raise ParameterError(name, f"{name} is {raw!r}: expected a list of {{name, region}} (the witness has no "
                                   "region), e.g. [{name: obs-a, region: a}, {name: obs-b, region: b}, "
                                   "{name: witness}]")
    regions = tuple(str(item["region"]) if item.get("region") not in (None, "") else None for item in raw)
    try:
        return Membership(tuple(str(item["name"]) for item in raw), regions)
    except ValueError as exc:
        raise ParameterError(name, f"{name}: {exc}") from None


def _targets(raw: Any) -> Dict[str, str]:
    name = f"{VARIABLE}.failover_to"
    if not isinstance(raw, Mapping) or not raw or any(str(k) == str(v) for k, v in raw.items()):
        raise ParameterError(name, f"{name} is {raw!r}: expected the regions watched, each mapped to the region "
                                   "the regional failover moves the service to (another region), e.g. {a: b}")
    return {str(region): str(target) for region, target in raw.items()}


def _number(raw: Mapping[str, Any], key: str) -> float:
    value = raw.get(key, DEFAULTS[key])
    low, high = LIMITS[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high or (key == "consecutive_checks" and number != int(number)):
        raise ParameterError(f"{VARIABLE}.{key}", f"{VARIABLE}.{key} is {value!r}: expected a number from {low:g} "
                                                  f"to {high:g} (default {DEFAULTS[key]:g})")
    return number


def _prefix(raw: Any) -> str:
    prefix = str(raw or DEFAULT_PREFIX)
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise ParameterError(f"{VARIABLE}.prefix", f"{VARIABLE}.prefix is {prefix!r}: expected a key prefix that "
                                                   f"starts and ends with / (default {DEFAULT_PREFIX})")
    return prefix


def _etcd(variables: Mapping[str, Any]) -> Dict[str, Any]:
    """The run lock's etcd settings (the same members): a bad or missing endpoint list names its variable."""
    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as lock_etcd
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock.store import LockStoreError

    try:
        return lock_etcd.settings(dict(variables))
    except LockStoreError as exc:
        raise ParameterError("dr_lock_etcd_endpoints", f"runbook watch keeps its verdicts in the run lock's etcd "
                                                       f"members: {exc}") from None


def inventory_variables(path: Path) -> Dict[str, Any]:
    """dr_watch and the dr_lock_etcd_* variables as the inventory gives them to localhost (rendered), read with
    ansible-core's own inventory code, as the composed runs read theirs (compose/inventory.py)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock.store import ETCD_VARS

    from erlmcp_dr.compose.inventory import _plain

    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(path)])
    host = manager.get_host("localhost") or manager.localhost
    raw = VariableManager(loader=loader, inventory=manager).get_vars(host=host, include_hostvars=False)
    templar = Templar(loader=loader, variables=dict(raw, playbook_dir=str(paths.collection_root() / "playbooks")))
    return {name: _plain(templar.template(raw[name])) for name in (VARIABLE, *ETCD_VARS) if name in raw}
