# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every erlmcp.dr module ends: check for psycopg, run its engine, exit or fail with its facts.

Every engine has one shape, run(params, check_mode, diff, warn), and returns the result dict or
raises ModuleFailure (message + the facts gathered so far); kubernetes.core's runner does the same.
"""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import ModuleFailure, psycopg_import_error


def execute(module, run, *, needs_psycopg=True):
    """Call run(params, check_mode=, diff=, warn=module.warn) and hand its outcome to Ansible."""
    if needs_psycopg:
        missing = psycopg_import_error()
        if missing is not None:
            module.fail_json(msg=missing_required_lib("psycopg"), exception=str(missing))
    try:
        result = run(module.params, check_mode=module.check_mode, diff=module._diff, warn=module.warn)
    except ModuleFailure as exc:
        module.fail_json(msg=str(exc), **exc.facts)
    module.exit_json(**result)


# -- the same engine, run by the module's action plugin on the controller ---------------------------------------


def warm_driver():
    """Import psycopg now, if it is there, so the workers ansible-core forks from this process inherit it.

    Called when an action plugin below is first loaded: ansible-core's strategy loads the plugin's class in the
    main process before it forks the task's worker, so every later pg task starts with the driver imported instead
    of paying its import (the largest part of a module task) again.
    """
    return psycopg_import_error() is None


ON_CONTROLLER_VAR = "erlmcp_dr_pg_on_controller"


def runs_here(action, task_vars):
    """Whether the task's target is this very machine, as the controller's worker runs it: a local connection
    (the delegated host's, with delegate_to), no privilege escalation, and the variable
    erlmcp_dr_pg_on_controller not false (false ships the module as any module is shipped)."""
    from ansible.module_utils.parsing.convert_bool import boolean

    if not boolean(task_vars.get(ON_CONTROLLER_VAR, True), strict=False):
        return False
    return getattr(action._connection, "transport", None) == "local" and not action._play_context.become


def run_on_controller(action, task_vars, module_name, argument_spec, run, needs_psycopg=True, required_if=None,
                      **spec_checks):
    """What an action plugin named like its module does: run the module's engine in this worker when the target
    is this machine and psycopg imports here (no module shipped, no interpreter started, imports warm), else
    ship the module as usual. Same argument spec, check mode, diff, warnings and failure facts either way.

    needs_psycopg is a bool or a function of the validated parameters; spec_checks are the module's other
    AnsibleModule checks (required_one_of=, mutually_exclusive=, ...).
    """
    result = {}
    if not runs_here(action, task_vars):
        return action._execute_module(module_name=module_name, module_args=action._task.args, task_vars=task_vars)
    _validation, params = action.validate_argument_spec(argument_spec=argument_spec, required_if=required_if,
                                                        **spec_checks)
    wants_driver = needs_psycopg(params) if callable(needs_psycopg) else needs_psycopg
    if wants_driver and psycopg_import_error() is not None:
        return action._execute_module(module_name=module_name, module_args=action._task.args, task_vars=task_vars)
    warnings = []
    try:
        outcome = run(params, check_mode=bool(action._task.check_mode), diff=bool(action._task.diff),
                      warn=warnings.append)
    except ModuleFailure as exc:
        outcome = dict(exc.facts, failed=True, msg=str(exc))
    result.update(outcome)
    result.setdefault("changed", False)
    if warnings:
        result["warnings"] = list(result.get("warnings", [])) + warnings
    return result
