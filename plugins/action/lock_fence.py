# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.lock_fence: the run lock's fencing check as a step of its own, for the runbooks' steps
that do not pass through _module.run_on_controller (a module shipped without an action plugin: the Redis modules
today). The check itself is _module.fencing_check, the one every engine step runs."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._common import module as _module
from ansible_collections.erlmcp.dr.plugins.modules.lock_fence import argument_spec


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        result.update(changed=False, fenced=False, fencing_tokens={})
        if self._task.check_mode:  # a plan takes no lock, so there is no token to check
            return dict(result, checked=False)
        refusal, tokens = _module.fencing_check(self, task_vars or {})
        result.update(checked=bool(tokens), fencing_tokens=tokens)
        if refusal:
            step = (" (the step it guards: %s)" % args["before"]) if args["before"] else ""
            return dict(result, failed=True, fenced=True, msg=refusal + step)
        return result
