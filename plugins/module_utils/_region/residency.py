# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data-residency guard: may the service, with its datasets, be served from a region? Pure.

Inventory data (lab: `src/erlmcp_dr/lab/regions.py`):
    dr_regions:   {a: {jurisdiction: EU}, b: {jurisdiction: US}, ...}
    dr_datasets:  {app_writes: {class: PCI, systems: [postgres]}, ...}
    dr_residency_rules (optional): {PII: [EU], PHI: [US], PCI: [US, EU]}  -- the seeds' rules are the default

A move is refused, before anything changes, when the target region's jurisdiction is not one a dataset's class
allows; the refusal names the dataset, its class, the rule and the region's jurisdiction. A written justification
(`residency_override`) lets a refused move go on: it is returned here and recorded in the run's summary and audit
trail. Configuration gaps (an unknown region, a dataset without a class, a class without a rule) are refused and
cannot be overridden: the guard cannot decide what it does not know.

Here, in module_utils, because two sides read it: the composed regional failover (src/erlmcp_dr/compose/run.py) and
the readiness runbook's check of every possible target (_region/readiness.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

# S3:2505-2515 of the seeds: PHI stays in the US, PII in the EU; card data (PCI) may live in either.
DEFAULT_RULES: Dict[str, List[str]] = {"PII": ["EU"], "PHI": ["US"], "PCI": ["US", "EU"]}
MIN_JUSTIFICATION = 20  # characters: a sentence, not "ok"


@dataclass
class Verdict:
    allowed: bool
    refusals: List[str] = field(default_factory=list)  # rules the move breaks (overridable)
    problems: List[str] = field(default_factory=list)  # what the guard cannot decide (never overridable)
    overridden: bool = False
    justification: Optional[str] = None
    checked: List[Dict[str, Any]] = field(default_factory=list)  # one row per dataset: name, class, allowed, ok

    @property
    def message(self) -> str:
        if self.problems:
            return "residency guard cannot decide: " + "; ".join(self.problems)
        if self.refusals and not self.overridden:
            return ("residency guard refuses the move: " + "; ".join(self.refusals) + ". Nothing was changed. To move "
                    f"anyway, give residency_override a written justification (at least {MIN_JUSTIFICATION} "
                    "characters); it is recorded in the audit trail")
        if self.overridden:
            return "residency rules overridden: " + "; ".join(self.refusals) + f" (justification: {self.justification})"
        return f"every dataset may be served from the target ({len(self.checked)} checked)"

    def to_dict(self) -> Dict[str, Any]:
        return {"allowed": self.allowed, "refusals": self.refusals, "problems": self.problems,
                "overridden": self.overridden, "justification": self.justification, "checked": self.checked,
                "message": self.message}


def check(to_region: str, regions: Mapping[str, Any], datasets: Mapping[str, Any],
          rules: Optional[Mapping[str, Any]] = None, justification: Optional[str] = None) -> Verdict:
    """Whether every dataset may be served from `to_region`."""
    rules = DEFAULT_RULES if rules is None else rules
    problems: List[str] = []
    region = regions.get(to_region) if isinstance(regions, Mapping) else None
    jurisdiction = region.get("jurisdiction") if isinstance(region, Mapping) else None
    if not isinstance(jurisdiction, str) or not jurisdiction:
        problems.append(f"region {to_region!r} has no jurisdiction in the inventory's dr_regions (found regions: "
                        f"{', '.join(sorted(map(str, regions or {}))) or 'none'}); expected "
                        f"dr_regions: {{{to_region}: {{jurisdiction: EU}}}}")
    if not isinstance(datasets, Mapping) or not datasets:
        problems.append("the inventory declares no datasets (dr_datasets): expected each dataset's class, e.g. "
                        "dr_datasets: {app_writes: {class: PCI}}")
        datasets = {}
    refusals: List[str] = []
    checked: List[Dict[str, Any]] = []
    for name in sorted(datasets):
        entry = datasets[name]
        data_class = entry.get("class") if isinstance(entry, Mapping) else None
        allowed = rules.get(data_class) if isinstance(data_class, str) else None
        if not isinstance(data_class, str):
            problems.append(f"dataset {name!r} has no class (dr_datasets.{name}.class: one of "
                            f"{', '.join(sorted(rules))})")
            continue
        if not isinstance(allowed, list) or not allowed:
            problems.append(f"dataset {name!r} has class {data_class!r}, for which there is no residency rule "
                            f"(rules: {', '.join(sorted(rules))}; dr_residency_rules adds one)")
            continue
        ok = jurisdiction in allowed
        checked.append({"dataset": name, "class": data_class, "allowed": list(allowed), "ok": ok})
        if jurisdiction and not ok:
            refusals.append(f"dataset {name} (class {data_class}) must stay in {'/'.join(allowed)} (rule {data_class} "
                            f"-> {'/'.join(allowed)}), and region {to_region} is in {jurisdiction}")
    reason = (justification or "").strip()
    if problems:
        return Verdict(False, refusals, problems, checked=checked)
    if refusals and len(reason) >= MIN_JUSTIFICATION:
        return Verdict(True, refusals, overridden=True, justification=reason, checked=checked)
    if refusals and reason:
        problems.append(f"residency_override is {len(reason)} characters: a justification needs at least "
                        f"{MIN_JUSTIFICATION} (say why the rule may be broken, and who decided)")
        return Verdict(False, refusals, problems, checked=checked)
    return Verdict(not refusals, refusals, checked=checked)
