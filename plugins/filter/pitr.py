# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter erlmcp.dr.pg_pitr_summary (documented in the adjacent .yml file): the summary of pg_backup and pg_restore,
from module_utils/_pitr/plan.py."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import plan


def pg_pitr_summary(runbook, steps, completed=False, check_mode=False, meta=None):
    return plan.summary(runbook, steps, completed, check_mode, meta)


class FilterModule(object):
    def filters(self):
        return {"pg_pitr_summary": pg_pitr_summary}
