"""How durably stores values: JSON text for PostgreSQL ``jsonb`` columns, rebuilt from hints.

Workflow inputs, step results, workflow results and errors are written as ``jsonb`` so that
they stay readable with plain SQL.  On replay they must come back with the Python type the
code expects, so :class:`JsonCodec` rebuilds them from type hints (dataclasses, pydantic
models, datetimes, UUIDs, enums, containers, unions...).

:class:`PickleCodec` is an opt-in escape hatch for values that have no JSON form.
"""

from __future__ import annotations

import base64
import binascii
import collections.abc
import contextlib
import dataclasses
import datetime as dt
import enum
import functools
import importlib
import inspect
import json
import json.encoder
import math
import pickle
import re
import sys
import traceback
import types
import typing
import uuid
import weakref
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Protocol, get_args, get_origin, runtime_checkable

from durably.errors import RecordedError, ValueDecodingError, ValueEncodingError

__all__ = [
    "Codec",
    "JsonCodec",
    "PickleCodec",
    "dump_error",
    "dumps_args",
    "load_args",
    "load_error",
    "return_hint",
]

#: Deepest nesting of containers a stored value may have.
MAX_DEPTH = 1000


@runtime_checkable
class Codec(Protocol):
    """Turns values into JSON text for a ``jsonb`` parameter, and back."""

    name: str

    def dumps(self, value: object) -> str:
        """Return JSON text ready to be passed as a ``::jsonb`` parameter."""
        ...

    def load(self, data: object, hint: object = None) -> Any:
        """Rebuild a value from already parsed JSON ``data`` (as psycopg returns ``jsonb``)."""
        ...


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


class _Unsupported(Exception):
    """Raised by :func:`_convert` for a value that has no JSON form."""


def _b64(value: bytes | bytearray) -> str:
    return base64.b64encode(value).decode("ascii")


def _set_items(value: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(value)
    except TypeError:  # not sortable: keep iteration order
        return list(value)


def _isoformat(value: dt.date | dt.time) -> str:
    return value.isoformat()


def _seconds(value: dt.timedelta) -> float:
    return value.total_seconds()


_CONVERTERS: dict[type, Callable[[Any], object]] = {
    dt.datetime: _isoformat,
    dt.date: _isoformat,
    dt.time: _isoformat,
    dt.timedelta: _seconds,
    uuid.UUID: str,
    Decimal: str,
    bytes: _b64,
    bytearray: _b64,
    set: _set_items,
    frozenset: _set_items,
}
_CONVERTER_BASES: tuple[tuple[type, Callable[[Any], object]], ...] = (
    (dt.date, _isoformat),
    (dt.time, _isoformat),
    (dt.timedelta, _seconds),
    (uuid.UUID, str),
    (Decimal, str),
    (bytes, _b64),
    (bytearray, _b64),
    (set, _set_items),
    (frozenset, _set_items),
)


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


_FAST_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    check_circular=False,  # a cycle ends in RecursionError; the slow path then names it
    separators=(",", ":"),
    default=_convert,
)
_fast_encode = _FAST_ENCODER.encode
_encode_str = json.encoder.encode_basestring

# An escaped NUL: ``\u0000`` preceded by an even number of backslashes.  A literal backslash
# followed by ``u0000`` is written ``\\u0000`` and must not match.
_NUL_RE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# ``json`` silently writes float, bool and None dict keys as strings ("1.5", "true", "null");
# durably refuses them.  Searched in the reversed text so that the pattern starts with the
# literal ``:"`` (one candidate per object key) which keeps it fast on multi-megabyte values.
# A match may be a false alarm (a str key "true"): the exact slow path then decides.
_SUSPECT_KEY_RE = re.compile(r':"(?:eurt|eslaf|llun|\d+(?:[-+]e\d+(?:\.\d+)?|\.\d+)-?)"[{,]')

_PICKLE_HINT = "durably stores values as JSON; convert it, or use codec=durably.PickleCodec()"


def _type_name(value: object) -> str:
    return type(value).__qualname__


def _segment(key: object) -> str:
    if isinstance(key, str):
        return f".{key}" if key.isidentifier() else f"[{json.dumps(key)}]"
    if isinstance(key, int) and not isinstance(key, bool):
        return f"[{key}]"
    return f"[{key!r}]"


