"""How values, types, hints and positions inside a value are named in codec error messages."""

from __future__ import annotations

import json
from typing import get_origin


def type_name(value: object) -> str:
    """The qualified name of ``value``'s type."""
    return type(value).__qualname__


def json_type(data: object) -> str:
    """The JSON type of parsed ``data`` ("null", "number", "array"...)."""
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "boolean"
    if isinstance(data, (int, float)):
        return "number"
    if isinstance(data, str):
        return "string"
    if isinstance(data, list):
        return "array"
    if isinstance(data, dict):
        return "object"
    return type_name(data)


def hint_name(hint: object) -> str:
    """A type hint as written in code, without the ``typing.`` prefix."""
    if isinstance(hint, type) and get_origin(hint) is None:
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def segment(key: object) -> str:
    """One step of a path: ``.name``, ``["odd key"]`` or ``[3]``."""
    if isinstance(key, str):
        return f".{key}" if key.isidentifier() else f"[{json.dumps(key)}]"
    if isinstance(key, int) and not isinstance(key, bool):
        return f"[{key}]"
    return f"[{key!r}]"


def join_path(root: str, segments: list[str]) -> str:
    """``root`` plus segments; a very deep path keeps only its two ends."""
    if len(segments) > 20:
        hidden = len(segments) - 10
        segments = [*segments[:5], f"...({hidden} levels)...", *segments[-5:]]
    return root + "".join(segments)
