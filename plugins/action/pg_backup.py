# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.pg_backup: its engine runs in the controller when the node is this machine (see
_module.run_on_controller), else the module is shipped to the node."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._module import run_on_controller, warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import POSTGRES
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr_backup import run
from ansible_collections.erlmcp.dr.plugins.modules.pg_backup import argument_spec

warm_driver(POSTGRES)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        super(ActionModule, self).run(tmp, task_vars)
        return run_on_controller(self, task_vars or {}, "erlmcp.dr.pg_backup", argument_spec(), run,
                                 needs=())