def _join_path(root: str, segments: list[str]) -> str:
    """``root`` plus segments; a very deep path keeps only its two ends."""
    if len(segments) > 20:
        hidden = len(segments) - 10
        segments = [*segments[:5], f"...({hidden} levels)...", *segments[-5:]]
    return root + "".join(segments)


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
        return _join_path(self.root, [_segment(frame.current) for frame in frames])

    def fail(self, message: str, depth: int | None = None) -> ValueEncodingError:
        return ValueEncodingError(message.replace("{path}", self.path(depth)))

    def string(self, value: str, what: str = "string") -> str:
        if "\x00" in value:
            raise self.fail(
                f"cannot store {what} containing a NUL character ('\\x00') at {{path}}: "
                "PostgreSQL text and jsonb cannot hold NUL; store it as bytes instead"
            )
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise self.fail(
                    f"cannot store {what} containing a lone surrogate at {{path}}: "
                    "it is not valid UTF-8; store it as bytes instead"
                ) from None
        return _encode_str(value)

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
            f"cannot store dict key {key!r} of type {_type_name(key)!r} in the dict at {{path}}: "
            "JSON object keys must be str (int keys are stored as str)",
            len(self.stack) - 1,
        )

    def encode(self, value: object) -> str:
        out: list[str] = []
        stack = self.stack
        active = self.active
        end = object()
        while True:
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
                    ident = id(value)
                    if ident in active:
                        raise self.fail(
                            f"cannot store value of type {_type_name(value)!r} at {{path}}: "
                            "it contains itself (a reference cycle)"
                        )
                    if len(stack) >= MAX_DEPTH:
                        raise self.fail(
                            f"cannot store value at {{path}}: it is nested deeper than "
                            f"{MAX_DEPTH} levels"
                        )
                    active.add(ident)
                    origins.append(ident)
                    if isinstance(value, dict):
                        out.append("{")
                        stack.append(_Frame(iter(value.items()), True, origins))
                    else:
                        out.append("[")
                        stack.append(_Frame(iter(value), False, origins))
                    origins = []
                else:
                    ident = id(value)
                    if ident in active:
                        raise self.fail(
                            f"cannot store value of type {_type_name(value)!r} at {{path}}: "
                            "it contains itself (a reference cycle)"
                        )
                    try:
                        converted = _convert(value)
                    except _Unsupported:
                        raise self.fail(
                            f"cannot store value of type {_type_name(value)!r} at {{path}}: "
                            f"{_PICKLE_HINT}"
                        ) from None
                    except Exception as exc:
                        raise self.fail(
                            f"cannot store value of type {_type_name(value)!r} at {{path}}: "
                            f"converting it to JSON failed: {type(exc).__name__}: {exc}"
                        ) from exc
                    active.add(ident)
                    origins.append(ident)
                    value = converted
                    continue
                break
            for ident in origins:  # a converted value that ended as a scalar
                active.discard(ident)

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


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_dumps(value: object, root: str = "$") -> str:
    if value is None:
        return "null"
    if type(value) is int and -(10**15) < value < 10**15:  # hot path: small ints
        return int.__repr__(value)
    try:
        text = _fast_encode(value)
    except Exception:
        return _SlowEncoder(root).encode(value)
    if (
        ("\\u0000" in text and _NUL_RE.search(text) is not None)
        or ('":' in text and _SUSPECT_KEY_RE.search(text[::-1]) is not None)
        or (not text.isascii() and not _utf8_ok(text))
    ):
        return _SlowEncoder(root).encode(value)
    return text


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

_Decoder = Callable[[Any], Any]


class _Mismatch(Exception):
    """Internal: data does not fit a hint.  ``path`` collects segments, innermost first."""

    def __init__(self, hint: object, data: object, detail: str = "") -> None:
        super().__init__(detail)
        self.hint = hint
        self.data = data
        self.detail = detail
        self.path: list[str] = []


def _json_type(data: object) -> str:
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
    return _type_name(data)


def _hint_name(hint: object) -> str:
    if isinstance(hint, type) and get_origin(hint) is None:
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _mismatch_message(exc: _Mismatch, root: str, top_hint: object) -> str:
    path = _join_path(root, exc.path[::-1])
    message = f"cannot rebuild {_hint_name(exc.hint)} from JSON {_json_type(exc.data)} at {path}"
    if exc.detail:
        message += f": {exc.detail}"
    if exc.hint is not top_hint:
        message += f" (loading {_hint_name(top_hint)})"
    return message


def _identity(data: Any) -> Any:
    return data


_NoneType = type(None)
_DECODERS: dict[object, _Decoder] = {}
_STRICT_DECODERS: dict[object, _Decoder] = {}


def _decoder(hint: object, strict: bool = False) -> _Decoder:
    """The (cached) decoder for ``hint``; ``strict`` rejects unknown dataclass fields."""
    cache = _STRICT_DECODERS if strict else _DECODERS
    try:
        return cache[hint]
    except KeyError:
        pass
    except TypeError:  # unhashable hint
        return _build(hint, strict)
    decoder = _build(hint, strict)
    cache[hint] = decoder
    return decoder


