"""Secrets out of text: the one scrubber every writer of output, reports and errors uses."""

from __future__ import annotations

import json
from collections.abc import Iterable

REDACTED = "********"
MIN_SCRUB_LENGTH = 4  # shorter values would mangle unrelated text; such a value is no secret anyway


def scrub_text(text: str, values: Iterable[str]) -> str:
    """`text` with every secret value (and its JSON-escaped form) replaced by ********."""
    for value in values:
        if len(value) < MIN_SCRUB_LENGTH:
            continue
        text = text.replace(value, REDACTED)
        escaped = json.dumps(value)[1:-1]
        if escaped != value:
            text = text.replace(escaped, REDACTED)
    return text
