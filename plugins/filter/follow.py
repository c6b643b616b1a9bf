# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter erlmcp.dr.pg_follow_refusals (documented in the adjacent .yml file): which nodes a
erlmcp.dr.pg_standby_follow task refused before changing anything, from its registered result."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.follow_plan import follow_refusals


def pg_follow_refusals(registered):
    if registered is not None and not isinstance(registered, dict):
        raise AnsibleFilterError("pg_follow_refusals expects the registered result of erlmcp.dr.pg_standby_follow "
                                 "(a dict), got %s" % type(registered).__name__)
    return follow_refusals(registered or {})


class FilterModule(object):
    def filters(self):
        return {"pg_follow_refusals": pg_follow_refusals}
