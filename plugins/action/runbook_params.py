# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.runbook_params: a runbook's parameters, read as data and validated once.

Runs on the controller as the first task of every runbook. Each parameter's value is read
raw from the task's variables, never templated: a value Ansible would template (a trusted
string holding {{, {% or {#, e.g. given with `ansible-playbook -e` or an AWX survey) is refused
before anything else; values tagged unsafe (what the erlmcp_dr runner writes) are plain data
whatever they contain. Then module_utils/_common/runbook_params.validate checks types, choices,
required options and min/max ranges. Before any of that, settings only the inventory may give (dr_lock_dir)
are refused when they come as extra vars.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._common import runbook_params as _runbook_params
from ansible_collections.erlmcp.dr.plugins.modules.runbook_params import argument_spec

try:  # ansible-core >= 2.19: data tagging
    from ansible.template import is_trusted_as_template as _trusted
except ImportError:  # pragma: no cover - older ansible-core: everything not marked unsafe is templated

    def _trusted(value):
        return isinstance(value, str) and not getattr(value, "__UNSAFE__", False)


SPEC_VAR = "runbook"
# Settings that decide how runs of this deployment exclude each other: the inventory's (or the environment's,
# ERLMCP_DR_LOCK_DIR) to set, never an extra var's. From `-e`, dr_lock_dir would move the run lock away from
# the one every other run takes (two writers), and as an extra var it would be templated where the lock is used.
INVENTORY_ONLY = {"dr_lock_dir": "ERLMCP_DR_LOCK_DIR"}
REDACTED = "********"


def templated_values(value, where):
    """[(where, marker)] for the strings in `value` that Ansible would render as templates."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            inner = "%s.%s" % (where, key)
            if _trusted(key):
                found.extend(_runbook_params.template_markers(key, inner + " (key)"))
            found.extend(templated_values(item, inner))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found.extend(templated_values(item, "%s[%d]" % (where, index)))
    elif isinstance(value, str) and _trusted(value):
        found.extend(_runbook_params.template_markers(value, where))
    return found


def template_error(name, found):
    markers = ", ".join(sorted(set(_shown_marker(marker) for _where, marker in found)))
    places = ", ".join(sorted(set(where for where, _marker in found if where != name)))
    inside = " (in %s)" % places if places else ""
    return ("parameter '%s' contains template markers (%s)%s: runbook parameters are data and are never "
            "templated; pass the literal value (the runbook CLI and erlmcp_dr.run() pass every value as data), "
            "or mark it !unsafe in an extra-vars file" % (name, markers, inside))


def _shown_marker(marker):
    closing = {"{{": "}}", "{%": "%}", "{#": "#}"}
    return "%s ... %s" % (marker, closing[marker]) if marker in closing else "a %s header" % marker


def extra_vars():
    """The run's extra vars (-e), as ansible-playbook loaded them (cached in its process, inherited by workers)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.vars import load_extra_vars

    return load_extra_vars(DataLoader())


def inventory_only_errors(given_extra):
    """An error for each inventory-only setting given as an extra var; its value is never rendered or echoed."""
    return ["'%s' was given as an extra var (-e): it is the inventory's to set (a group or host variable), or "
            "%s in the controller's environment, never an extra var's (it decides which run lock every run "
            "takes; from -e a run could step around another's lock). Remove -e %s and set it in the inventory"
            % (name, env, name) for name, env in sorted(INVENTORY_ONLY.items()) if name in given_extra]


def given_values(spec, task_vars):
    """The parameters that have a value, read raw (not templated): name -> value, aliases included."""
    values = {}
    for name, option in spec.items():
        for key in [name] + list((option or {}).get("aliases") or []):
            if key in task_vars:
                values[key] = task_vars[key]
    return values


def shown(spec, values):
    """The validated values with every no_log parameter shown as ********."""
    return dict((name, REDACTED if (spec.get(name) or {}).get("no_log") and value not in (None, "") else value)
                for name, value in values.items())


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        spec = args["spec"]
        if spec is None:
            runbook = task_vars.get(SPEC_VAR)
            spec = runbook.get("parameters") if isinstance(runbook, dict) else None
        if not isinstance(spec, dict):
            return dict(result, failed=True, msg=(
                "no parameter spec: expected the play variable 'runbook.parameters' (an argument spec mapping) "
                "or the 'spec' option, found %s" % type(spec).__name__))
        problems = inventory_only_errors(extra_vars())
        if problems:
            return dict(result, failed=True, parameter_errors=problems,
                        msg="invalid runbook parameters (nothing was run): " + "; ".join(problems))
        given = given_values(spec, task_vars)
        problems = [template_error(name, found) for name, found in
                    ((name, templated_values(value, name)) for name, value in given.items()) if found]
        if problems:
            return dict(result, failed=True, parameter_errors=problems,
                        msg="invalid runbook parameters (nothing was run): " + "; ".join(problems))
        validated, errors = _runbook_params.validate(spec, given)
        if errors:
            return dict(result, failed=True, parameter_errors=errors,
                        msg="invalid runbook parameters (nothing was run): " + "; ".join(errors))
        secrets = set(name for name, option in spec.items() if (option or {}).get("no_log"))
        facts = dict((name, value) for name, value in validated.items() if name not in secrets)
        result.update(changed=False, ansible_facts={"dr": facts}, parameters=shown(spec, validated))
        return result
