# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter erlmcp.dr.region_health_summary (documented in region_health_summary.yml): region_health's verdicts, splits
and table, from module_utils/_region/verdicts.py."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._region import verdicts as regions


def region_health_summary(hosts, hostvars, register="region_health_checks"):
    return regions.summary(regions.rows(hosts, hostvars, register))


class FilterModule(object):
    def filters(self):
        return {"region_health_summary": region_health_summary}
