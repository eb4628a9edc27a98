"""Exceptions as JSON: recorded with their type, message, traceback and args, then rebuilt."""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from typing import Any

from durably.codec.encode import encode_str, json_dumps, utf8_ok
from durably.errors import RecordedError

_TRACEBACK_ATTR = "__durably_traceback__"
# A recorded error keeps at most this many characters of its message, of its traceback
# and of each of its args and attributes: a longer message or traceback is cut, a longer
# arg or attribute left out (an error carrying a whole HTTP response body, say, must not
# make a multi-megabyte row that every replay reads).
PART_LIMIT = 1024 * 1024


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
            message = repr(exc)
        except Exception:
            message = "<unprintable error>"
        return json.dumps(
            {
                "type": "builtins.BaseException",
                "message": _safe_text(message),
                "traceback": "",
                "args": None,
            }
        )


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


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------


def _safe_text(text: str) -> str:
    """Text that can always be stored: no NUL, no lone surrogates."""
    text = text.replace("\x00", "\\x00")
    if not text.isascii() and not utf8_ok(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _try_dumps(value: object) -> str | None:
    try:
        text = json_dumps(value)
    except Exception:
        return None
    return text if len(text) <= PART_LIMIT else None


def _cut(text: str) -> str:
    if len(text) <= PART_LIMIT:
        return text
    return text[:PART_LIMIT] + f"... [{len(text) - PART_LIMIT} more characters cut]"


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
        "message": _safe_text(_cut(message)),
        "traceback": _safe_text(_cut(trace)),
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
                    attrs.append(encode_str(key) + ":" + value_text)
            if attrs:
                text += ',"state":{' + ",".join(attrs) + "}"
    return text + "}"


def _reduce_parts(exc: BaseException) -> tuple[tuple[Any, ...] | None, dict[Any, Any] | None]:
    """The constructor args and the state dict ``exc.__reduce__()`` gives, where it has them."""
    try:
        reduced = exc.__reduce__()
    except Exception:
        return None, None
    if not isinstance(reduced, tuple) or len(reduced) < 2:
        return None, None
    init_args = reduced[1] if isinstance(reduced[1], tuple) else None
    state = reduced[2] if len(reduced) > 2 and isinstance(reduced[2], dict) else None
    return init_args, state


# ---------------------------------------------------------------------------------------------
# Rebuilding
# ---------------------------------------------------------------------------------------------


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


def _resolve_exception_type(name: str) -> type[BaseException] | None:
    """The exception class named ``module.QualName``; None if there is none.

    Only modules this process has already imported are looked in: data in the database
    must never make a process import (and so run) code, e.g. a Client importing the
    workers' modules. The process that raised an error has its module loaded anyway.
    """
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        obj: Any = sys.modules.get(".".join(parts[:cut]))
        if obj is None:
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
