# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters erlmcp.dr.pg_pitr_summary and erlmcp.dr.pg_in_place_end_state (documented in the adjacent .yml files):
the summary of pg_backup, pg_restore and pg_restore_in_place, and the in-place restore's end state, from
module_utils/_pitr/plan.py."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import plan


def pg_pitr_summary(runbook, steps, completed=False, check_mode=False, meta=None):
    return plan.summary(runbook, steps, completed, check_mode, meta)


def pg_in_place_end_state(end_state, cluster, new_timeline):
    return plan.in_place_end_state(end_state, cluster, new_timeline)


class FilterModule(object):
    def filters(self):
        return {"pg_pitr_summary": pg_pitr_summary, "pg_in_place_end_state": pg_in_place_end_state}
