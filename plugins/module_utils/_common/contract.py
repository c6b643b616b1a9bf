# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory contract: which groups, hosts and variables a playbook needs, checked before anything runs.

Pure checks (no templating, no inventory access): the erlmcp.dr.inventory_contract action plugin reads the
values and hands them here. Every check returns a list of problems (strings), so that one failure lists them all.
"""

from __future__ import annotations

from ansible.module_utils.common.validation import (
    check_type_bool,
    check_type_float,
    check_type_int,
    check_type_path,
)

OPTION_KEYS = frozenset(["type", "required", "choices", "no_log", "description", "elements", "default"])
GROUP_KEYS = frozenset(["min_hosts", "host_vars", "description"])
DESIGN_DOC = "docs/design.md, section 'Inventory contract'"


class Missing(object):
    """Marks a variable that is not defined at all (None is a defined, empty value)."""

    def __repr__(self):
        return "<missing>"


MISSING = Missing()


def _check_scalar_text(value):
    if isinstance(value, (dict, list, tuple, set)) or value is None or isinstance(value, bool):
        raise TypeError("not text")
    return str(value)


def _check_list(value):
    if not isinstance(value, (list, tuple)):
        raise TypeError("not a list")
    return list(value)


def _check_dict(value):
    if not isinstance(value, dict):
        raise TypeError("not a mapping")
    return value


CHECKERS = {
    "str": _check_scalar_text,
    "path": lambda value: check_type_path(_check_scalar_text(value)),
    "int": lambda value: check_type_int(value) if not isinstance(value, bool) else _fail_bool(),
    "float": check_type_float,
    "bool": check_type_bool,
    "list": _check_list,
    "dict": _check_dict,
    "raw": lambda value: value,
}


def _fail_bool():
    raise TypeError("a boolean is not a number")


def type_name(value):
    """The YAML-ish name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def show(value, secret):
    """The value as a message may show it: never a secret's, and short."""
    if secret:
        return "a %s (value hidden)" % type_name(value)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return "%s (%s)" % (text, type_name(value))


# ---------------------------------------------------------------- the contract itself


def contract_problems(groups, variables):
    """Problems with the contract given to the action (a playbook bug, not an inventory one)."""
    problems = []
    if not isinstance(groups, dict):
        return ["groups must be a mapping of group name -> {min_hosts, host_vars}, got a %s" % type_name(groups)]
    for name, group in groups.items():
        if not isinstance(group, dict):
            problems.append("groups.%s must be a mapping with min_hosts and host_vars, got a %s" % (
                name, type_name(group)))
            continue
        unknown = sorted(set(group) - GROUP_KEYS)
        if unknown:
            problems.append("groups.%s has unknown keys %s (known: %s)" % (name, ", ".join(unknown),
                                                                           ", ".join(sorted(GROUP_KEYS))))
        min_hosts = group.get("min_hosts", 1)
        if not isinstance(min_hosts, int) or isinstance(min_hosts, bool) or min_hosts < 0:
            problems.append("groups.%s.min_hosts must be a whole number >= 0, got %r" % (name, min_hosts))
        problems.extend(spec_problems(group.get("host_vars") or {}, "groups.%s.host_vars" % name))
    problems.extend(spec_problems(variables, "vars"))
    return problems


def spec_problems(spec, where):
    if not isinstance(spec, dict):
        return ["%s must be an argument spec (a mapping of variable name -> options), got a %s" % (
            where, type_name(spec))]
    problems = []
    for name, option in spec.items():
        if not isinstance(option, dict):
            problems.append("%s.%s must be a mapping (type, required, ...), got a %s" % (
                where, name, type_name(option)))
            continue
        unknown = sorted(set(option) - OPTION_KEYS)
        if unknown:
            problems.append("%s.%s has unsupported keys %s (supported: %s)" % (
                where, name, ", ".join(unknown), ", ".join(sorted(OPTION_KEYS))))
        if option.get("type", "str") not in CHECKERS:
            problems.append("%s.%s has type %r (supported: %s)" % (where, name, option.get("type"),
                                                                   ", ".join(sorted(CHECKERS))))
    return problems


# ---------------------------------------------------------------- the inventory against it


def value_problem(name, value, option):
    """What is wrong with one defined value (None when it is fine), without showing a secret."""
    expected = option.get("type", "str")
    secret = bool(option.get("no_log"))
    if value is None:
        return "%s is empty (null), expected type %s" % (name, expected)
    try:
        converted = CHECKERS[expected](value)
    except (TypeError, ValueError):
        return "%s is %s, expected type %s" % (name, show(value, secret), expected)
    if expected in ("str", "path") and not converted.strip():
        return "%s is an empty string, expected type %s" % (name, expected)
    choices = option.get("choices")
    if choices and converted not in choices:
        return "%s is %s, expected one of %s" % (name, show(value, secret), ", ".join(str(c) for c in choices))
    if expected == "list" and option.get("elements"):
        for index, element in enumerate(converted):
            element_option = {"type": option["elements"], "no_log": secret}
            problem = value_problem("%s[%d]" % (name, index), element, element_option)
            if problem:
                return problem
    return None


def vars_problems(values, spec, where):
    """Problems of one set of variables (a host's, or the controller's) against an argument spec.

    values maps each variable of spec to its value (already templated where that was allowed) or MISSING;
    a template that could not be rendered is given as TemplateFailure.
    """
    problems = []
    for name in sorted(spec):
        option = spec[name]
        value = values.get(name, MISSING)
        if isinstance(value, Missing):
            if option.get("required"):
                problems.append("%s: %s is not defined, expected type %s%s" % (
                    where, name, option.get("type", "str"), _purpose(option)))
            continue
        if isinstance(value, TemplateFailure):
            problems.append("%s: %s could not be templated: %s" % (where, name, value.error))
            continue
        problem = value_problem(name, value, option)
        if problem:
            problems.append("%s: %s" % (where, problem))
    return problems


def _purpose(option):
    description = option.get("description")
    if isinstance(description, list):
        description = " ".join(str(d) for d in description)
    return " (%s)" % description if description else ""


class TemplateFailure(object):
    """A trusted template value that could not be rendered."""

    def __init__(self, error):
        self.error = error


def group_problems(name, group, hosts_by_group):
    """Problems of one group's presence and size (None for hosts means the group is not in the inventory)."""
    min_hosts = group.get("min_hosts", 1)
    hosts = hosts_by_group.get(name)
    if hosts is None:
        known = sorted(g for g in hosts_by_group if g not in ("all", "ungrouped"))
        return ["group '%s' is not in the inventory, expected at least %d host(s) in it (groups found: %s)" % (
            name, min_hosts, ", ".join(known) or "none")]
    if len(hosts) < min_hosts:
        return ["group '%s' has %d host(s), expected at least %d" % (name, len(hosts), min_hosts)]
    return []


def failure_message(description, problems, sources):
    lines = ["The inventory does not meet the contract%s: %d problem(s)." % (
        " of %s" % description if description else "", len(problems))]
    lines.extend("  - %s" % problem for problem in problems)
    lines.append("Inventory source(s): %s." % (", ".join(sources) if sources else "none given"))
    lines.append("What the inventory must hold: see %s." % DESIGN_DOC)
    return "\n".join(lines)