def _hints(obj: object) -> dict[str, Any]:
    """Resolved type hints of a function or class; unresolvable ones are left out."""
    with contextlib.suppress(Exception):
        return typing.get_type_hints(obj)
    try:
        raw = inspect.get_annotations(obj)  # type: ignore[arg-type]
    except Exception:
        return {}
    return {name: hint for name, hint in raw.items() if not isinstance(hint, str)}


def _substitute(hint: object, mapping: dict[Any, Any]) -> object:
    if isinstance(hint, typing.TypeVar):
        return mapping.get(hint, Any)
    params = getattr(hint, "__parameters__", ())
    if params and mapping:
        try:
            return hint[tuple(_substitute(p, mapping) for p in params)]  # type: ignore[index]
        except Exception:
            return hint
    return hint


def _build(hint: object, strict: bool) -> _Decoder:
    if hint is None or hint is Any or hint is object:
        return _identity
    if hint is _NoneType:
        return _none_decoder
    if isinstance(hint, typing.TypeVar):
        return _identity
    if isinstance(hint, typing.NewType):
        return _decoder(hint.__supertype__, strict)
    origin = get_origin(hint)
    if origin is typing.Annotated:
        return _decoder(get_args(hint)[0], strict)
    if origin is typing.Union or origin is types.UnionType:
        return _union_decoder(hint)
    if origin is typing.Literal:
        return _literal_decoder(hint)
    if origin is not None:
        return _generic_decoder(hint, origin, strict)
    if isinstance(hint, type):
        return _class_decoder(hint, hint, strict, {})
    return _identity


def _none_decoder(data: Any) -> Any:
    if data is not None:
        raise _Mismatch(None, data)
    return None


def _union_decoder(hint: object) -> _Decoder:
    members = get_args(hint)
    accepts_none = _NoneType in members
    others = [m for m in members if m is not _NoneType]
    exact = {m for m in others if m in (int, float, bool)}
    decoders = [_decoder(m, strict=True) for m in others]

    def decode(data: Any) -> Any:
        if data is None and accepts_none:
            return None
        if type(data) in exact:
            return data
        details = []
        for decoder in decoders:
            try:
                return decoder(data)
            except _Mismatch as exc:
                details.append(exc)
        if len(decoders) == 1:  # Optional[X]: report the inner error as it is
            raise details[0]
        raise _Mismatch(hint, data, "no member of the union fits it")

    return decode


def _literal_decoder(hint: object) -> _Decoder:
    values = get_args(hint)

    def decode(data: Any) -> Any:
        for value in values:
            if isinstance(value, enum.Enum):
                candidate = value.value
                if candidate == data and type(candidate) is type(data):
                    return value
            elif value == data and type(value) is type(data):
                return value
        raise _Mismatch(hint, data, f"expected one of {values!r}")

    return decode


_LIST_ORIGINS = {
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
}
_SET_ORIGINS = {set, collections.abc.Set, collections.abc.MutableSet}
_DICT_ORIGINS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}


def _generic_decoder(hint: object, origin: Any, strict: bool) -> _Decoder:
    args = get_args(hint)
    if origin in _LIST_ORIGINS:
        return _list_decoder(hint, args[0] if args else Any)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _list_decoder(hint, args[0], tuple)
        return _tuple_decoder(hint, args)
    if origin in _SET_ORIGINS:
        return _list_decoder(hint, args[0] if args else Any, set)
    if origin is frozenset:
        return _list_decoder(hint, args[0] if args else Any, frozenset)
    if origin in _DICT_ORIGINS:
        return _dict_decoder(hint, args[0] if args else Any, args[1] if len(args) > 1 else Any)
    if isinstance(origin, type):  # a generic dataclass such as Box[int]
        params = getattr(origin, "__parameters__", ())
        mapping = dict(zip(params, args, strict=False))
        return _class_decoder(origin, hint, strict, mapping)
    return _identity


def _list_decoder(hint: object, item_hint: object, kind: type | None = None) -> _Decoder:
    item = _decoder(item_hint)

    def decode(data: Any) -> Any:
        if type(data) is not list:
            raise _Mismatch(hint, data)
        try:
            items = data if item is _identity else [item(x) for x in data]
            return items if kind is None else kind(items)
        except _Mismatch as exc:
            for index, x in enumerate(data):
                try:
                    item(x)
                except _Mismatch as inner:
                    inner.path.append(f"[{index}]")
                    raise inner from None
            raise exc from None
        except TypeError as exc:  # unhashable set members
            raise _Mismatch(hint, data, str(exc)) from None

    return decode


