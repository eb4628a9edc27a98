"""Application versions on the API: an App's version and what it recovers, and
``set_version`` (App and Client) to move stuck work to another version on purpose."""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from durably.errors import ConfigurationError, InvalidArgument
from durably.execution.effects import Protocol, Write
from durably.execution.versions import VersionScope, check_version, code_version
from durably.options import check_workflow_id
from durably.status import Status
from durably.store.statements import Statement
from durably.store.version_statements import version_statements
from durably.twins import Job, twins

if TYPE_CHECKING:
    from durably.execution.specs import StepSpec, WorkflowSpec
    from durably.runtime.engine import Engine

# The environment variables an App reads when not given the setting.
VERSION_ENV = "DURABLY_APP_VERSION"
RECOVER_ENV = "DURABLY_RECOVER_VERSIONS"  # comma-separated versions, or "any"

# What set_version may move: work that may still run (cancelled and dead-lettered work
# can be resumed). Finished work never runs again (fork it to run it on new code).
MOVABLE = (Status.PENDING, Status.ENQUEUED, Status.DELAYED, Status.CANCELLED, Status.DEAD_LETTER)

RecoverVersions = Collection[str] | Literal["any"]


def recover_setting(value: object) -> tuple[str, ...] | None:
    """``recover_versions`` as given: extra versions to recover (a list, tuple or set of
    strings), or "any" (None). A bare string other than "any" is refused, since it would
    otherwise be read as a set of letters."""
    if value == "any":
        return None
    if isinstance(value, str) or not isinstance(value, Collection):
        raise ConfigurationError(
            f"recover_versions must be a list of versions (e.g. ['2024-05-01']) or 'any', got "
            f"{value!r}"
        )
    try:
        return tuple(sorted({check_version(v, "each of recover_versions") for v in value}))
    except InvalidArgument as exc:
        raise ConfigurationError(str(exc)) from None


class AppVersions:
    """An App's version (given, from ``$DURABLY_APP_VERSION``, or a hash of its code)
    and the versions it recovers: with a version given, its own and those given in
    ``recover_versions`` ("any": every version); with a hash, every version unless
    ``recover_versions`` is given (then its own, every hash this process has had, since
    code registered later changes the hash, and those given)."""

    def __init__(
        self,
        app_version: str | None,
        recover_versions: RecoverVersions | None,
        registry: Mapping[str, WorkflowSpec],
        steps: Mapping[str, StepSpec],
    ) -> None:
        if app_version is None:
            app_version = os.environ.get(VERSION_ENV) or None
            where = f"${VERSION_ENV}"
        else:
            where = "app_version"
        if app_version is not None:
            try:
                app_version = check_version(app_version, where)
            except InvalidArgument as exc:
                raise ConfigurationError(str(exc)) from None
        if recover_versions is None and os.environ.get(RECOVER_ENV):
            raw = os.environ[RECOVER_ENV].strip()
            recover_versions = "any" if raw == "any" else [v.strip() for v in raw.split(",")]
        if recover_versions is None:
            # Only a version given on purpose restricts recovery: a code hash changes with
            # any edit of a workflow, and restricting by it would leave every execution in
            # flight waiting for an operator after an ordinary deploy. The hash is still
            # recorded (listings, set_version); replay safety comes from patched().
            recover_versions = () if app_version is not None else "any"
        self.explicit = app_version
        self.extra = recover_setting(recover_versions)
        self._registry = registry
        self._steps = steps
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._hash: str | None = None
        self._hashes: set[str] = set()
        self._scope: VersionScope | None = None

    def scope(self) -> VersionScope:
        """The current scope (the hash is computed again only when code was registered).
        Asked for at every start: without new code, it is one comparison."""
        scope = self._scope
        if scope is not None and (self.explicit is not None or self._key == self._size()):
            return scope
        with self._lock:
            if self.explicit is not None:
                current = self.explicit
            else:
                key = self._size()
                if key != self._key or self._hash is None:
                    self._hash = code_version(self._registry, list(self._steps))
                    self._hashes.add(self._hash)
                current = self._hash
            recover = (
                None if self.extra is None else tuple(sorted({current, *self._hashes, *self.extra}))
            )
            self._scope = VersionScope(current, recover)
            if self.explicit is None:
                self._key = key
            return self._scope

    def _size(self) -> tuple[int, int]:
        return (len(self._registry), len(self._steps))


def client_scope(app_version: str | None) -> VersionScope:
    """A Client's scope: it recovers nothing; given a version, what it enqueues is
    pinned to it (only workers recovering that version start it)."""
    if app_version is None:
        return VersionScope(None, None)
    try:
        version = check_version(app_version)
    except InvalidArgument as exc:
        raise ConfigurationError(str(exc)) from None
    return VersionScope(version, None, pins_enqueued=True)


class Versions:
    """The version methods that ``App`` and ``Client`` share."""

    @property
    def engine(self) -> Engine:
        raise NotImplementedError

    def _set_version(
        self,
        to_version: str,
        *,
        ids: Sequence[str] | None = None,
        from_version: str | None = None,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> Job[int]:
        """Move workflows that may still run (PENDING, ENQUEUED, DELAYED, CANCELLED,
        DEAD_LETTER) to application version ``to_version``, so that workers recovering
        that version recover them; returns how many moved. Which: those with ``ids``
        and/or of ``from_version`` (one of the two is required), and of ``status`` and
        ``name`` when given. Only the recorded version changes: a run going on now is
        not disturbed. Move work only to code that can replay what it recorded (see
        docs/upgrades.md)."""
        to_version = check_version(to_version, "to_version")
        if from_version is not None:
            from_version = check_version(from_version, "from_version")
        if ids is None and from_version is None:
            raise InvalidArgument(
                "set_version needs ids=[...] or from_version=... to say which workflows to "
                "move (so that nothing moves by accident)"
            )
        if ids is not None:
            if isinstance(ids, str) or not isinstance(ids, Sequence):
                raise InvalidArgument("ids must be a list of workflow id strings")
            for workflow_id in ids:
                check_workflow_id(workflow_id)
        statuses = _movable(status)
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgument(f"name must be a non-empty string, got {name!r}")
        engine = self.engine
        statement = version_statements(engine.db.schema, engine.db.dialect).set_version(
            to_version, ids=ids, from_version=from_version, status=statuses, name=name
        )
        return engine, _moved(statement)

    set_version, set_version_async = twins(_set_version)


def _movable(status: str | Sequence[str] | None) -> list[str] | None:
    if status is None:
        return None
    raw = [status] if isinstance(status, str) else list(status)
    valid = ", ".join(s.value for s in MOVABLE)
    out = []
    for value in raw:
        try:
            found = Status(value)
        except ValueError:
            raise InvalidArgument(f"unknown status {value!r}; use one of {valid}") from None
        if found not in MOVABLE:
            raise InvalidArgument(
                f"a {found.value} workflow never runs again, so it has no version to move; "
                f"use one of {valid} (fork a finished workflow to run it on new code)"
            )
        out.append(found.value)
    return out


def _moved(statement: Statement) -> Protocol[int]:
    rows = yield Write(statement)
    return len(rows)
