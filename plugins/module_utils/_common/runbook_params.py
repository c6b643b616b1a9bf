# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A runbook's parameters checked against its spec: pure, no I/O, Python 3.8-compatible.

The spec is an Ansible argument spec (the `runbook.parameters` of a playbook) whose options
may also carry `min` and `max` (numbers, also shown in the docs). Types, choices and required
options are checked by Ansible's own ArgumentSpecValidator (after `strip_doc_keys`); ranges,
non-finite numbers, NUL bytes and containers given for a text option are checked here, so
every entry point (the action plugin `erlmcp.dr.runbook_params`, the CLI, the Python API)
accepts and refuses exactly the same values with the same words.

Every error names the parameter, what was found (its type and, unless it is a secret, its
value) and what was expected.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import RequiredError, UnsupportedError

DOC_KEYS = ("min", "max")
MARKERS = ("{{", "{%", "{#")
HEADER = "#jinja2:"  # a template header (it may change the markers): Ansible templates such a string too
HIDDEN = "(value hidden: no_log)"
# Without a `max` (or `min`), an int must still fit a signed 64-bit integer: larger values
# are never meant, and break the modules ("MODULE FAILURE") instead of failing clearly.
INT_LIMIT = 2 ** 63 - 1
_NUMERIC = ("int", "float")
_TEXT = ("str", "path", "raw_text")
_SHOWN = 80  # characters of a value quoted in an error


def strip_doc_keys(spec):
    """A copy of `spec` without the keys ArgumentSpecValidator does not know (min, max), nested options too."""
    clean = {}
    for name, option in (spec or {}).items():
        option = dict(option or {})
        for key in DOC_KEYS:
            option.pop(key, None)
        if isinstance(option.get("options"), dict):
            option["options"] = strip_doc_keys(option["options"])
        clean[name] = option
    return clean


def template_markers(value, path=""):
    """[(where, marker)] for every string in `value` (nested lists/dicts, keys too) containing {{, {% or {#,
    or starting with a #jinja2: header."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = "%s.%s" % (path, key) if path else str(key)
            found.extend(_markers_in(key, where + " (key)"))
            found.extend(template_markers(item, where))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found.extend(template_markers(item, "%s[%d]" % (path, index)))
    else:
        found.extend(_markers_in(value, path))
    return found


def _markers_in(value, where):
    if not isinstance(value, str):
        return []
    found = [(where, HEADER)] if value.startswith(HEADER) else []
    return found + [(where, marker) for marker in MARKERS if marker in value]


def validate(spec, values):
    """(validated values with defaults, [error strings]): every problem, each naming its parameter."""
    spec = spec or {}
    values = dict(values or {})
    errors = []
    errors.extend(_empty_required(spec, values))
    errors.extend(_shape_errors(spec, values, ""))
    result = ArgumentSpecValidator(strip_doc_keys(spec)).validate(values)
    for error in result.errors.errors:
        if isinstance(error, UnsupportedError):
            errors.extend(_unsupported(spec, result.unsupported_parameters))
        elif isinstance(error, RequiredError):
            errors.extend(_required(error.error_message))
        else:
            errors.append(_type_error(spec, values, error.error_message))
    validated = result.validated_parameters
    errors.extend(_range_errors(spec, validated, ""))
    return validated, _unique(errors)


def _unique(errors):
    seen = []
    for error in errors:
        if error not in seen:
            seen.append(error)
    return seen


# ---------------------------------------------------------------- what Ansible does not check


def _empty_required(spec, values):
    """A required parameter given as null (`-e candidate=null`, an empty survey answer) is missing."""
    return ["missing required parameter '%s' (it is null)" % name for name, option in spec.items()
            if (option or {}).get("required") and name in values and values[name] is None]


def _shape_errors(spec, values, prefix):
    """Containers for text options, booleans for numbers, NUL bytes: refused before Ansible coerces them."""
    errors = []
    for name, option in spec.items():
        option = option or {}
        for key in [name] + list(option.get("aliases") or []):
            if key not in values or values[key] is None:
                continue
            errors.extend(_shape_error(prefix + key, option, values[key]))
    return errors


def _shape_error(name, option, value):
    kind = option.get("type") or "str"
    if kind in _TEXT and isinstance(value, (dict, list, tuple)):
        return ["parameter '%s' must be a %s: got %s; pass a single value" % (name, kind, describe(value, option))]
    if kind in _NUMERIC and isinstance(value, bool):
        return ["parameter '%s' must be %s: got %s" % (name, _expected_number(option, False), describe(value, option))]
    nul = _nul_at(value)
    if nul is not None:
        where = " at %s" % nul if nul else ""
        return ["parameter '%s' contains a NUL byte (\\x00)%s: text parameters cannot hold NUL bytes" % (name, where)]
    if kind == "dict" and isinstance(option.get("options"), dict) and isinstance(value, dict):
        return _shape_errors(option["options"], value, name + ".")
    return []


def _nul_at(value, path=""):
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        where = "%s[%r]" % (path, key)
        if isinstance(key, str) and "\x00" in key:
            return where
        found = _nul_at(item, where)
        if found is not None:
            return found
    return None


def _range_errors(spec, validated, prefix):
    errors = []
    for name, option in spec.items():
        option = option or {}
        value = validated.get(name)
        if value is None:
            continue
        kind = option.get("type") or "str"
        if kind in _NUMERIC:
            error = _out_of_range(prefix + name, option, value)
            if error:
                errors.append(error)
        elif kind == "list" and option.get("elements") in _NUMERIC:
            for index, item in enumerate(value):
                error = _out_of_range("%s%s[%d]" % (prefix, name, index), option, item)
                if error:
                    errors.append(error)
        elif kind == "dict" and isinstance(option.get("options"), dict) and isinstance(value, dict):
            errors.extend(_range_errors(option["options"], value, prefix + name + "."))
    return errors


def _out_of_range(name, option, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    low, high = _bounds(option)
    problem = ""
    if isinstance(value, float) and not math.isfinite(value):
        problem = "not a finite number"
    elif low is not None and value < low:
        problem = "below the minimum %s" % _number(low)
    elif high is not None and value > high:
        problem = "above the maximum %s" % _number(high)
    if not problem:
        return None
    return "parameter '%s' is out of range: got %s (%s); expected %s" % (
        name, describe(value, option), problem, _expected_number(option))


def _bounds(option):
    low, high = option.get("min"), option.get("max")
    if (option.get("type") == "int" or option.get("elements") == "int") and high is None:
        high = INT_LIMIT
    if (option.get("type") == "int" or option.get("elements") == "int") and low is None:
        low = -INT_LIMIT - 1
    return low, high


def _expected_number(option, implicit_limit=True):
    kind = option.get("type") or "str"
    if kind == "list":
        kind = option.get("elements") or "raw"
    noun = "an int" if kind == "int" else "a number"
    low, high = option.get("min"), option.get("max")
    if low is not None and high is not None:
        return "%s from %s to %s" % (noun, _number(low), _number(high))
    if low is not None:
        return "%s of at least %s" % (noun, _number(low))
    if high is not None:
        return "%s of at most %s" % (noun, _number(high))
    if kind == "int" and implicit_limit:
        return "an int that fits in 64 bits (at most %d)" % INT_LIMIT
    return "a finite number" if implicit_limit else noun


def _number(value):
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# ---------------------------------------------------------------- Ansible's errors, reworded


_ARGUMENT = re.compile(r"argument '([^']+)'(?: is of type \S+)?(?: found in '([^']+)')?")
_CHOICES = re.compile(r"value of (\S+) must be one of: (.*), got: (.*?)(?: found in '([^']+)')?\.?$")
_ELEMENTS = re.compile(r"option '([^']+)'")


def _type_error(spec, values, message):
    """One of Ansible's type/choice/element errors, rewritten to name the parameter, the value and what was expected."""
    name, parent = _subject(message)
    option, value = _lookup(spec, values, name, parent)
    full = "%s.%s" % (parent, name) if parent else name
    if option is None:
        return "invalid parameter: %s" % message
    choices = _CHOICES.match(message)
    if choices:
        return "parameter '%s' must be one of: %s; got %s" % (full, choices.group(2), describe(value, option))
    kind = option.get("type") or "str"
    if kind == "list" and option.get("elements"):
        expected = "a list of %s" % option["elements"]
    else:
        expected = _expected_number(option, implicit_limit=False) if kind in _NUMERIC else "a %s" % kind
    detail = message.split(": ", 1)[1] if ": " in message and not option.get("no_log") else ""
    detail = " (%s)" % _shorten(detail) if detail else ""
    return "parameter '%s' must be %s: got %s%s" % (full, expected, describe(value, option), detail)


