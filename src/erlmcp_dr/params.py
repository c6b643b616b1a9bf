"""Extra vars for a runbook: parsed from the CLI, checked against the runbook's argument spec.

The check is the collection's module_utils/_common/runbook_params.validate (Ansible's own
ArgumentSpecValidator plus min/max ranges), the same code the playbook's first task
(`erlmcp.dr.runbook_params`) runs, so the CLI, the Python API, ansible-playbook and AWX
accept and reject the same values. Here it runs before anything starts, and every error
names the parameter.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import yaml

from erlmcp_dr import paths
from erlmcp_dr.catalog import Runbook, flat_description
from erlmcp_dr.errors import ParameterError
from erlmcp_dr.redaction import REDACTED, scrub_text

# Spec types whose CLI values stay exactly as typed (no YAML interpretation).
_TEXT_TYPES = frozenset({"str", "path"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------- validation


def validate(runbook: Runbook, extravars: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The caller's values, coerced to their spec types; defaults are left to the playbook.

    The check is module_utils/_common/runbook_params.validate, the one the playbook's first task
    (erlmcp.dr.runbook_params) runs: types, choices, required options and min/max ranges.
    Raises ParameterError naming the first offending parameter (the message lists all problems).
    """
    if extravars is None:
        extravars = {}
    if not isinstance(extravars, Mapping):
        raise ParameterError("extravars", f"extra vars must be a mapping of parameter names to values, "
                                          f"got {type(extravars).__name__}")
    given = {str(key): value for key, value in extravars.items()}
    validated, errors = runbook_params_module().validate(runbook.parameters, given)
    if errors:
        raise _parameter_error(runbook, given, errors)
    return {_canonical(runbook, key): validated[_canonical(runbook, key)] for key in given}


def runbook_params_module() -> Any:
    """The collection's plugins/module_utils/_common/runbook_params.py: the same code the playbook runs."""
    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._common import runbook_params as _runbook_params

    return _runbook_params


_UNSUPPORTED = re.compile(r"^unsupported parameter '([^']+)'")
_MISSING = re.compile(r"^missing required parameter '([^']+)'(?: \(in ([^)]+)\))?")
_NAMED = re.compile(r"parameter '([^']+)'")


def _parameter_error(runbook: Runbook, given: Mapping[str, Any], errors: List[str]) -> ParameterError:
    problems: List[Tuple[str, str]] = []
    for error in errors:
        problems.append(_problem(runbook, error, given))
    secrets = secret_values(runbook, given)
    first = problems[0][0] if problems else "?"
    text = "; ".join(scrub_text(message, secrets) for _, message in problems) or "validation failed"
    return ParameterError(first, f"runbook '{runbook.name}': {text}")


def _problem(runbook: Runbook, error: str, given: Mapping[str, Any]) -> Tuple[str, str]:
    unsupported = _UNSUPPORTED.match(error)
    if unsupported:
        shown = unsupported.group(1)  # a long name comes cut (excerpt): find the name as given
        return _unsupported(runbook, next((key for key in given if key == shown), None)
                            or next((key for key in given if key.startswith(shown)), shown))
    missing = _MISSING.match(error)
    if missing and not missing.group(2):
        return _missing(runbook, missing.group(1))
    named = _NAMED.search(error)
    return (named.group(1) if named else _named_in(runbook, error)), error


def _unsupported(runbook: Runbook, name: str) -> Tuple[str, str]:
    valid = sorted(runbook.parameters)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(valid) if valid else "none (this runbook takes no parameters)"
    return name, f"unsupported parameter {_excerpt(name)}.{hint} Supported parameters include: {listing}"


def _excerpt(text: str) -> str:
    """The text quoted, cut with its length said when long (module_utils/_common/runbook_params.excerpt)."""
    return str(runbook_params_module().excerpt(text))


def _missing(runbook: Runbook, name: str) -> Tuple[str, str]:
    description = flat_description(runbook.parameters.get(name, {}))
    about = f" ({description})" if description else ""
    return name, f"missing required parameter '{name}'{about}; pass it with -e {name}=VALUE"


def _named_in(runbook: Runbook, message: str) -> str:
    """The parameter a validation message is about: the earliest spec name it mentions."""
    best: Tuple[int, str] = (len(message) + 1, "?")
    for name in _all_names(runbook.parameters):
        match = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message)
        if match and match.start() < best[0]:
            best = (match.start(), name)
    return best[1]


def _all_names(spec: Mapping[str, Any]) -> List[str]:
    found: List[str] = []
    for name, option in spec.items():
        found.append(name)
        found.extend((option or {}).get("aliases") or [])
        found.extend(_all_names((option or {}).get("options") or {}))
    return found


def _canonical(runbook: Runbook, key: str) -> str:
    if key in runbook.parameters:
        return key
    for name, option in runbook.parameters.items():
        if key in (option.get("aliases") or []):
            return name
    return key


# ---------------------------------------------------------------- secrets


