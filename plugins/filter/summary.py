# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters erlmcp.dr.pg_summary and pg_abort_message over module_utils/_postgres/summary.py, and summary_envelope over
module_utils/_common/summary.py (documented in their .yml files)."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.summary import abort_message, db_summary
from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import envelope


def pg_summary(plan, steps, completed=False, check_mode=False, runbook=None, meta=None):
    return db_summary(plan, steps, completed=bool(completed), check_mode=bool(check_mode), runbook=runbook,
                      meta=meta)


def summary_envelope(details, runbook, action=None, reason=None, completed=False, check_mode=False, did=None,
                     end=None):
    """The envelope around a runbook's details when no system's producer builds it (region_health, a run that
    stopped before its producer ran)."""
    return envelope(runbook, action=action, reason=reason, completed=bool(completed), check_mode=bool(check_mode),
                    did=did, end=end, details=details)


def pg_abort_message(plan, failure, fence=None, promote=None, unfence=None, after=None):
    return abort_message(plan, failure, fence=fence, promote=promote, unfence=unfence, after=after)


class FilterModule(object):
    def filters(self):
        return {"pg_summary": pg_summary, "pg_abort_message": pg_abort_message, "summary_envelope": summary_envelope}