def _tuple_decoder(hint: object, item_hints: tuple[Any, ...]) -> _Decoder:
    if item_hints == ((),):  # Tuple[()] spelled the old way
        item_hints = ()
    items = [_decoder(h) for h in item_hints]
    bare = not item_hints and hint is tuple

    def decode(data: Any) -> Any:
        if type(data) is not list:
            raise _Mismatch(hint, data)
        if bare:
            return tuple(data)
        if len(data) != len(items):
            raise _Mismatch(hint, data, f"expected {len(items)} items, got {len(data)}")
        out = []
        for index, (item, x) in enumerate(zip(items, data, strict=True)):
            try:
                out.append(item(x))
            except _Mismatch as exc:
                exc.path.append(f"[{index}]")
                raise
        return tuple(out)

    return decode


def _key_decoder(key_hint: object) -> _Decoder | None:
    """Keys are always str in JSON; rebuild int-like keys from their text."""
    if key_hint in (str, Any, object):
        return None
    if key_hint is int:

        def int_key(key: Any) -> Any:
            try:
                return int(key)
            except (TypeError, ValueError):
                raise _Mismatch(int, key, "dict key is not an int") from None

        return int_key
    decoder = _decoder(key_hint)

    def key(key: Any) -> Any:
        try:
            return decoder(key)
        except _Mismatch:
            if not isinstance(key, str):
                raise
            try:
                number = int(key)
            except ValueError:
                raise _Mismatch(key_hint, key, "cannot rebuild dict key") from None
            return decoder(number)

    return key


def _dict_decoder(hint: object, key_hint: object, value_hint: object) -> _Decoder:
    key = _key_decoder(key_hint)
    value = _decoder(value_hint)
    plain = key is None and value is _identity

    def decode(data: Any) -> Any:
        if type(data) is not dict:
            raise _Mismatch(hint, data)
        if plain:
            return data
        k: Any = None
        try:
            if key is None:
                out = {}
                for k, v in data.items():
                    out[k] = value(v)
                return out
            out = {}
            for k, v in data.items():
                out[key(k)] = value(v)
            return out
        except _Mismatch as exc:
            exc.path.append(_segment(k))
            raise

    return decode


def _checked(cls: type, hint: object, accepts: tuple[type, ...]) -> _Decoder:
    """Decoder for a scalar class built from JSON data of the types in ``accepts``."""

    def decode(data: Any) -> Any:
        if not isinstance(data, accepts) or (isinstance(data, bool) and bool not in accepts):
            raise _Mismatch(hint, data)
        try:
            return cls(data)
        except Exception as exc:
            raise _Mismatch(hint, data, f"{type(exc).__name__}: {exc}") from None

    return decode


def _decode_int(data: Any) -> Any:
    if type(data) is not int:
        raise _Mismatch(int, data)
    return data


def _decode_float(data: Any) -> Any:
    if type(data) is float:
        return data
    if type(data) is int:
        return float(data)
    raise _Mismatch(float, data)


def _decode_str(data: Any) -> Any:
    if type(data) is not str:
        raise _Mismatch(str, data)
    return data


def _decode_bool(data: Any) -> Any:
    if type(data) is not bool:
        raise _Mismatch(bool, data)
    return data


_SCALARS: dict[type, _Decoder] = {
    int: _decode_int,
    float: _decode_float,
    str: _decode_str,
    bool: _decode_bool,
}


def _iso_decoder(cls: type[dt.date] | type[dt.time], hint: object) -> _Decoder:
    def decode(data: Any) -> Any:
        if type(data) is not str:
            raise _Mismatch(hint, data)
        try:
            return cls.fromisoformat(data)
        except ValueError as exc:
            if issubclass(cls, dt.date) and not issubclass(cls, dt.datetime):
                try:  # a datetime stored where the hint says date
                    return dt.datetime.fromisoformat(data)
                except ValueError:
                    pass
            raise _Mismatch(hint, data, str(exc)) from None

    return decode


def _timedelta_decoder(cls: type[dt.timedelta], hint: object) -> _Decoder:
    def decode(data: Any) -> Any:
        if type(data) not in (int, float):
            raise _Mismatch(hint, data)
        try:
            return cls(seconds=data)
        except (OverflowError, ValueError) as exc:
            raise _Mismatch(hint, data, str(exc)) from None

    return decode


def _bytes_decoder(cls: type, hint: object) -> _Decoder:
    def decode(data: Any) -> Any:
        if type(data) is not str:
            raise _Mismatch(hint, data)
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Mismatch(hint, data, f"not base64: {exc}") from None
        return raw if cls is bytes else cls(raw)

    return decode


