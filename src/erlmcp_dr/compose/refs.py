"""References: how a composed runbook's step takes a value from the parent's parameters or an earlier step.

A value in a workflow is either a literal (text, number, boolean, null, or a list/mapping of them) or a
reference `{from: "<namespace>.<path>"}`:

    params.<name>              a parameter of the composed run (after validation; an absent one is None)
    run.id                     the composed run's id (e.g. the incident id every notification shares)
    run.resumed_past_point_of_no_return   true when the interrupted run this one resumes had entered the
                               point-of-no-return step (compose/journal.py): failback's position step reads it
    targets.<from|to>.<kind>   what the inventory names in the region left / the region served from
                               (postgres, redis, app, app_url): read once at the run's start
    steps.<id>.<path>          a completed step's outcome: `run_id`, `rc`, `changed`, and its summary envelope
                               (`completed`, `end_state`, `details.<key>` ...), read from the child's result

References are data, never templates: a text that holds a Jinja marker is refused when the workflow is loaded,
and a resolved value is passed to the child as the data it is (the runner tags every string !unsafe).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

NAMESPACES = ("params", "run", "targets", "steps")
JINJA_MARKERS = ("{{", "}}", "{%", "%}", "{#", "#}")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")


class UnresolvedReference(ValueError):
    """A reference that does not resolve: names the reference and what was there instead."""


def is_reference(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"from"}


def parse(text: Any) -> Tuple[str, List[str]]:
    """(namespace, path) of a reference's text; ValueError saying what is expected."""
    if not isinstance(text, str) or not _PATH.match(text):
        raise ValueError(f"reference {text!r} is not a dotted path: expected e.g. params.to_region or "
                         "steps.database.details.new_primary")
    namespace, *path = text.split(".")
    if namespace not in NAMESPACES:
        raise ValueError(f"reference {text!r} starts with {namespace!r}: expected one of {', '.join(NAMESPACES)}")
    if not path:
        raise ValueError(f"reference {text!r} names a whole namespace: expected {namespace}.<name>")
    return namespace, path


def references(value: Any) -> List[str]:
    """Every reference text inside a value (literals nest: a mapping of references is fine)."""
    if is_reference(value):
        return [value["from"]]
    if isinstance(value, Mapping):
        return [ref for item in value.values() for ref in references(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in references(item)]
    return []


def jinja_markers(value: Any, where: str) -> List[str]:
    """Problems for every text (keys included) that holds a template marker: the workflow is data."""
    problems: List[str] = []
    if isinstance(value, str):
        found = [marker for marker in JINJA_MARKERS if marker in value]
        if found:
            problems.append(f"{where}: {value!r} holds the template marker {found[0]!r}; a workflow is data, never "
                            "Jinja: take a value by reference instead ({from: params.<name>} or "
                            "{from: steps.<id>.<path>})")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            problems.extend(jinja_markers(key, where))
            problems.extend(jinja_markers(item, f"{where}.{key}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems.extend(jinja_markers(item, f"{where}[{index}]"))
    return problems


def resolve(value: Any, context: Mapping[str, Any]) -> Any:
    """`value` with every reference replaced by what it names in `context` ({params, run, targets, steps})."""
    if is_reference(value):
        return lookup(value["from"], context)
    if isinstance(value, Mapping):
        return {key: resolve(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, context) for item in value]
    return value


def lookup(text: str, context: Mapping[str, Any]) -> Any:
    """What one reference names. A parameter not given is None (the child's default then applies); anything
    else that is missing raises UnresolvedReference naming the reference and the keys that were there."""
    namespace, path = parse(text)
    current: Any = context.get(namespace) or {}
    walked = [namespace]
    for index, part in enumerate(path):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        elif namespace == "params" and index == 0:
            return None
        else:
            found = sorted(map(str, current)) if isinstance(current, Mapping) else type(current).__name__
            raise UnresolvedReference(f"reference {text!r}: {'.'.join(walked)} has no {part!r} (found: {found})")
        walked.append(part)
    return current


def drop_unset(arguments: Mapping[str, Any]) -> Dict[str, Any]:
    """The arguments without the ones that resolved to None: the child runbook's own default applies."""
    return {key: value for key, value in arguments.items() if value is not None}


def first_step(reference: str) -> Optional[str]:
    """The step id a `steps.<id>...` reference names, else None."""
    namespace, path = parse(reference)
    return path[0] if namespace == "steps" else None
