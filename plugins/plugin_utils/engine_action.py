# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one base of the action plugins that run a module's engine in the controller.

A module whose engine only speaks a network protocol (SQL, Redis, DNS, HTTP) or runs a local program needs no
interpreter on the target: its action plugin validates the task's arguments against the module's own argument spec
and calls the engine here, in Ansible's worker (_module.run_on_controller, which also ships the module whole when the
target is another machine and the engine cannot reach it from here). Each such plugin names four things and nothing
else: its module, its engine, its argument spec and the drivers the engine needs (a tuple, or a function of the
parameters when only some options need one).
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import run_on_controller


class EngineAction(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    MODULE = ""  # the module's FQCN (messages, and the module shipped when the engine cannot run here)
    ENGINE = None  # staticmethod(run): run(params, check_mode=False, diff=False, warn=None) -> result dict
    ARGUMENT_SPEC = None  # staticmethod(argument_spec): the module's own spec, never a copy
    NEEDS = ()  # the drivers the engine imports (_postgres.POSTGRES ...), or staticmethod(params -> drivers)
    SPEC_RULES = {}  # required_if, mutually_exclusive, required_one_of: as the module declares them

    def run(self, tmp=None, task_vars=None):
        super(EngineAction, self).run(tmp, task_vars)
        return run_on_controller(self, task_vars or {}, self.MODULE, self.ARGUMENT_SPEC(), self.ENGINE,
                                 needs=self.NEEDS, **self.SPEC_RULES)