def secret_names(runbook: Runbook) -> List[str]:
    """Top-level parameters marked `no_log: true`: never written into a run folder."""
    return [name for name, option in runbook.parameters.items() if option.get("no_log")]


def secret_values(runbook: Runbook, values: Mapping[str, Any]) -> List[str]:
    """The secret values among `values` (nested options included), as strings, longest first."""
    found: set[str] = set()
    _collect_secrets(runbook.parameters, values, found)
    return sorted(found, key=lambda text: (-len(text), text))


def _collect_secrets(spec: Mapping[str, Any], values: Any, found: set) -> None:
    if isinstance(values, list):
        for item in values:
            _collect_secrets(spec, item, found)
        return
    if not isinstance(values, Mapping):
        return
    for name, option in spec.items():
        keys = [name, *((option or {}).get("aliases") or [])]
        for key in keys:
            if key not in values or values[key] in (None, ""):
                continue
            if (option or {}).get("no_log"):
                _flatten_secret(values[key], found)
            elif (option or {}).get("options"):
                _collect_secrets(option["options"], values[key], found)


def _flatten_secret(value: Any, found: set) -> None:
    if isinstance(value, Mapping):
        for item in value.values():
            _flatten_secret(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _flatten_secret(item, found)
    elif value not in (None, ""):
        found.add(str(value))


def redact(runbook: Runbook, values: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of `values` with every no_log parameter's value replaced by '********'."""
    return _redact(runbook.parameters, values)


def _redact(spec: Mapping[str, Any], values: Any) -> Any:
    if isinstance(values, list):
        return [_redact(spec, item) for item in values]
    if not isinstance(values, Mapping):
        return values
    out: Dict[str, Any] = {}
    for key, value in values.items():
        option = spec.get(key) or _by_alias(spec, key)
        if option.get("no_log") and value not in (None, ""):
            out[key] = REDACTED
        elif option.get("options"):
            out[key] = _redact(option["options"], value)
        else:
            out[key] = value
    return out


def _by_alias(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    for option in spec.values():
        if key in ((option or {}).get("aliases") or []):
            return option
    return {}


# ---------------------------------------------------------------- CLI -e parsing


def parse_extra_vars(items: Iterable[str], runbook: Optional[Runbook] = None,
                     base_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Merges `-e` arguments in order (later wins): `key=value`, `@file.yml|json`, `{"json": ...}`.

    A `key=value` value is read as YAML (numbers, booleans, lists, mappings) unless the
    runbook's spec types the parameter as str/path (or does not know it): those stay text.
    """
    merged: Dict[str, Any] = {}
    for item in items:
        merged.update(parse_extra_var(item, runbook, base_dir))
    return merged


def parse_extra_var(item: str, runbook: Optional[Runbook] = None, base_dir: Optional[Path] = None) -> Dict[str, Any]:
    text = item.strip()
    if text.startswith("@"):
        return _from_file(text[1:], base_dir)
    if text.startswith("{"):
        return _from_inline(text)
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not _NAME.match(key):
        raise ParameterError(key or item, f"cannot read extra var {_excerpt(item)}: expected key=value, @file.yml or "
                                          "a JSON object (one key=value per -e)")
    return {key: _typed_value(key, value, runbook)}


def _typed_value(key: str, value: str, runbook: Optional[Runbook]) -> Any:
    option = (runbook.parameters.get(key) or _by_alias(runbook.parameters, key)) if runbook else {}
    if not option or (option.get("type") or "str") in _TEXT_TYPES:
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if parsed is None and value.strip() not in ("null", "~", "Null", "NULL"):
        return value  # an empty value stays the empty string, let the validator judge it
    return parsed


class _Loader(yaml.SafeLoader):
    """YAML as ansible-playbook -e @file reads it, as far as data goes: `!unsafe` marks plain text (every
    value is data here anyway)."""


def _unsafe_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_Loader.add_constructor("!unsafe", _unsafe_node)


def load_extravars_file(path: Path) -> Dict[str, Any]:
    """A YAML/JSON extra vars file (`!unsafe` read as plain text), e.g. the one the runner writes."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    return {str(key): value for key, value in data.items()} if isinstance(data, dict) else {}


def _from_file(name: str, base_dir: Optional[Path]) -> Dict[str, Any]:
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except OSError as exc:
        raise ParameterError(f"@{name}", f"cannot read extra vars file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ParameterError(f"@{name}", f"extra vars file {path} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError(f"@{name}", f"extra vars file {path} must hold a mapping, got {type(data).__name__}")
    return {str(key): value for key, value in data.items()}


def _from_inline(text: str) -> Dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            message = f"cannot read extra vars {_excerpt(text)}: not valid JSON or YAML ({str(exc)[:300]})"
            raise ParameterError("extravars", message) from exc
    if not isinstance(data, dict):
        raise ParameterError("extravars", f"inline extra vars must be a JSON object, got {type(data).__name__}")
    return {str(key): value for key, value in data.items()}
