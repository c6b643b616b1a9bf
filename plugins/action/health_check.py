# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.health_check: its engine runs in the controller when the target is this machine
(it only speaks HTTP, TCP, SQL and the Redis protocol; see _module.run_on_controller). A region check runs
several of them back to back: this saves shipping the module and starting an interpreter for each."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._health import run
from ansible_collections.erlmcp.dr.plugins.module_utils._module import run_on_controller, warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import POSTGRES
from ansible_collections.erlmcp.dr.plugins.modules.health_check import REQUIRED_IF, argument_spec, needs_psycopg

warm_driver(POSTGRES)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        super(ActionModule, self).run(tmp, task_vars)
        return run_on_controller(self, task_vars or {}, "erlmcp.dr.health_check", argument_spec(), run,
                                 needs=lambda params: POSTGRES if needs_psycopg(params) else (),
                                 required_if=REQUIRED_IF)
