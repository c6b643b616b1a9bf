# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters erlmcp.dr.service_recovery_inputs and service_recovery_summary (documented in their .yml files), over
module_utils/_services/order.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.erlmcp.dr.plugins.module_utils._services import order
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure


def service_recovery_inputs(region, groups, hostvars):
    try:
        return order.region_inputs(groups.get("services"), groups.get("postgres"), groups.get("redis"), hostvars,
                                   region)
    except ModuleFailure as exc:
        raise AnsibleFilterError(str(exc)) from None


def service_recovery_summary(result, inputs, completed=False, check_mode=False):
    return order.summary(result, inputs, completed, check_mode)


class FilterModule(object):
    def filters(self):
        return {"service_recovery_inputs": service_recovery_inputs,
                "service_recovery_summary": service_recovery_summary}
