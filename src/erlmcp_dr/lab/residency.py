"""The lab's residency data: what lab.inventory() adds to the `all` vars so the residency guard
(plugins/module_utils/_region/residency.py) has something to decide: regions a and c in the EU, b in the US
(`dr_regions`),
the lab's two datasets with their class (`dr_datasets`: the application's writes in PostgreSQL and its sessions in
Redis, both card data, PCI, which the seeds let live in the US or the EU) and the seeds' rules (`dr_residency_rules`:
PII in the EU, PHI in the US, PCI in either). Data only: lab/lifecycle.py imports it, and it imports nothing of the lab.
"""

from __future__ import annotations

from typing import Any, Dict, List

JURISDICTIONS: Dict[str, str] = {"a": "EU", "b": "US", "c": "EU"}
DATASETS: Dict[str, Dict[str, Any]] = {
    "app_writes": {"class": "PCI", "systems": ["postgres"], "description": "the application's writes (table "
                                                                         "erlmcp_app_writes)"},
    "sessions": {"class": "PCI", "systems": ["redis"], "description": "the application's sessions (erlmcp:session:*)"},
}
RULES: Dict[str, List[str]] = {"PII": ["EU"], "PHI": ["US"], "PCI": ["US", "EU"]}


def inventory_vars() -> Dict[str, Any]:
    return {"dr_regions": {region: {"jurisdiction": place} for region, place in JURISDICTIONS.items()},
            "dr_datasets": {name: dict(entry) for name, entry in DATASETS.items()},
            "dr_residency_rules": {name: list(places) for name, places in RULES.items()}}


