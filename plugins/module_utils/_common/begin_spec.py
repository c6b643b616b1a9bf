# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options every one-task start takes (erlmcp.dr.pg_begin, dns_begin, redis_begin), in one place.

Each start's module file builds its argument spec from this and adds its own options; its action plugin (on
plugins/plugin_utils/begin.py) validates the task against that spec; the doc fragment erlmcp.dr.begin documents these
options once (CONTRACT: `contract`, for the starts whose caller gives the inventory contract).
"""

from __future__ import annotations


def begin_argument_spec(contract=True):
    """runbook, contract (unless the start keeps its own contract: redis_begin) and spec."""
    spec = dict(runbook=dict(type="str", required=True))
    if contract:
        spec["contract"] = dict(type="dict", required=True)
    spec["spec"] = dict(type="dict")
    return spec