def _enum_decoder(cls: type[enum.Enum], hint: object) -> _Decoder:
    def decode(data: Any) -> Any:
        try:
            return cls(data)
        except (ValueError, TypeError) as exc:
            if type(data) is list:  # a tuple value comes back as a list
                try:
                    return cls(tuple(data))
                except (ValueError, TypeError):
                    pass
            raise _Mismatch(hint, data, str(exc)) from None

    return decode


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple)


def _is_pydantic_model(cls: type) -> bool:
    return callable(getattr(cls, "model_validate", None)) and hasattr(cls, "model_dump")


def _class_decoder(cls: type, hint: object, strict: bool, mapping: dict[Any, Any]) -> _Decoder:
    scalar = _SCALARS.get(cls)
    if scalar is not None:
        return scalar
    if issubclass(cls, enum.Enum):
        return _enum_decoder(cls, hint)
    if issubclass(cls, (dt.date, dt.time)):
        return _iso_decoder(cls, hint)
    if issubclass(cls, dt.timedelta):
        return _timedelta_decoder(cls, hint)
    if issubclass(cls, uuid.UUID):
        return _checked(cls, hint, (str,))
    if issubclass(cls, Decimal):
        return _checked(cls, hint, (str, int))
    if issubclass(cls, (bytes, bytearray)):
        return _bytes_decoder(cls, hint)
    if cls is list:
        return _list_decoder(hint, Any)
    if cls is tuple:
        return _tuple_decoder(hint, ())
    if cls in (set, frozenset):
        return _list_decoder(hint, Any, cls)
    if cls is dict or typing.is_typeddict(cls):
        return _dict_decoder(hint, Any, Any)
    if dataclasses.is_dataclass(cls):
        return _dataclass_decoder(cls, hint, strict, mapping)
    if _is_namedtuple(cls):
        return _namedtuple_decoder(cls, hint)
    if _is_pydantic_model(cls):
        return _pydantic_decoder(cls, hint)
    if issubclass(cls, str):
        return _checked(cls, hint, (str,))
    if issubclass(cls, int) and not issubclass(cls, bool):
        return _checked(cls, hint, (int,))
    if issubclass(cls, float):
        return _checked(cls, hint, (int, float))
    return _identity  # a class durably cannot rebuild: hand the JSON data back


def _dataclass_decoder(cls: type, hint: object, strict: bool, mapping: dict[Any, Any]) -> _Decoder:
    fields: list[tuple[str, _Decoder, bool]] | None = None
    names: frozenset[str] = frozenset()

    def resolve() -> list[tuple[str, _Decoder, bool]]:
        nonlocal names
        hints = _hints(cls)
        out = []
        for field in dataclasses.fields(cls):
            field_hint = hints.get(field.name)
            if field_hint is None and not isinstance(field.type, str):
                field_hint = field.type
            out.append((field.name, _decoder(_substitute(field_hint, mapping)), field.init))
        names = frozenset(name for name, _, _ in out)
        return out

    def decode(data: Any) -> Any:
        nonlocal fields
        if type(data) is not dict:
            raise _Mismatch(hint, data)
        if fields is None:
            fields = resolve()
        if strict and not names.issuperset(data):
            unknown = sorted(set(data) - names)
            raise _Mismatch(hint, data, f"unexpected fields {unknown}")
        init: dict[str, Any] = {}
        late: list[tuple[str, Any]] = []
        for name, decoder, in_init in fields:
            if name in data:
                try:
                    value = decoder(data[name])
                except _Mismatch as exc:
                    exc.path.append(_segment(name))
                    raise
                if in_init:
                    init[name] = value
                else:
                    late.append((name, value))
        try:
            obj = cls(**init)
        except Exception as exc:
            raise _Mismatch(hint, data, f"{type(exc).__name__}: {exc}") from None
        for name, value in late:
            object.__setattr__(obj, name, value)
        return obj

    return decode


def _namedtuple_decoder(cls: type, hint: object) -> _Decoder:
    items: list[_Decoder] | None = None
    field_names: tuple[str, ...] = getattr(cls, "_fields", ())

    def decode(data: Any) -> Any:
        nonlocal items
        if type(data) is not list:
            raise _Mismatch(hint, data)
        if items is None:
            hints = _hints(cls)
            items = [_decoder(hints.get(name)) for name in field_names]
        if len(data) > len(items):
            raise _Mismatch(hint, data, f"expected at most {len(items)} items, got {len(data)}")
        values = []
        for index, (item, x) in enumerate(zip(items, data, strict=False)):
            try:
                values.append(item(x))
            except _Mismatch as exc:
                exc.path.append(f"[{index}]")
                raise
        try:
            return cls(*values)
        except Exception as exc:
            raise _Mismatch(hint, data, f"{type(exc).__name__}: {exc}") from None

    return decode


