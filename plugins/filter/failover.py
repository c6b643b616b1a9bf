# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters erlmcp.dr.pg_failover_plan, pg_switchover_plan, pg_rejoin_plan, pg_end_state, pg_lock_key and
pg_follow_groups (documented in the adjacent .yml files): the pure decisions of
module_utils/_postgres/failover_plan.py, usable
in playbooks on the result of erlmcp.dr.pg_replication_info.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.failover_plan import (
    DEFAULT_MAX_LAG_BYTES,
    end_state,
    failover_plan,
    lock_key,
    rejoin_plan,
    switchover_plan,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.follow_plan import follow_groups


def _check_info(info, name):
    if not isinstance(info, dict) or "nodes" not in info:
        raise AnsibleFilterError("%s expects the result of erlmcp.dr.pg_replication_info (a dict with 'nodes'), "
                                 "got %s" % (name, type(info).__name__))


def _max_lag(name, max_lag_bytes):
    try:
        return None if max_lag_bytes is None else int(max_lag_bytes)
    except (TypeError, ValueError):
        raise AnsibleFilterError("%s: max_lag_bytes must be an integer, got %r" % (name, max_lag_bytes)) from None


def pg_failover_plan(info, away_from, candidate=None, max_lag_bytes=DEFAULT_MAX_LAG_BYTES, force=False,
                     fence_method="stop", primary_confirmed_down=False):
    _check_info(info, "pg_failover_plan")
    return failover_plan(info, away_from, candidate=candidate or None,
                         max_lag_bytes=_max_lag("pg_failover_plan", max_lag_bytes), force=bool(force),
                         fence_method=fence_method, primary_confirmed_down=bool(primary_confirmed_down))


def pg_switchover_plan(info, candidate, max_lag_bytes=None, primary_of_record=None):
    _check_info(info, "pg_switchover_plan")
    return switchover_plan(info, candidate, max_lag_bytes=_max_lag("pg_switchover_plan", max_lag_bytes),
                           primary_of_record=primary_of_record or None)


def pg_rejoin_plan(info, node=None):
    _check_info(info, "pg_rejoin_plan")
    return rejoin_plan(info, node=node or None)


def pg_end_state(info, primary, fenced_ok=None, left_out=None):
    _check_info(info, "pg_end_state")
    return end_state(info, primary, fenced_ok=tuple(fenced_ok or ()),
                     left_out=tuple(item["node"] if isinstance(item, dict) else item for item in left_out or ()))


def pg_lock_key(info):
    _check_info(info, "pg_lock_key")
    return lock_key(info)


def pg_follow_groups(names, hostvars):
    if not isinstance(names, (list, tuple)):
        raise AnsibleFilterError("pg_follow_groups expects a list of inventory host names, got %s"
                                 % type(names).__name__)
    return follow_groups(list(names), hostvars)


class FilterModule(object):
    def filters(self):
        return {
            "pg_failover_plan": pg_failover_plan,
            "pg_switchover_plan": pg_switchover_plan,
            "pg_rejoin_plan": pg_rejoin_plan,
            "pg_end_state": pg_end_state,
            "pg_lock_key": pg_lock_key,
            "pg_follow_groups": pg_follow_groups,
        }
