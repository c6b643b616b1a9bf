"""The lab inventory's BIA example: three business services with impact scores and tiers (docs/postmortem.md),
so `runbook bia` prints a table on the lab as it would on an inventory of production's, and the postmortem draft's
publication deadline (dr_postmortem_publish_hours). Merged into lab.inventory()'s `all` vars."""

from __future__ import annotations

from typing import Any, Dict


def inventory_vars() -> Dict[str, Any]:
    return {
        "dr_services": {
            "sessions": {"scores": {"revenue": 90, "customer": 100, "compliance": 60, "operational": 70},
                         "tier": 1, "revenue_per_hour": 250000, "currency": "EUR"},
            "api": {"scores": {"revenue": 80, "customer": 80, "compliance": 40, "operational": 50}, "tier": 1},
            "analytics": {"scores": {"revenue": 20, "customer": 30, "compliance": 20, "operational": 40},
                          "tier": 3, "rto_minutes": 240, "rpo_minutes": 60},
        },
        "dr_postmortem_publish_hours": 72,
    }
