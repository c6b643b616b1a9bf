"""Deep copies of ansible-core's immutable tagged values, made cheap in a warm run (issue 19, docs/speed-warm.md).

ansible-core 2.19 tags every string it parses from YAML with where it came from (an `Origin`, often
`TrustedAsTemplate` too), and `DataLoader.load_from_file` deep-copies what it parsed before it returns it, even
when nothing else holds the parse (the yaml inventory plugin asks for no cache). `copy.deepcopy` knows no tagged
type, so each tagged string is rebuilt through `__reduce_ex__` with a new tags mapping and new tags, each tag a
slotted dataclass rebuilt field by field. Measured on the lab's 20 KB inventory: the deep copy cost twice the parse.

A tag of the types below is a frozen dataclass of strings and integers, and a tagged string or number is an immutable
value whose tags mapping ansible-core only ever replaces (it builds a new value), never changes in place. Such a value
copied deeply is the value itself, as `copy.deepcopy` gives for a str or an int: `__deepcopy__` returns it. A tagged
scalar that carries any other tag (a `Deprecated` one, a tag type added by a later ansible-core) is copied as before.
Containers (tagged dicts, lists, sets) are still copied.

Installed by the zygote before it forks anything (zygote.preload), so only warm ansible-playbook processes and their
workers have it; a cold run is ansible-core as shipped. With another ansible-core whose internals differ, nothing is
changed (install() returns an empty list).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Tuple

# The tag types known to hold only immutable values, by module and class name (ansible-core 2.19).
IMMUTABLE_TAGS = (
    ("ansible._internal._datatag._tags", ("Origin", "TrustedAsTemplate", "SourceWasEncrypted", "VaultedValue")),
)
# The tagged scalar types whose native type is immutable.
TAGGED_SCALARS = ("_AnsibleTaggedStr", "_AnsibleTaggedInt", "_AnsibleTaggedFloat")
TAGGED_MODULE = "ansible.module_utils._internal._datatag"
IMMUTABLE_FIELD_TYPES = {"str", "int", "str | None", "int | None"}  # as the tags' modules annotate them


def _itself(value: Any, memo: Dict[int, Any]) -> Any:
    return value


def _tag_types() -> Tuple[type, ...]:
    import importlib

    found = []
    for module_name, names in IMMUTABLE_TAGS:
        module = importlib.import_module(module_name)
        found += [getattr(module, name) for name in names]
    return tuple(found)


def _scalar_copier(immutable_tags: Tuple[type, ...]):  # noqa: ANN202 - returns a __deepcopy__ method
    def deep_copy(value: Any, memo: Dict[int, Any]) -> Any:
        for tag in value._ansible_tags_mapping.values():
            if type(tag) not in immutable_tags:
                return copy._reconstruct(value, memo, *value.__reduce_ex__(4))  # what deepcopy does without us
        return value

    return deep_copy


def install() -> List[str]:
    """Gives the immutable tag types and tagged scalars a `__deepcopy__` returning the value itself. Returns the names
    of the types changed: none when this ansible-core's internals are not the ones described above, or when a type
    already defines its own `__deepcopy__`."""
    import importlib

    try:
        immutable_tags = _tag_types()
        tagged = importlib.import_module(TAGGED_MODULE)
        scalars = [getattr(tagged, name) for name in TAGGED_SCALARS]
    except (ImportError, AttributeError):
        return []
    if not callable(getattr(copy, "_reconstruct", None)):
        return []
    changed = []
    for cls in immutable_tags:
        if _dataclass_of_immutables(cls) and "__deepcopy__" not in vars(cls):
            cls.__deepcopy__ = _itself
            changed.append(cls.__name__)
    safe_tags = tuple(cls for cls in immutable_tags if vars(cls).get("__deepcopy__") is _itself)
    copier = _scalar_copier(safe_tags)
    for cls in scalars:
        if "__deepcopy__" not in vars(cls) and hasattr(cls, "_ansible_tags_mapping"):
            cls.__deepcopy__ = copier
            changed.append(cls.__name__)
    return changed


def _dataclass_of_immutables(cls: type) -> bool:
    """A frozen dataclass whose fields are all declared as str or int, or None (checked, not assumed: a later
    ansible-core that adds a list to one of these tags keeps its deep copy)."""
    import dataclasses

    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        return False
    return all(str(field.type) in IMMUTABLE_FIELD_TYPES for field in dataclasses.fields(cls))
