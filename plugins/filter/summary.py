# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters erlmcp.dr.pg_summary and pg_abort_message (documented in their .yml files), over
module_utils/_db_summary.py."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._db_summary import abort_message, db_summary


def pg_summary(plan, steps, completed=False, check_mode=False):
    return db_summary(plan, steps, completed=bool(completed), check_mode=bool(check_mode))


def pg_abort_message(plan, failure, fence=None, promote=None, unfence=None, after=None):
    return abort_message(plan, failure, fence=fence, promote=promote, unfence=unfence, after=after)


class FilterModule(object):
    def filters(self):
        return {"pg_summary": pg_summary, "pg_abort_message": pg_abort_message}
