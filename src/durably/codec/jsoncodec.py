"""The default codec: readable JSON, rebuilt from type hints."""

from __future__ import annotations

from typing import Any

from durably.codec.decode import json_load
from durably.codec.encode import json_dumps


class JsonCodec:
    """The default codec: readable ``jsonb``, rebuilt into Python types from type hints.

    Stored as themselves: ``None``, bool, int, float, str, list, dict.  Converted:
    dataclasses and pydantic models (objects), datetime/date/time (ISO 8601 text),
    timedelta (seconds), UUID and Decimal (text), bytes (base64 text), enums (their value),
    tuples, sets and NamedTuples (arrays), int dict keys (text).  Anything else raises
    :class:`~durably.errors.ValueEncodingError` before anything is written, as do NaN and
    infinite floats, strings containing NUL, ints too long for ``str()``, cycles and nesting
    deeper than 1000 levels.
    """

    name: str = "json"

    def dumps(self, value: object) -> str:
        """Return the JSON text of ``value``; raise ValueEncodingError if it has none."""
        return json_dumps(value)

    def load(self, data: object, hint: object = None) -> Any:
        """Rebuild a value from parsed JSON ``data`` as the type ``hint`` describes.

        With no hint (or ``Any``/``object``) the data comes back unchanged.  Raise
        :class:`~durably.errors.ValueDecodingError` when the data does not fit the hint.
        """
        return json_load(data, hint)

    def __repr__(self) -> str:
        return "JsonCodec()"
