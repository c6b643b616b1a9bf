# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters erlmcp.dr.redis_nodes, redis_lock_key, redis_target, redis_failover_candidate,
redis_end_state, redis_backup_end_state and redis_summary (documented
in the adjacent .yml files): the pure decisions of module_utils/_redis/plan.py, for the Redis runbooks."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import plan


def _check_info(info, name):
    if not isinstance(info, dict) or "nodes" not in info:
        raise AnsibleFilterError("%s expects the result of erlmcp.dr.redis_info (a dict with 'nodes'), got %s"
                                 % (name, type(info).__name__))


def redis_nodes(hosts, hostvars):
    return plan.nodes(hosts, hostvars)


def redis_lock_key(members):
    return plan.lock_key(members)


def redis_target(info, node=None, purpose="restore"):
    _check_info(info, "redis_target")
    if purpose not in ("restore", "backup"):
        raise AnsibleFilterError("redis_target: purpose must be restore or backup, got %r" % (purpose,))
    return plan.target(info, node or None, purpose)


def redis_failover_candidate(info, candidate=None, away_from=None, app_config_text=None):
    _check_info(info, "redis_failover_candidate")
    return plan.failover_candidate(info, candidate or None, away_from or None,
                                   plan.recorded_primary(app_config_text))


def redis_end_state(info, primary, left_out=None):
    _check_info(info, "redis_end_state")
    return plan.end_state(info, primary, left_out)


def redis_backup_end_state(stored, backup):
    if not isinstance(stored, dict) or not isinstance(backup, dict):
        raise AnsibleFilterError("redis_backup_end_state expects the results of erlmcp.dr.redis_backup (the read-back "
                                 "in check mode, then the backup), got %s and %s"
                                 % (type(stored).__name__, type(backup).__name__))
    return plan.backup_end_state(stored, backup)


def redis_summary(runbook, target_plan, steps, completed=False, check_mode=False, meta=None):
    return plan.summary(runbook, target_plan, steps, completed=bool(completed), check_mode=bool(check_mode),
                        meta=meta)


class FilterModule(object):
    def filters(self):
        return {"redis_nodes": redis_nodes, "redis_lock_key": redis_lock_key, "redis_target": redis_target,
                "redis_failover_candidate": redis_failover_candidate,
                "redis_end_state": redis_end_state, "redis_backup_end_state": redis_backup_end_state,
                "redis_summary": redis_summary}
