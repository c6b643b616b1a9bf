"""The business impact analysis on the controller: `runbook bia` and the tier verdicts of the postmortem draft and
the compliance summary.

The functions themselves (criticality, recovery_strategy, tier_objectives) live in
plugins/module_utils/_region/bia.py, shared with the erlmcp.dr.* filters; this module reads an inventory's BIA data and
renders the table. The inventory data (docs/postmortem.md, "BIA data in the inventory"):

    dr_services:                 # one entry per business service
      sessions:
        scores: {revenue: 90, customer: 100, compliance: 60, operational: 70}   # points, 0-100 each
        tier: 1                  # its objectives come from the tier table...
        rto_minutes: 5           # ...unless it sets its own (minutes)
        rpo_minutes: 0.0167
        revenue_per_hour: 250000 # currency per hour (the cost of an hour down), optional
        currency: EUR
    dr_tier_objectives:          # overrides of the tier table (seconds, percent)
      2: {rto_seconds: 3600}
    dr_postmortem_publish_hours: 72
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._region.bia import (  # noqa: E402,F401  (this module's API)
    DEFAULT_TIER,
    DEGRADATION_LEVELS,
    LEVELS,
    STRATEGIES,
    TIERS,
    BiaError,
    criticality,
    degradation_level,
    impact_score,
    meets,
    merged_tiers,
    number,
    recovery_strategy,
    services_table,
    tier_objectives,
)

INVENTORY_KEYS = ("dr_services", "dr_tier_objectives", "dr_postmortem_publish_hours")


def inventory_vars(inventory: Path) -> Dict[str, Any]:
    """The BIA variables (INVENTORY_KEYS) as the controller (localhost) sees them in `inventory`: `all` vars and
    group_vars included, as Ansible reads them (raw: a Jinja string stays a string, and is refused as one)."""
    found = hosts_vars(inventory)["localhost"]
    return {key: found[key] for key in INVENTORY_KEYS if key in found}


def hosts_vars(inventory: Path) -> Dict[str, Dict[str, Any]]:
    """Every host's variables in `inventory` (the implicit localhost included), as plain Python, untemplated."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    if not inventory.exists():
        raise BiaError(f"inventory {inventory} does not exist (give -i INVENTORY)")
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=manager)
    hosts = [*manager.get_hosts(), manager.get_host("localhost")]
    return {host.name: plain(variables.get_vars(host=host, include_hostvars=False)) for host in hosts}


def plain(value: Any) -> Any:
    """Ansible's YAML objects (AnsibleUnicode, AnsibleMapping) as plain Python: JSON out, equality in tests."""
    if isinstance(value, Mapping):
        return {(str(key) if isinstance(key, str) else key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def table_for(variables: Mapping[str, Any]) -> Dict[str, Any]:
    """{services: rows, tiers: the merged tier table} from an inventory's BIA variables."""
    overrides = variables.get("dr_tier_objectives")
    services = variables.get("dr_services")
    if services is None:
        raise BiaError("dr_services: not set in the inventory; expected a mapping of service name to "
                       "{scores: {revenue, customer, compliance, operational}, tier} (docs/postmortem.md)")
    tiers = merged_tiers(overrides)
    return {"services": services_table(services, overrides),
            "tiers": [dict(row, tier=tier) for tier, row in sorted(tiers.items())]}


def render(table: Mapping[str, Any]) -> str:
    """The table for a person: one line per service, then the tier table the objectives came from."""
    rows: List[List[str]] = [["SERVICE", "SCORE", "LEVEL", "TIER", "RTO", "RPO", "STRATEGY", "COST/HOUR", "FROM"]]
    for row in table["services"]:
        cost = "-" if row["revenue_per_hour"] is None else f"{row['revenue_per_hour']:,.0f} {row['currency']}".strip()
        rows.append([row["service"], f"{row['score_points']:g}", row["level"], str(row["tier"]),
                     minutes(row["rto_minutes"]), minutes(row["rpo_minutes"]), row["strategy"], cost,
                     row["objectives_from"]])
    lines = [_columns(rows), "", "tiers (limits are maxima: achieved <= limit meets them):"]
    tier_rows = [["TIER", "RTO", "RPO", "AVAILABILITY", "FROM"]]
    tier_rows.extend([str(row["tier"]), seconds(row["rto_seconds"]), seconds(row["rpo_seconds"]),
                      f"{row['availability_percent']:g} %", row["source"]] for row in table["tiers"])
    lines.append(_columns(tier_rows))
    return "\n".join(lines)


def minutes(value: float) -> str:
    return seconds(value * 60)


def seconds(value: Optional[float]) -> str:
    """A duration in the unit a person reads: 1 s, 5 min, 4 h, 1.5 d (rounded for display only)."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.3g} s"
    if value < 3600:
        return f"{value / 60:.3g} min"
    if value < 86400:
        return f"{value / 3600:.3g} h"
    return f"{value / 86400:.3g} d"


def _columns(rows: List[List[str]]) -> str:
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)
