"""A function's arguments and result: stored by position and name, rebuilt from annotations."""

from __future__ import annotations

import collections.abc
import contextlib
import functools
import inspect
import json
import types
import typing
import weakref
from collections.abc import Callable
from typing import Any, get_args, get_origin

from durably.codec.decode import json_load, type_hints
from durably.codec.describe import json_type, segment
from durably.codec.encode import check_size, encode_str
from durably.codec.jsoncodec import JsonCodec
from durably.codec.protocol import Codec
from durably.errors import ValueDecodingError, ValueEncodingError

_NO_ARGS = '{"args":[],"kwargs":{}}'


def dumps_args(codec: Codec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """JSON text of ``{"args": [...], "kwargs": {...}}``, each argument encoded by ``codec``."""
    if not args and not kwargs:
        return _NO_ARGS  # every codec writes no arguments the same way
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
            named.append(encode_str(key) + ":" + codec.dumps(arg))
        except ValueEncodingError as exc:
            raise ValueEncodingError(f"argument $.kwargs{segment(key)}: {exc}") from exc
    text = '{"args":[' + ",".join(parts) + '],"kwargs":{' + ",".join(named) + "}}"
    return check_size(text)


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
            f"stored arguments must be a JSON object, got JSON {json_type(data)}"
        )
    raw_args = data.get("args", [])
    raw_kwargs = data.get("kwargs", {})
    if not isinstance(raw_args, list) or not isinstance(raw_kwargs, dict):
        raise ValueDecodingError('stored arguments must look like {"args": [...], "kwargs": {...}}')
    hints = _param_hints(fn)
    is_json = isinstance(codec, JsonCodec)

    def load(raw: object, hint: object, path: str) -> Any:
        if is_json:
            return json_load(raw, hint, path)
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
        kwargs[name] = load(raw, hint, f"$.kwargs{segment(name)}")
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
        hint = type_hints(_hint_target(fn)).get("return")
        if hint is None or hint is types.NoneType:
            return None
        index = _AWAITABLE_ORIGINS.get(get_origin(hint))
        if index is not None:
            args = get_args(hint)
            hint = args[index] if len(args) > index else None
            if hint is types.NoneType:
                return None
        return hint
    except Exception:
        return None


def _fn_name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


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
    hints = type_hints(_hint_target(fn))
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
                result.var_keyword_names = type_hints(typed)
            else:
                result.var_keyword = hint
    with contextlib.suppress(TypeError):  # not weak-referenceable: just not cached
        _PARAM_HINTS[fn] = result
    return result
