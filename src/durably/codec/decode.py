"""Parsed JSON to Python values, rebuilt as a type hint describes.

Each hint gets a decoder, built once and cached.  A decoder raises :class:`_Mismatch` when
the data does not fit; :func:`json_load` turns that into a
:class:`~durably.errors.ValueDecodingError` naming the path to the offending item.
"""

from __future__ import annotations

import base64
import binascii
import collections.abc
import contextlib
import dataclasses
import datetime as dt
import enum
import inspect
import itertools
import re
import types
import typing
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, get_args, get_origin

from durably.codec.describe import hint_name, join_path, json_type, segment
from durably.errors import ValueDecodingError

_Decoder = Callable[[Any], Any]


def json_load(data: object, hint: object, root: str = "$") -> Any:
    """Rebuild parsed JSON ``data`` as ``hint``; raise ValueDecodingError if it does not fit."""
    if hint is None or hint is Any or hint is object:
        return data
    try:
        return _decoder(hint)(data)
    except _Mismatch as exc:
        raise ValueDecodingError(_mismatch_message(exc, root, hint)) from None
    except RecursionError:
        raise ValueDecodingError(
            f"cannot rebuild {hint_name(hint)} at {root}: the value is nested too deeply"
        ) from None
    except Exception as exc:
        raise ValueDecodingError(
            f"cannot rebuild {hint_name(hint)} from JSON {json_type(data)} at {root}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def type_hints(obj: object) -> dict[str, Any]:
    """Resolved type hints of a function or class; unresolvable ones are left out."""
    with contextlib.suppress(Exception):
        return typing.get_type_hints(obj)
    try:
        raw = inspect.get_annotations(obj)  # type: ignore[arg-type]
    except Exception:
        return {}
    return {name: hint for name, hint in raw.items() if not isinstance(hint, str)}


class _Mismatch(Exception):
    """Internal: data does not fit a hint.  ``path`` collects segments, innermost first."""

    def __init__(self, hint: object, data: object, detail: str = "") -> None:
        super().__init__(detail)
        self.hint = hint
        self.data = data
        self.detail = detail
        self.path: list[str] = []


def _mismatch_message(exc: _Mismatch, root: str, top_hint: object) -> str:
    path = join_path(root, exc.path[::-1])
    message = f"cannot rebuild {hint_name(exc.hint)} from JSON {json_type(exc.data)} at {path}"
    if exc.detail:
        message += f": {exc.detail}"
    if exc.hint is not top_hint:
        message += f" (loading {hint_name(top_hint)})"
    return message


def _construct(
    hint: object, data: object, make: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """``make(*args, **kwargs)``; any exception it raises becomes a _Mismatch for ``data``."""
    try:
        return make(*args, **kwargs)
    except Exception as exc:
        raise _Mismatch(hint, data, f"{type(exc).__name__}: {exc}") from None


def _decode_each(decoders: Iterable[_Decoder], data: list[Any]) -> list[Any]:
    """Decode ``data[i]`` with ``decoders[i]``, as far as the shorter one goes."""
    out = []
    for index, (decode, item) in enumerate(zip(decoders, data, strict=False)):
        try:
            out.append(decode(item))
        except _Mismatch as exc:
            exc.path.append(f"[{index}]")
            raise
    return out


# ---------------------------------------------------------------------------------------------
# Decoder cache and dispatch on the hint
# ---------------------------------------------------------------------------------------------

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


def _build(hint: object, strict: bool) -> _Decoder:
    if hint is None or hint is Any or hint is object:
        return _identity
    if hint is types.NoneType:
        return _decode_none
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


def _identity(data: Any) -> Any:
    return data


def _decode_none(data: Any) -> Any:
    if data is not None:
        raise _Mismatch(None, data)
    return None


def _union_decoder(hint: object) -> _Decoder:
    members = get_args(hint)
    accepts_none = types.NoneType in members
    others = [m for m in members if m is not types.NoneType]
    exact = {m for m in others if m in (int, float, bool)}
    decoders = [_decoder(m, strict=True) for m in others]

    def decode(data: Any) -> Any:
        if data is None and accepts_none:
            return None
        if type(data) in exact:
            return data
        for decoder in decoders:
            try:
                return decoder(data)
            except _Mismatch:
                if len(decoders) == 1:  # Optional[X]: report the inner error as it is
                    raise
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


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------

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
    first = args[0] if args else Any
    if origin in _LIST_ORIGINS:
        return _list_decoder(hint, first)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _list_decoder(hint, first, tuple)
        return _tuple_decoder(hint, args)
    if origin in _SET_ORIGINS:
        return _list_decoder(hint, first, set)
    if origin is frozenset:
        return _list_decoder(hint, first, frozenset)
    if origin in _DICT_ORIGINS:
        return _dict_decoder(hint, first, args[1] if len(args) > 1 else Any)
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
        except _Mismatch as exc:  # decode again, slowly, to find the failing index
            _decode_each(itertools.repeat(item), data)
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
        return tuple(_decode_each(items, data))

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
        out = {}
        k: Any = None
        try:
            if key is None:  # the common str keys: no call per key
                for k, v in data.items():
                    out[k] = value(v)
            else:
                for k, v in data.items():
                    out[key(k)] = value(v)
        except _Mismatch as exc:
            exc.path.append(segment(k))
            raise
        return out

    return decode


# ---------------------------------------------------------------------------------------------
# Classes
# ---------------------------------------------------------------------------------------------


def _exact(cls: type) -> _Decoder:
    """Decoder for a JSON scalar that must already be exactly ``cls``."""

    def decode(data: Any) -> Any:
        if type(data) is not cls:
            raise _Mismatch(cls, data)
        return data

    return decode


def _decode_float(data: Any) -> Any:
    if type(data) is float:
        return data
    if type(data) is int:
        return float(data)
    raise _Mismatch(float, data)


_SCALARS: dict[type, _Decoder] = {
    int: _exact(int),
    float: _decode_float,
    str: _exact(str),
    bool: _exact(bool),
}


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
    if issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):  # NamedTuple
        return _namedtuple_decoder(cls, hint)
    if callable(getattr(cls, "model_validate", None)) and hasattr(cls, "model_dump"):  # pydantic
        return _pydantic_decoder(cls, hint)
    if issubclass(cls, str):
        return _checked(cls, hint, (str,))
    if issubclass(cls, int) and not issubclass(cls, bool):
        return _checked(cls, hint, (int,))
    if issubclass(cls, float):
        return _checked(cls, hint, (int, float))
    return _identity  # a class durably cannot rebuild: hand the JSON data back


def _checked(cls: type, hint: object, accepts: tuple[type, ...]) -> _Decoder:
    """Decoder for a scalar class built from JSON data of the types in ``accepts``."""

    def decode(data: Any) -> Any:
        if not isinstance(data, accepts) or (isinstance(data, bool) and bool not in accepts):
            raise _Mismatch(hint, data)
        return _construct(hint, data, cls, data)

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


# A UTC offset with a fraction of a second, as isoformat() writes it; Python 3.11's
# fromisoformat() drops the fraction, moving the instant.
_FRACTIONAL_OFFSET = re.compile(r"([+-])(\d\d):(\d\d):(\d\d)\.(\d{6})$")


def _exact_offset(value: Any, text: str) -> Any:
    """``value`` parsed from ``text``, with the fraction of its UTC offset put back."""
    if len(text) < 16 or text[-7] != "." or not isinstance(value, dt.datetime | dt.time):
        return value
    found = _FRACTIONAL_OFFSET.search(text)
    if found is None or value.tzinfo is None:
        return value
    sign = -1 if found.group(1) == "-" else 1
    hours, minutes, seconds, micros = (int(found.group(i)) for i in range(2, 6))
    offset = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=micros)
    return value.replace(tzinfo=dt.timezone(sign * offset))


