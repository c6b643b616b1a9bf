"""JSON through the interpreter's C accelerator (`_json`) alone, for the modules every `runbook run` launcher loads.

`import json` loads `re` and `enum` (about 7 ms of an interpreter's start here, and `socket` and `signal` load
`enum` too: 10 ms of every `runbook run` before it reaches its zygote, 2-3x that on a busy machine: issue 19). The
work is done by the same C functions the json package uses: `dumps` gives exactly json.dumps's text (a zygote's key
is a hash of it), `loads` reads a document that is one JSON value as json.loads does. Errors are ValueError (a
malformed value's JSONDecodeError is one) and TypeError for a value JSON cannot hold.
"""

from __future__ import annotations

import _json

# typing only for the annotations (never evaluated): the launcher imports this module, and typing costs its start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union

_WHITESPACE = " \t\n\r"  # what JSON allows around a value


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any, sort_keys: bool = False) -> str:
    """json.dumps(value, sort_keys=sort_keys) with json's defaults (", " and ": ", ASCII, NaN allowed)."""
    encode = _json.make_encoder({}, _not_serializable, _json.encode_basestring_ascii, None, ": ", ", ", sort_keys,
                                False, True)
    return "".join(encode(value, 0))


class _Settings:
    """What json's C scanner reads from its decoder: json.loads's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


def loads(text: Union[str, bytes]) -> Any:
    """The value of a JSON document (bytes are UTF-8)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _json.make_scanner(_Settings())(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value
