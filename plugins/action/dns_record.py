# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.dns_record: its engine runs in the controller's worker
(it only speaks DNS or the Route 53 API, see _module.run_on_controller): no module shipped,
dnspython already imported."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import DNS, warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._dns_record import REQUIRED_IF, argument_spec, run
from ansible_collections.erlmcp.dr.plugins.module_utils._module import run_on_controller

warm_driver()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        super(ActionModule, self).run(tmp, task_vars)
        return run_on_controller(self, task_vars or {}, "erlmcp.dr.dns_record", argument_spec(), run,
                                 needs=DNS, required_if=REQUIRED_IF)