def _iso_decoder(cls: type[dt.date] | type[dt.time], hint: object) -> _Decoder:
    def decode(data: Any) -> Any:
        if type(data) is not str:
            raise _Mismatch(hint, data)
        try:
            return _exact_offset(cls.fromisoformat(data), data)
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


def _substitute(hint: object, mapping: dict[Any, Any]) -> object:
    """``hint`` with the type variables of a generic class replaced by their arguments."""
    if isinstance(hint, typing.TypeVar):
        return mapping.get(hint, Any)
    params = getattr(hint, "__parameters__", ())
    if params and mapping:
        try:
            return hint[tuple(_substitute(p, mapping) for p in params)]  # type: ignore[index]
        except Exception:
            return hint
    return hint


def _dataclass_decoder(cls: type, hint: object, strict: bool, mapping: dict[Any, Any]) -> _Decoder:
    fields: list[tuple[str, _Decoder, bool]] | None = None
    names: frozenset[str] = frozenset()

    def resolve() -> list[tuple[str, _Decoder, bool]]:
        nonlocal names
        hints = type_hints(cls)
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
                    exc.path.append(segment(name))
                    raise
                if in_init:
                    init[name] = value
                else:
                    late.append((name, value))
        obj = _construct(hint, data, cls, **init)
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
            hints = type_hints(cls)
            items = [_decoder(hints.get(name)) for name in field_names]
        if len(data) > len(items):
            raise _Mismatch(hint, data, f"expected at most {len(items)} items, got {len(data)}")
        return _construct(hint, data, cls, *_decode_each(items, data))

    return decode


def _pydantic_decoder(cls: type, hint: object) -> _Decoder:
    validate: Callable[[Any], Any] = cls.model_validate  # type: ignore[attr-defined]

    def decode(data: Any) -> Any:
        return _construct(hint, data, validate, data)

    return decode
