# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.composed_run: a composed runbook (regional_failover) from plain ansible-playbook or
an AWX job template, driven by the same composition engine as the runbook CLI (erlmcp_dr.compose.run).

Runs on the controller. The steps are child runs of their own playbooks, each with its own run folder, timeline
and summary; the lock over the whole move is held by this task's process from the first step to the last; the
journal lets a re-run finish a killed move (docs/design.md, "Composed runbooks: entry points").
Needs the erlmcp_dr Python package where ansible-playbook runs; the project's execution environment does not
install it yet (docs/awx.md): an AWX job template needs an EE built with the erlmcp-dr package.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.modules.composed_run import argument_spec

# The option names only: run() checks the values itself, with messages that say what a composed run expects.
ARGUMENTS = frozenset(argument_spec())


def inventory_source(task_vars):
    """The one inventory file the play was given: the steps run their playbooks against it."""
    sources = [source for source in task_vars.get("ansible_inventory_sources") or [] if source]
    if len(sources) != 1:
        raise ValueError("a composed runbook needs exactly one inventory source (-i FILE), found %d: %s"
                         % (len(sources), ", ".join(str(source) for source in sources) or "none"))
    return str(sources[0])


def given(parameters):
    """The checked parameters (the fact dr), without the unset optional ones (the engine fills the defaults)."""
    return dict((plain(key), plain(value)) for key, value in (parameters or {}).items() if value is not None)


def plain(value):
    """`value` as plain Python data: ansible-core's tagged strings and numbers (data tagging) cannot be written
    by the YAML dumper ansible-runner uses for the steps' extra vars ('cannot represent an object')."""
    if isinstance(value, dict):
        return dict((plain(key), plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return value.encode("utf-8").decode("utf-8") if kind is str else kind(value)
    return value


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = ARGUMENTS

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        runbook = args.get("runbook")
        if not isinstance(runbook, str) or not runbook:
            return dict(result, failed=True, msg="runbook: expected the composed runbook's name, e.g. "
                                                 "regional_failover; found %r" % (runbook,))
        parameters = args.get("parameters") or {}
        if not isinstance(parameters, dict):
            return dict(result, failed=True, msg="parameters: expected a dict (the fact dr of erlmcp.dr."
                                                 "runbook_params); found %s" % type(parameters).__name__)
        if self._play_context.check_mode:
            return dict(result, changed=False, skipped=True, msg="check mode: the plan only, no step was run")
        try:
            from erlmcp_dr.compose import run as composed
            from erlmcp_dr.errors import RunBusy, RunbookError
        except ImportError as exc:
            return dict(result, failed=True, msg="the erlmcp_dr Python package is not importable on the controller "
                                                 "(%s): install it where ansible-playbook runs (pip install "
                                                 "erlmcp-dr), or use the project's execution environment" % exc)
        try:
            run = composed.run(runbook, inventory=inventory_source(task_vars), extravars=given(parameters),
                               operator=args.get("operator") or None, playbooks_dir=task_vars.get("playbook_dir"))
        except RunBusy as exc:
            return dict(result, failed=True, rc=3, msg=str(exc))
        except (RunbookError, ValueError) as exc:
            return dict(result, failed=True, rc=2, msg=str(exc))
        summary = run.summary
        details = summary.get("details") or {}
        return dict(result, failed=not run.succeeded, rc=run.rc, changed=any(
            step.get("changed") for step in details.get("steps") or []), run_id=run.run_id, run_dir=run.run_dir,
            summary=summary, resume_command=details.get("resume_command"),
            msg="%s %s: %s" % (runbook, details.get("status"), summary.get("reason")))
