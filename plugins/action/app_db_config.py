# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.app_db_config: when the file lives on this machine (a local connection, no become),
the engine computes the config and writes the file in the controller's worker (no module shipped, no interpreter
started: the task costs what its atomic write costs); else the module is shipped to the host as usual."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._app_config import run
from ansible_collections.erlmcp.dr.plugins.module_utils._module import run_on_controller
from ansible_collections.erlmcp.dr.plugins.modules.app_db_config import argument_spec


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        super(ActionModule, self).run(tmp, task_vars)
        return run_on_controller(self, task_vars or {}, "erlmcp.dr.app_db_config", argument_spec(), run,
                                 needs_psycopg=False)
