# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.notify: renders and sends on the controller; the engine is
module_utils/_notify/engine.py.

Why an action plugin: the templates ship in the collection (plugins/notify_templates/), beside this file, and
the receivers (Slack, PagerDuty, the status page, the SMTP relay) are reached from where the runbook runs, not
from a database host; nothing is copied to a managed node, and no secret leaves the controller's memory.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._notify import engine as _notify
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.modules.notify import argument_spec

# Inventory variables the options default to (docs/notify.md).
DEFAULT_VARS = {"channels": "dr_notify_channels", "routing": "dr_notify_routing",
                "template_dir": "dr_notify_template_dir"}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, params = self.validate_argument_spec(argument_spec=argument_spec())
        for option, variable in DEFAULT_VARS.items():
            if params.get(option) is None and task_vars.get(variable) is not None:
                params[option] = self._templar.template(task_vars[variable])
        warnings = []
        try:
            outcome = _notify.run(params, check_mode=bool(self._task.check_mode), diff=bool(self._task.diff),
                                  warn=warnings.append)
        except ModuleFailure as exc:
            outcome = dict(exc.facts, failed=True, msg=str(exc))
        result.update(outcome)
        if warnings:
            result["warnings"] = list(result.get("warnings", [])) + warnings
        return result
