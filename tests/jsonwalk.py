"""Test helper: every string inside a JSON value (to check that run folders hold no absolute path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def json_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_strings(v)
    elif isinstance(value, str):
        yield value
