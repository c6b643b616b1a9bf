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
import dataclasses
import importlib
from typing import Any, Callable, Dict, List, Tuple

# The tag types known to hold only immutable values (ansible-core 2.19), and the tagged scalar types whose native
# type is immutable.
TAGS_MODULE = "ansible._internal._datatag._tags"
IMMUTABLE_TAGS = ("Origin", "TrustedAsTemplate", "SourceWasEncrypted", "VaultedValue")
TAGGED_MODULE = "ansible.module_utils._internal._datatag"
TAGGED_SCALARS = ("_AnsibleTaggedStr", "_AnsibleTaggedInt", "_AnsibleTaggedFloat")
IMMUTABLE_FIELD_TYPES = {"str", "int", "str | None", "int | None"}  # as the tags' modules annotate them
DeepCopy = Callable[[Any, Dict[int, Any]], Any]


def _itself(value: Any, memo: Dict[int, Any]) -> Any:
    return value


def _scalar_copier(immutable_tags: Tuple[type, ...]) -> DeepCopy:
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
    try:
        tags = importlib.import_module(TAGS_MODULE)
        tagged = importlib.import_module(TAGGED_MODULE)
        tag_types = [getattr(tags, name) for name in IMMUTABLE_TAGS]
        scalars = [getattr(tagged, name) for name in TAGGED_SCALARS]
    except (ImportError, AttributeError):
        return []
    if not callable(getattr(copy, "_reconstruct", None)):
        return []
    safe_tags = [cls for cls in tag_types if _dataclass_of_immutables(cls) and "__deepcopy__" not in vars(cls)]
    for cls in safe_tags:
        cls.__deepcopy__ = _itself
    copier = _scalar_copier(tuple(safe_tags))
    changed_scalars = [cls for cls in scalars
                       if "__deepcopy__" not in vars(cls) and hasattr(cls, "_ansible_tags_mapping")]
    for cls in changed_scalars:
        cls.__deepcopy__ = copier
    return [cls.__name__ for cls in (*safe_tags, *changed_scalars)]


def _dataclass_of_immutables(cls: type) -> bool:
    """A frozen dataclass whose fields are all declared as str or int, or None (checked, not assumed: a later
    ansible-core that adds a list to one of these tags keeps its deep copy)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        return False
    return all(str(field.type) in IMMUTABLE_FIELD_TYPES for field in dataclasses.fields(cls))
