# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every erlmcp.dr module ends: check for the drivers it needs, run its engine, exit or fail with its facts.

Every engine has one shape, run(params, check_mode, diff, warn), and returns the result dict or
raises ModuleFailure (message + the facts gathered so far); kubernetes.core's runner does the same.
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure


def translators_for(needs, params):
    """The translators (_errors.ErrorTranslator) a task needs: `needs` is one, a sequence of them, or a function of
    the validated parameters returning either (pg_fence's method=stop drives pg_ctl and needs no psycopg)."""
    if callable(needs) and not hasattr(needs, "translate"):
        needs = needs(params)
    if needs is None:
        return ()
    if hasattr(needs, "translate"):
        return (needs,)
    return tuple(needs)


def missing_driver(translators):
    """(library, ImportError) of the first translator whose library does not import here, else None."""
    for translator in translators:
        error = translator.import_error()
        if error is not None:
            return translator.library, error
    return None


def call_engine(run, params, translators, **mode):
    """run(params, **mode); a driver error the engine left untranslated still ends as a ModuleFailure with its
    error_kind, not a traceback. Only driver errors: anything else is a bug and surfaces as one."""
    try:
        return run(params, **mode)
    except ModuleFailure:
        raise
    except Exception as exc:
        for translator in translators:
            if translator.is_driver_error(exc):
                raise translator.failure(exc, {}) from None
        raise


def execute(module, run, needs=()):
    """Call run(params, check_mode=, diff=, warn=module.warn) and hand its outcome to Ansible.

    needs: the translators of the systems the engine talks to (_postgres.POSTGRES, _redis.REDIS, _dns.DNS), whose
    libraries must import here; see translators_for.
    """
    translators = translators_for(needs, module.params)
    missing = missing_driver(translators)
    if missing is not None:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=str(missing[1]), error_kind="other")
    try:
        result = call_engine(run, module.params, translators, check_mode=module.check_mode, diff=module._diff,
                             warn=module.warn)
    except ModuleFailure as exc:
        module.fail_json(msg=str(exc), **exc.facts)
    module.exit_json(**result)


def controller_only(module, name):
    """How a module ends whose work is all in its action plugin (the run lock, the parameters, the starts, notify...):
    its file holds the argument spec and the documentation, and this end is reached only when the file runs without
    its action plugin (ansible-test reading the spec, a copy run by hand). Nothing of it can run on a managed host."""
    module.fail_json(msg="%s runs on the controller as its action plugin (plugins/action/%s.py); it has nothing to run "
                         "on a managed host" % (name, name.rsplit(".", 1)[-1]), error_kind="other")


# -- the same engine, run by the module's action plugin on the controller ---------------------------------------


def warm_driver(*translators):
    """Import the translators' libraries now, if they are there, so the workers ansible-core forks from this
    process inherit them. Whether all imported.

    Called when an action plugin below is first loaded: ansible-core's strategy loads the plugin's class in the
    main process before it forks the task's worker, so every later task starts with the driver imported instead
    of paying its import (the largest part of a module task) again.
    """
    warmed = [translator.warm() for translator in translators]  # every one, not only up to the first missing
    warm_lock_store()
    return all(warmed)


def warm_lock_store():
    """Once this ansible-playbook process holds a run lock in etcd, import the etcd client here, so the fencing check
    of every later engine step (fencing_check, in a forked worker) does not import it again: measured on the
    loaded test machine, requests + etcd3gw took ~1.2 s per import. Runs without an etcd lock pay one glob."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd

    return _lock_etcd.warm_client(os.getpid())


ON_CONTROLLER_VAR = "erlmcp_dr_pg_on_controller"


def runs_here(action, task_vars):
    """Whether the task's target is this very machine, as the controller's worker runs it: a local connection
    (the delegated host's, with delegate_to), no privilege escalation, and the variable
    erlmcp_dr_pg_on_controller not false (false ships the module as any module is shipped)."""
    from ansible.module_utils.parsing.convert_bool import boolean

    if not boolean(task_vars.get(ON_CONTROLLER_VAR, True), strict=False):
        return False
    return getattr(action._connection, "transport", None) == "local" and not action._play_context.become


def run_on_controller(action, task_vars, module_name, argument_spec, run, needs=(), required_if=None,
                      **spec_checks):
    """What an action plugin named like its module does: run the module's engine in this worker when the target
    is this machine and the drivers it needs import here (no module shipped, no interpreter started, imports warm),
    else ship the module as usual. Same argument spec, check mode, diff, warnings and failure facts either way.

    needs is as for execute (translators, or a function of the validated parameters); spec_checks are the
    module's other AnsibleModule checks (required_one_of=, mutually_exclusive=, ...).
    """
    result = {}
    if not action._task.check_mode:
        refusal, tokens = fencing_check(action, task_vars)
        if refusal:
            return dict(failed=True, msg=refusal, fenced=True, changed=False, fencing_tokens=tokens)
        if tokens:  # the audit trail's record of this step names the token the change ran under
            result["fencing_tokens"] = tokens
    if not runs_here(action, task_vars):
        return dict(result, **action._execute_module(module_name=module_name, module_args=action._task.args,
                                                     task_vars=task_vars))
    _validation, params = action.validate_argument_spec(argument_spec=argument_spec, required_if=required_if,
                                                        **spec_checks)
    translators = translators_for(needs, params)
    if missing_driver(translators) is not None:
        return dict(result, **action._execute_module(module_name=module_name, module_args=action._task.args,
                                                     task_vars=task_vars))
    warnings = []
    try:
        outcome = call_engine(run, params, translators, check_mode=bool(action._task.check_mode),
                              diff=bool(action._task.diff), warn=warnings.append)
    except ModuleFailure as exc:
        outcome = dict(exc.facts, failed=True, msg=str(exc))
    result.update(outcome)
    result.setdefault("changed", False)
    if warnings:
        result["warnings"] = list(result.get("warnings", [])) + warnings
    return result


def fencing_check(action, task_vars):
    """The run lock's fencing check, right before a step acts (_lock.fencing_check): (refusal or None, {key: fencing
    token}). Every engine step of the collection runs through here (run_on_controller), and so does
    erlmcp.dr.lock_fence, the checked step the runbooks put before a module that has no action plugin; a run that
    lost its shared lock is refused before it touches anything."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock

    # The worker's parent is the ansible-playbook process that took the lock (see erlmcp.dr.run_lock).
    return _lock.fencing_check(os.getppid(), lambda: _lock.lock_variables(action._templar, task_vars))