def _subject(message):
    choices = _CHOICES.match(message)
    if choices:
        return choices.group(1), choices.group(4)
    argument = _ARGUMENT.search(message)
    if argument:
        return argument.group(1), argument.group(2)
    element = _ELEMENTS.search(message)
    if element:
        return element.group(1), None
    return None, None


def _lookup(spec, values, name, parent):
    if name is None:
        return None, None
    if parent:
        option = spec.get(parent) or {}
        sub = option.get("options") or {}
        given = values.get(parent) if isinstance(values.get(parent), dict) else {}
        return sub.get(name), given.get(name)
    option = spec.get(name)
    if option is None:
        for candidate in spec.values():
            if name in ((candidate or {}).get("aliases") or []):
                return candidate, values.get(name)
        return None, None
    return option, values.get(name)


def _required(message):
    listed = message.split(":", 1)[1] if ":" in message else message
    listed, _sep, parent = listed.partition(" found in ")
    names = [part.strip() for part in listed.split(",") if part.strip()]
    where = " (in %s)" % parent.strip() if parent.strip() else ""
    return ["missing required parameter '%s'%s" % (name, where) for name in names] or [message]


def _unsupported(spec, unknown):
    valid = ", ".join(sorted(spec)) or "none"
    names = sorted(".".join(map(str, item)) if isinstance(item, tuple) else str(item) for item in unknown)
    return ["unsupported parameter %s; supported parameters: %s" % (excerpt(name), valid) for name in names]


def excerpt(text, limit=_SHOWN):
    """`text` quoted, cut after `limit` characters with its length said: an error never echoes a 100 kB value."""
    text = str(text)
    return repr(text) if len(text) <= limit else "%r... (%d characters)" % (text[:limit], len(text))


def describe(value, option=None):
    """'int 5', "str 'pg-b'", 'list [...]'; a secret's value is never shown."""
    kind = type(value).__name__
    if option is not None and option.get("no_log"):
        return "%s %s" % (kind, HIDDEN)
    if isinstance(value, str):
        return "str %s" % excerpt(value)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return "%s with about %d digits" % (kind, int((value.bit_length() - 1) * math.log10(2)) + 1)
    return "%s %s" % (kind, _shorten(repr(value)))


def _shorten(text):
    return text if len(text) <= _SHOWN * 2 else text[:_SHOWN * 2] + "..."
