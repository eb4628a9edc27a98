"""Application versions: which code a workflow ran under, and which an executor recovers.

A workflow records the version of the application that started it. A worker recovers
(own leftovers, takeovers, abandoned runs, wake-ups, queued work put back) only
workflows of the versions it runs, since replaying a workflow's history against other
code can take another path. The version is given (``App(app_version=...)``) or is a
hash of the registered workflow code, computed here (see docs/upgrades.md).
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from durably.errors import InvalidArgument
from durably.names import check_name

if TYPE_CHECKING:
    from durably.execution.specs import WorkflowSpec

# What a hash version starts with (an explicit version may be any other text).
HASH_PREFIX = "code-"
# Bumped if what goes into the hash ever changes, so that old and new hashes never meet.
_HASH_FORMAT = b"durably code version 1\n"
MAX_LENGTH = 200


@dataclass(frozen=True, slots=True)
class VersionScope:
    """An executor's versions: the one it records on what it starts (None: a Client
    without a version), those it recovers (None: any), and whether what it enqueues is
    pinned to ``current`` (a Client given a version) or left for any version to start
    (an App: work not started yet has no history that other code could replay wrongly)."""

    current: str | None
    recover: tuple[str, ...] | None
    pins_enqueued: bool = False

    @property
    def enqueued(self) -> str | None:
        """The version recorded on work this executor enqueues (None: unpinned)."""
        return self.current if self.pins_enqueued else None

    def recovers(self, version: str | None) -> bool:
        """Whether work recorded under ``version`` (None: not started yet) is ours to run."""
        return version is None or self.recover is None or version in self.recover


NO_VERSION = VersionScope(None, None)


def check_version(value: object, label: str = "app_version") -> str:
    """A version string as given by a user, or InvalidArgument naming the problem."""
    if not isinstance(value, str):
        raise InvalidArgument(
            f"{label} must be a string (e.g. '2024-06-01' or a release tag), got "
            f"{type(value).__name__}"
        )
    if not value.strip() or value != value.strip():
        raise InvalidArgument(
            f"{label} must be a non-empty string without leading or trailing spaces, got {value!r}"
        )
    if len(value) > MAX_LENGTH:
        raise InvalidArgument(f"{label} must be at most {MAX_LENGTH} characters, got {len(value)}")
    return check_name(value, label)  # no NUL, valid UTF-8


def code_version(workflows: Mapping[str, WorkflowSpec], steps: Iterable[str]) -> str:
    """The version of code that declares no explicit one: ``code-`` and 16 hex digits of
    a SHA-256 over, in this order, each registered workflow's name and the source text of
    its function (sorted by name), then each registered step and transaction name
    (sorted). Step bodies are left out on purpose: a step's result is recorded, never
    replayed, so changing one is safe for work in flight. A function whose source Python
    cannot find (defined in a REPL, made by exec) contributes its bytecode and constants
    instead, which are the same only under the same Python version."""
    digest = hashlib.sha256(_HASH_FORMAT)
    for name in sorted(workflows):
        digest.update(b"workflow\0" + name.encode() + b"\0")
        digest.update(_code_text(workflows[name].fn) + b"\n")
    for name in sorted(steps):
        digest.update(b"step\0" + name.encode() + b"\n")
    return HASH_PREFIX + digest.hexdigest()[:16]


def _code_text(fn: Callable[..., Any]) -> bytes:
    """A function's source, dedented, with line endings made plain; its bytecode when
    there is no source to read."""
    fn = inspect.unwrap(fn)
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if isinstance(code, types.CodeType):
            return b"bytecode\0" + _code_bytes(code)
        return b"opaque\0" + repr(getattr(fn, "__qualname__", type(fn).__name__)).encode()
    text = textwrap.dedent(source.replace("\r\n", "\n"))
    return b"source\0" + "\n".join(line.rstrip() for line in text.splitlines()).encode()


def _code_bytes(code: types.CodeType) -> bytes:
    """Bytecode, names and constants of a code object and those nested in it; never its
    file name or line numbers, which differ between installs of the same code."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_bytes(const))
        else:
            parts.append(repr(const).encode())
    return b"\0".join(parts)
