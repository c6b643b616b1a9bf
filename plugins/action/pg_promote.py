# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.pg_promote: its engine runs in the controller (it only speaks SQL, see
_module.run_on_controller).

With fence.perform the task is delegated to the old primary: the promotion is armed here (connections to the
candidate and every member kept open, the checks the fence cannot change done), then the old primary is fenced,
in this worker when its host is this machine (_module.runs_here) or by shipping erlmcp.dr.pg_fence to it, then
the promotion follows at once, on the open connections.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import (
    fencing_check, run_on_controller, runs_here, warm_driver)
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES, psycopg_import_error
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.promote import (
    fence_here, fence_params, run, run_armed,
)
from ansible_collections.erlmcp.dr.plugins.modules.pg_promote import argument_spec, performs_fence

warm_driver(POSTGRES)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        if not performs_fence(self._task.args) or psycopg_import_error() is not None:
            # Without psycopg here, a performing task is shipped whole to the old primary's host (delegate_to),
            # whose module fences locally and promotes from there.
            return run_on_controller(self, task_vars, "erlmcp.dr.pg_promote", argument_spec(), run, needs=POSTGRES)
        return self._run_armed(task_vars)

    def _run_armed(self, task_vars):
        _validation, params = self.validate_argument_spec(argument_spec=argument_spec())
        tokens = {}
        if not self._task.check_mode:
            # The armed path does not pass through run_on_controller, so it runs the run lock's fencing check itself,
            # before the fence: a run that lost its shared lock (a paused controller) fences and promotes nothing.
            refusal, tokens = fencing_check(self, task_vars)
            if refusal:
                return dict(failed=True, msg=refusal, fenced=True, changed=False, fencing_tokens=tokens)
        warnings, fenced = [], []
        fence_here_too = runs_here(self, task_vars)
        diff = bool(self._task.diff)

        def fence_step(check_mode):
            args = fence_params(params)
            if fence_here_too:
                outcome = fence_here(args, check_mode, diff, warnings.append)
            else:
                outcome = self._execute_module(module_name="erlmcp.dr.pg_fence",
                                               module_args=dict((k, v) for k, v in args.items() if v is not None),
                                               task_vars=task_vars)
                outcome.pop("invocation", None)
                warnings.extend(outcome.get("warnings") or [])
            fenced.append(outcome)
            return outcome

        try:
            result = run_armed(params, fence_step, check_mode=bool(self._task.check_mode), diff=diff,
                               warn=warnings.append)
        except ModuleFailure as exc:
            result = dict(exc.facts, failed=True, msg=str(exc))
        except Exception as exc:  # noqa: BLE001 - the fence result must reach the rescue
            if not fenced:
                raise
            result = dict(failed=True, msg="after fencing the old primary, nothing was promoted: %s: %s"
                          % (type(exc).__name__, exc), fence_result=fenced[-1], changed=bool(fenced[-1].get("changed")))
        result.setdefault("changed", False)
        if tokens:  # the audit trail's record of this step names the token the change ran under
            result["fencing_tokens"] = tokens
        if self._task.delegate_to:  # the inventory name of the node fenced: reports and the audit trail name it
            result["fence_host"] = self._task.delegate_to
        fence_diff = (result.get("fence_result") or {}).pop("diff", None)
        if diff and fence_diff:
            result["diff"] = [fence_diff] + ([result["diff"]] if result.get("diff") else [])
        if warnings:
            result["warnings"] = list(result.get("warnings", [])) + warnings
        return result
