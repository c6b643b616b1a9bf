# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters erlmcp.dr.criticality, erlmcp.dr.recovery_strategy, erlmcp.dr.tier_objectives and
erlmcp.dr.degradation_level over
module_utils/_region/bia.py (documented in their .yml files). Bad input fails the task naming the field."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.erlmcp.dr.plugins.module_utils._region import bia as _bia


def criticality(scores):
    try:
        return _bia.criticality(scores)
    except _bia.BiaError as exc:
        raise AnsibleFilterError(f"erlmcp.dr.criticality: {exc}") from exc


def recovery_strategy(level, rto_minutes, rpo_minutes):
    try:
        return _bia.recovery_strategy(level, rto_minutes, rpo_minutes)
    except _bia.BiaError as exc:
        raise AnsibleFilterError(f"erlmcp.dr.recovery_strategy: {exc}") from exc


def tier_objectives(tier, overrides=None):
    try:
        return _bia.tier_objectives(tier, overrides)
    except _bia.BiaError as exc:
        raise AnsibleFilterError(f"erlmcp.dr.tier_objectives: {exc}") from exc


def degradation_level(available_nodes, error_rate, replication_lag_ms, thresholds=None):
    try:
        return _bia.degradation_level(available_nodes, error_rate, replication_lag_ms, thresholds)
    except _bia.BiaError as exc:
        raise AnsibleFilterError(f"erlmcp.dr.degradation_level: {exc}") from exc


class FilterModule(object):
    def filters(self):
        return {"criticality": criticality, "recovery_strategy": recovery_strategy,
                "tier_objectives": tier_objectives, "degradation_level": degradation_level}
