# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the dns_cutover runbook (documented in their .yml files), over module_utils/_dns/plan.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import plan
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import rollback


def dns_servers(hosts, hostvars):
    return plan.dns_servers(hosts, hostvars)


def dns_lock_key(zone):
    return plan.lock_key(str(zone))


def dns_rollback_path(run_id, run_dir):
    try:
        return plan.rollback_path(run_dir, str(run_id))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


def dns_rollback_source(run_id, run_dir):
    try:
        return rollback.rollback_source(str(run_dir), str(run_id))
    except (ValueError, rollback.RollbackError) as exc:
        raise AnsibleFilterError(str(exc)) from None


def dns_check_params(dr, records=None, region_addresses=None):
    return plan.check_params(dict(dr or {}), records, region_addresses or {})


def dns_cutover_plan(before, dr, checked, rollback=None, rto_left=None, region_addresses=None, recorded=None):
    return plan.cutover_plan(list(before or []), dict(dr or {}), dict(checked or {}), rollback,
                             None if rto_left is None else float(rto_left),
                             None if region_addresses is None else dict(region_addresses), dict(recorded or {}))


def dns_recorded_values(run_dir, names=None):
    return rollback.recorded_values(str(run_dir), names)


def dns_end_state(after, cutover_plan):
    return plan.end_state(list(after or []), cutover_plan)


def dns_summary(cutover_plan, change=None, end=None, completed=False, check_mode=False, run_id=None, lock=None):
    return plan.summary(cutover_plan, change, end, completed=bool(completed), check_mode=bool(check_mode),
                        run_id=run_id, lock=lock)


class FilterModule(object):
    def filters(self):
        return {"dns_servers": dns_servers, "dns_lock_key": dns_lock_key, "dns_rollback_path": dns_rollback_path,
                "dns_rollback_source": dns_rollback_source, "dns_recorded_values": dns_recorded_values,
                "dns_check_params": dns_check_params, "dns_cutover_plan": dns_cutover_plan,
                "dns_end_state": dns_end_state, "dns_summary": dns_summary}