def _pydantic_decoder(cls: type, hint: object) -> _Decoder:
    validate: Callable[[Any], Any] = cls.model_validate  # type: ignore[attr-defined]

    def decode(data: Any) -> Any:
        try:
            return validate(data)
        except Exception as exc:
            raise _Mismatch(hint, data, f"{type(exc).__name__}: {exc}") from None

    return decode


def _json_load(data: object, hint: object, root: str = "$") -> Any:
    if hint is None or hint is Any or hint is object:
        return data
    try:
        return _decoder(hint)(data)
    except _Mismatch as exc:
        raise ValueDecodingError(_mismatch_message(exc, root, hint)) from None
    except RecursionError:
        raise ValueDecodingError(
            f"cannot rebuild {_hint_name(hint)} at {root}: the value is nested too deeply"
        ) from None
    except Exception as exc:
        raise ValueDecodingError(
            f"cannot rebuild {_hint_name(hint)} from JSON {_json_type(data)} at {root}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


# ---------------------------------------------------------------------------------------------
# Codecs
# ---------------------------------------------------------------------------------------------


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
        return _json_dumps(value)

    def load(self, data: object, hint: object = None) -> Any:
        """Rebuild a value from parsed JSON ``data`` as the type ``hint`` describes.

        With no hint (or ``Any``/``object``) the data comes back unchanged.  Raise
        :class:`~durably.errors.ValueDecodingError` when the data does not fit the hint.
        """
        return _json_load(data, hint)

    def __repr__(self) -> str:
        return "JsonCodec()"


_PICKLE_KEY = "$pickle"


class PickleCodec:
    """Opt-in codec for values without a JSON form: stores ``{"$pickle": "<base64>"}``.

    .. warning::
       Loading a pickle runs code chosen by whoever wrote it.  Use this codec only when
       everyone who can write to the durably tables is trusted as much as your own code.
       Stored values are also opaque to SQL and tied to your classes' import paths.
    """

    name: str = "pickle"

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def dumps(self, value: object) -> str:
        """Return ``{"$pickle": "<base64 pickle>"}`` as JSON text."""
        try:
            raw = pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:
            raise ValueEncodingError(
                f"cannot pickle value of type {_type_name(value)!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return '{"' + _PICKLE_KEY + '":"' + _b64(raw) + '"}'

    def load(self, data: object, hint: object = None) -> Any:
        """Unpickle a stored value (this runs code: see the class warning).

        Data that is not a stored pickle is loaded as JSON with ``hint``.
        """
        if type(data) is dict and len(data) == 1 and type(data.get(_PICKLE_KEY)) is str:
            try:
                raw = base64.b64decode(data[_PICKLE_KEY], validate=True)
                return pickle.loads(raw)  # noqa: S301 - opt-in codec, documented above
            except Exception as exc:
                raise ValueDecodingError(
                    f"cannot unpickle stored value: {type(exc).__name__}: {exc}"
                ) from exc
        return _json_load(data, hint)

    def __repr__(self) -> str:
        return f"PickleCodec(protocol={self.protocol})"


_JSON = JsonCodec()


# ---------------------------------------------------------------------------------------------
# Arguments and return values
# ---------------------------------------------------------------------------------------------


class _ParamHints:
    """How each argument of a function is to be rebuilt."""

    __slots__ = ("keyword", "positional", "var_keyword", "var_keyword_names", "var_positional")

    def __init__(self) -> None:
        self.positional: list[object] = []
        self.var_positional: object = None
        self.keyword: dict[str, object] = {}
        self.var_keyword: object = None
        self.var_keyword_names: dict[str, object] = {}


_PARAM_HINTS: weakref.WeakKeyDictionary[Any, _ParamHints] = weakref.WeakKeyDictionary()


def _hint_target(fn: Any) -> Any:
    """The object whose annotations describe calling ``fn``."""
    if isinstance(fn, type):
        return typing.cast(Any, fn).__init__
    if isinstance(fn, functools.partial):
        return _hint_target(fn.func)
    if inspect.isroutine(fn):
        return fn
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the callable's own method
    return call if call is not None else fn


def _param_hints(fn: Callable[..., Any]) -> _ParamHints:
    try:
        return _PARAM_HINTS[fn]
    except (KeyError, TypeError):
        pass
    result = _ParamHints()
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return result
    hints = _hints(_hint_target(fn))
    kind = inspect.Parameter
    for param in signature.parameters.values():
        hint = hints.get(param.name)
        if param.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD):
            result.positional.append(hint)
            if param.kind is kind.POSITIONAL_OR_KEYWORD:
                result.keyword[param.name] = hint
        elif param.kind is kind.KEYWORD_ONLY:
            result.keyword[param.name] = hint
        elif param.kind is kind.VAR_POSITIONAL:
            result.var_positional = None if get_origin(hint) is typing.Unpack else hint
        elif param.kind is kind.VAR_KEYWORD:
            if get_origin(hint) is typing.Unpack:  # **kwargs: Unpack[SomeTypedDict]
                (typed,) = get_args(hint)
                result.var_keyword_names = _hints(typed)
            else:
                result.var_keyword = hint
    with contextlib.suppress(TypeError):  # not weak-referenceable: just not cached
        _PARAM_HINTS[fn] = result
    return result


def _fn_name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


def dumps_args(codec: Codec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """JSON text of ``{"args": [...], "kwargs": {...}}``, each argument encoded by ``codec``."""
    if isinstance(codec, JsonCodec):
        return codec.dumps({"args": list(args), "kwargs": kwargs})
    parts: list[str] = []
    for index, arg in enumerate(args):
        try:
            parts.append(codec.dumps(arg))
        except ValueEncodingError as exc:
            raise ValueEncodingError(f"argument $.args[{index}]: {exc}") from exc
    named: list[str] = []
    for key, arg in kwargs.items():
        try:
            named.append(_encode_str(key) + ":" + codec.dumps(arg))
        except ValueEncodingError as exc:
            raise ValueEncodingError(f"argument $.kwargs{_segment(key)}: {exc}") from exc
    return '{"args":[' + ",".join(parts) + '],"kwargs":{' + ",".join(named) + "}}"


def load_args(
    codec: Codec, data: object, fn: Callable[..., Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Rebuild the ``(args, kwargs)`` stored by :func:`dumps_args` from ``fn``'s annotations."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ValueDecodingError(f"stored arguments are not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueDecodingError(
            f"stored arguments must be a JSON object, got JSON {_json_type(data)}"
        )
    raw_args = data.get("args", [])
    raw_kwargs = data.get("kwargs", {})
    if not isinstance(raw_args, list) or not isinstance(raw_kwargs, dict):
        raise ValueDecodingError('stored arguments must look like {"args": [...], "kwargs": {...}}')
    hints = _param_hints(fn)

    def load(raw: object, hint: object, path: str) -> Any:
        if isinstance(codec, JsonCodec):
            return _json_load(raw, hint, path)
        try:
            return codec.load(raw, hint)
        except ValueDecodingError as exc:
            raise ValueDecodingError(f"argument {path} of {_fn_name(fn)}: {exc}") from exc

    positional = hints.positional
    args = tuple(
        load(raw, positional[i] if i < len(positional) else hints.var_positional, f"$.args[{i}]")
        for i, raw in enumerate(raw_args)
    )
    kwargs: dict[str, Any] = {}
    for name, raw in raw_kwargs.items():
        if name in hints.keyword:
            hint = hints.keyword[name]
        elif name in hints.var_keyword_names:
            hint = hints.var_keyword_names[name]
        else:
            hint = hints.var_keyword
        kwargs[name] = load(raw, hint, f"$.kwargs{_segment(name)}")
    return args, kwargs


_AWAITABLE_ORIGINS = {
    collections.abc.Coroutine: 2,
    collections.abc.Awaitable: 0,
}


def return_hint(fn: Callable[..., Any]) -> object:
    """The type ``fn``'s result is rebuilt as, or None; for coroutines, the awaited type.

    Never raises: a missing or unresolvable annotation gives None.
    """
    try:
        hint = _hints(_hint_target(fn)).get("return")
        if hint is None or hint is _NoneType:
            return None
        index = _AWAITABLE_ORIGINS.get(get_origin(hint))
        if index is not None:
            args = get_args(hint)
            hint = args[index] if len(args) > index else None
            if hint is _NoneType:
                return None
        return hint
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_TRACEBACK_ATTR = "__durably_traceback__"


def _safe_text(text: str) -> str:
    """Text that can always be stored: no NUL, no lone surrogates."""
    text = text.replace("\x00", "\\x00")
    if not text.isascii() and not _utf8_ok(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _try_dumps(value: object) -> str | None:
    try:
        return _json_dumps(value)
    except Exception:
        return None


def dump_error(exc: BaseException) -> str:
    """JSON text describing ``exc``: type, message, traceback text and args.

    ``{"type": "module.QualName", "message": str(exc), "traceback": "...", "args": [...]}``,
    where ``args`` is null when the exception's args have no JSON form.  Two optional keys
    help :func:`load_error` rebuild it faithfully: ``init_args`` (the constructor arguments
    from ``__reduce__`` when they differ from ``args``, e.g. an OSError's filename) and
    ``state`` (JSON-able instance attributes).  Never raises.
    """
    try:
        return _dump_error(exc)
    except Exception:
        try:
            fallback = {"type": "builtins.BaseException", "message": repr(exc)}
        except Exception:
            fallback = {"type": "builtins.BaseException", "message": "<unprintable error>"}
        return json.dumps(
            {
                "type": _safe_text(fallback["type"]),
                "message": _safe_text(fallback["message"]),
                "traceback": "",
                "args": None,
            }
        )


def _dump_error(exc: BaseException) -> str:
    cls = type(exc)
    if isinstance(exc, RecordedError):  # keep the original type when re-recorded
        type_name, message, trace = exc.type_name, exc.message, exc.traceback
        args_text: str | None = None
    else:
        type_name = f"{cls.__module__}.{cls.__qualname__}"
        try:
            message = str(exc)
        except Exception:
            message = f"<unprintable {cls.__qualname__}>"
        try:
            trace = "".join(traceback.format_exception(exc))
        except Exception:
            trace = ""
        args_text = _try_dumps(list(exc.args))
    record = {
        "type": _safe_text(type_name),
        "message": _safe_text(message),
        "traceback": _safe_text(trace),
    }
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))[:-1]
    text += ',"args":' + (args_text or "null")
    if args_text is not None:
        init_args, state = _reduce_parts(exc)
        if init_args is not None and init_args != exc.args:
            init_text = _try_dumps(list(init_args))
            if init_text is not None:
                text += ',"init_args":' + init_text
        if state:
            attrs = []
            for key, value in state.items():
                if not isinstance(key, str) or key == _TRACEBACK_ATTR:
                    continue
                if key.startswith("__") and key != "__notes__":
                    continue
                value_text = _try_dumps(value)
                if value_text is not None:
                    attrs.append(_encode_str(key) + ":" + value_text)
            if attrs:
                text += ',"state":{' + ",".join(attrs) + "}"
    return text + "}"


def _reduce_parts(exc: BaseException) -> tuple[tuple[Any, ...] | None, dict[Any, Any] | None]:
    try:
        reduced = exc.__reduce__()
    except Exception:
        return None, None
    if not isinstance(reduced, tuple) or len(reduced) < 2:
        return None, None
    init_args = reduced[1] if isinstance(reduced[1], tuple) else None
    state = reduced[2] if len(reduced) > 2 and isinstance(reduced[2], dict) else None
    return init_args, state


def _resolve_exception_type(name: str) -> type[BaseException] | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return obj
        return None
    return None


def load_error(data: object) -> BaseException:
    """Rebuild an exception recorded by :func:`dump_error`.

    The original type is rebuilt when it can be imported and constructed again with the
    recorded args and gives the same message; otherwise a
    :class:`~durably.errors.RecordedError` carries the type name, message and traceback.
    Either way the recorded traceback text is attached as ``__durably_traceback__``.
    Never raises.
    """
    if isinstance(data, (str, bytes, bytearray)):
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    if not isinstance(data, dict):
        return _attach(RecordedError("unknown", repr(data), ""), "")
    type_name = str(data.get("type") or "unknown")
    message = str(data.get("message") or "")
    trace = str(data.get("traceback") or "")
    try:
        rebuilt = _rebuild_error(data, type_name, message)
    except Exception:
        rebuilt = None
    if rebuilt is None:
        rebuilt = RecordedError(type_name, message, trace)
    return _attach(rebuilt, trace)


def _attach(exc: BaseException, trace: str) -> BaseException:
    with contextlib.suppress(Exception):
        setattr(exc, _TRACEBACK_ATTR, trace)
    return exc


def _rebuild_error(data: dict[Any, Any], type_name: str, message: str) -> BaseException | None:
    args = data.get("args")
    if not isinstance(args, list):
        return None
    cls = _resolve_exception_type(type_name)
    if cls is None:
        return None
    init_args = data.get("init_args")
    exc = cls(*(init_args if isinstance(init_args, list) else args))
    state = data.get("state")
    if isinstance(state, dict) and state:
        exc.__dict__.update(state)
    if exc.args != tuple(args):
        exc.args = tuple(args)
    if str(exc) != message:
        return None
    return exc
