"""Value to JSON text: a fast path through :mod:`json`, and an exact slow path for errors.

The fast path lets the C encoder do the work and then checks its output for what PostgreSQL
``jsonb`` or durably refuse.  When it fails or the check is unsure, :class:`_SlowEncoder`
writes the value again, one item at a time, so that its error can say where the problem is.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import json.encoder
import math
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from durably.codec.describe import join_path, segment, type_name
from durably.errors import ValueEncodingError, ValueTooLarge

#: Deepest nesting of containers a stored value may have.
MAX_DEPTH = 1000
#: Largest stored form of one value (an argument list, a result, a message...), in bytes
#: of UTF-8 JSON: well below PostgreSQL's 1 GB per field and 256 MB per jsonb document, so
#: that one value cannot stall a checkpoint, a replay or the memory of every worker.
MAX_VALUE_BYTES = 32 * 1024 * 1024

#: JSON text of a str, without checking for NUL or lone surrogates.
encode_str = json.encoder.encode_basestring


def b64(value: bytes | bytearray) -> str:
    """``value`` as base64 text."""
    return base64.b64encode(value).decode("ascii")


def utf8_ok(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8, i.e. has no lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_dumps(value: object, root: str = "$") -> str:
    """The JSON text of ``value``; raise ValueEncodingError naming where, if it has none."""
    if value is None:
        return "null"
    if type(value) is int and -(10**15) < value < 10**15:  # hot path: small ints
        return int.__repr__(value)
    try:
        text = _fast_encode(value)
    except Exception:
        return check_size(_SlowEncoder(root).encode(value), root)
    if (
        ("\\u0000" in text and _NUL_RE.search(text) is not None)
        or ('":' in text and _SUSPECT_KEY_RE.search(text[::-1]) is not None)
        or (not text.isascii() and not utf8_ok(text))
    ):
        return check_size(_SlowEncoder(root).encode(value), root)
    return check_size(text, root)


def check_size(text: str, where: str = "$") -> str:
    """``text``, if its UTF-8 form fits ``MAX_VALUE_BYTES``; ValueTooLarge if not."""
    if len(text) > MAX_VALUE_BYTES // 4:  # shorter text fits whatever its characters
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_VALUE_BYTES:
            raise ValueTooLarge(where, size, MAX_VALUE_BYTES)
    return text


# ---------------------------------------------------------------------------------------------
# Converting the types json does not know
# ---------------------------------------------------------------------------------------------


class _Unsupported(Exception):
    """Raised by :func:`_convert` for a value that has no JSON form."""


def _set_items(value: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(value)
    except TypeError:  # not sortable: keep iteration order
        return list(value)


def _isoformat(value: dt.date | dt.time) -> str:
    return value.isoformat()


# Past about 142 years, float seconds cannot hold every microsecond of a timedelta.
_EXACT_DAYS = 50_000


def _seconds(value: dt.timedelta) -> float:
    seconds = value.total_seconds()
    if abs(value.days) > _EXACT_DAYS and dt.timedelta(seconds=seconds) != value:
        raise ValueError(
            f"{value!r} is too long to be stored as seconds to the microsecond; "
            "round it to whole seconds"
        )
    return seconds


# Checked in order with isinstance, for subclasses; exact types are looked up first.
_CONVERTER_BASES: tuple[tuple[type, Callable[[Any], object]], ...] = (
    (dt.date, _isoformat),
    (dt.time, _isoformat),
    (dt.timedelta, _seconds),
    (uuid.UUID, str),
    (Decimal, str),
    (bytes, b64),
    (bytearray, b64),
    (set, _set_items),
    (frozenset, _set_items),
)
_CONVERTERS: dict[type, Callable[[Any], object]] = {
    dt.datetime: _isoformat,
    **dict(_CONVERTER_BASES),
}


def _convert(value: object) -> object:
    """One step towards JSON for a value ``json`` does not know; raise _Unsupported if none."""
    converter = _CONVERTERS.get(type(value))
    if converter is not None:
        return converter(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    model_dump = getattr(type(value), "model_dump", None)
    if model_dump is not None and callable(model_dump):  # pydantic v2, duck-typed
        return model_dump(value, mode="json")
    for base, converter in _CONVERTER_BASES:
        if isinstance(value, base):
            return converter(value)
    raise _Unsupported


# ---------------------------------------------------------------------------------------------
# Fast path
# ---------------------------------------------------------------------------------------------

_fast_encode = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    check_circular=False,  # a cycle ends in RecursionError; the slow path then names it
    separators=(",", ":"),
    default=_convert,
).encode

# An escaped NUL: ``\u0000`` preceded by an even number of backslashes.  A literal backslash
# followed by ``u0000`` is written ``\\u0000`` and must not match.
_NUL_RE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# ``json`` silently writes float, bool and None dict keys as strings ("1.5", "true", "null");
# durably refuses them.  Searched in the reversed text so that the pattern starts with the
# literal ``:"`` (one candidate per object key) which keeps it fast on multi-megabyte values.
# A match may be a false alarm (a str key "true"): the exact slow path then decides.
_SUSPECT_KEY_RE = re.compile(r':"(?:eurt|eslaf|llun|\d+(?:[-+]e\d+(?:\.\d+)?|\.\d+)-?)"[{,]')


# ---------------------------------------------------------------------------------------------
# Exact slow path
# ---------------------------------------------------------------------------------------------

_PICKLE_HINT = "durably stores values as JSON; convert it, or use codec=durably.PickleCodec()"


class _Frame:
    """An open array or object in the slow encoder."""

    __slots__ = ("count", "current", "idents", "is_dict", "items")

    def __init__(self, items: Iterator[Any], is_dict: bool, idents: list[int]) -> None:
        self.items = items
        self.is_dict = is_dict
        self.idents = idents
        self.count = 0
        self.current: object = 0


class _SlowEncoder:
    """Exact, iterative JSON writer: knows where every value sits, so its errors can say."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.stack: list[_Frame] = []
        self.active: set[int] = set()

    def path(self, depth: int | None = None) -> str:
        frames = self.stack if depth is None else self.stack[:depth]
        return join_path(self.root, [segment(frame.current) for frame in frames])

    def fail(self, message: str, depth: int | None = None) -> ValueEncodingError:
        return ValueEncodingError(message.replace("{path}", self.path(depth)))

    def enter(self, value: object) -> int:
        """Mark ``value`` as being written; refuse it if it already is (a cycle)."""
        ident = id(value)
        if ident in self.active:
            raise self.fail(
                f"cannot store value of type {type_name(value)!r} at {{path}}: "
                "it contains itself (a reference cycle); JSON has no references: "
                "store it without the cycle"
            )
        self.active.add(ident)
        return ident

    def string(self, value: str, what: str = "string") -> str:
        if "\x00" in value:
            raise self.fail(
                f"cannot store {what} containing a NUL character ('\\x00') at {{path}}: "
                "PostgreSQL text and jsonb cannot hold NUL; store it as bytes instead"
            )
        if not value.isascii() and not utf8_ok(value):
            raise self.fail(
                f"cannot store {what} containing a lone surrogate at {{path}}: "
                "it is not valid UTF-8; store it as bytes instead"
            )
        return encode_str(value)

    def integer(self, value: int) -> str:
        try:
            return int.__repr__(value)
        except ValueError:
            digits = int(value.bit_length() * math.log10(2)) + 1
            raise self.fail(
                f"cannot store an int of about {digits} digits at {{path}}: it is longer than "
                f"Python's int max str digits limit ({sys.get_int_max_str_digits()}); "
                "store it as a string or bytes instead"
            ) from None

    def key(self, key: object) -> str:
        if isinstance(key, str):
            return self.string(str.__str__(key), "dict key")
        if isinstance(key, int) and not isinstance(key, bool):
            return '"' + self.integer(key) + '"'
        raise self.fail(
            f"cannot store dict key {key!r} of type {type_name(key)!r} in the dict at {{path}}: "
            "JSON object keys must be str (int keys are stored as str)",
            len(self.stack) - 1,
        )

    def convert(self, value: object) -> object:
        try:
            return _convert(value)
        except _Unsupported:
            raise self.fail(
                f"cannot store value of type {type_name(value)!r} at {{path}}: {_PICKLE_HINT}"
            ) from None
        except Exception as exc:
            raise self.fail(
                f"cannot store value of type {type_name(value)!r} at {{path}}: "
                f"converting it to JSON failed: {type(exc).__name__}: {exc}"
            ) from exc

    def encode(self, value: object) -> str:
        out: list[str] = []
        stack = self.stack
        active = self.active
        end = object()
        while True:
            # Write one value; a converted value may take several steps to become JSON.
            origins: list[int] = []
            while True:
                if value is None:
                    out.append("null")
                elif value is True:
                    out.append("true")
                elif value is False:
                    out.append("false")
                elif isinstance(value, str):
                    out.append(self.string(value))
                elif isinstance(value, int):
                    out.append(self.integer(value))
                elif isinstance(value, float):
                    if not math.isfinite(value):
                        raise self.fail(
                            f"cannot store float {value!r} at {{path}}: JSON and PostgreSQL "
                            "jsonb have no NaN or Infinity; use None or a string instead"
                        )
                    out.append(float.__repr__(value))
                elif isinstance(value, (list, tuple, dict)):
                    origins.append(self.enter(value))
                    if len(stack) >= MAX_DEPTH:
                        raise self.fail(
                            f"cannot store value at {{path}}: it is nested deeper than "
                            f"{MAX_DEPTH} levels; store it flatter (or as text you encode)"
                        )
                    if isinstance(value, dict):
                        out.append("{")
                        stack.append(_Frame(iter(value.items()), True, origins))
                    else:
                        out.append("[")
                        stack.append(_Frame(iter(value), False, origins))
                    origins = []
                else:
                    origins.append(self.enter(value))
                    value = self.convert(value)
                    continue
                break
            for ident in origins:  # a converted value that ended as a scalar
                active.discard(ident)

            # Move on to the next item of the innermost open container, closing finished ones.
            while stack:
                frame = stack[-1]
                item: Any = next(frame.items, end)
                if item is end:
                    out.append("}" if frame.is_dict else "]")
                    for ident in frame.idents:
                        active.discard(ident)
                    stack.pop()
                    continue
                if frame.count:
                    out.append(",")
                if frame.is_dict:
                    key, value = item
                    frame.current = key
                    out.append(self.key(key))
                    out.append(":")
                else:
                    frame.current = frame.count
                    value = item
                frame.count += 1
                break
            else:
                return "".join(out)
