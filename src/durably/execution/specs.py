"""What a decorator declares about a workflow or a step, independent of how it is called."""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from durably import codec as codec_module
from durably.errors import ConfigurationError
from durably.names import check_name

_UNSET: Any = object()


def default_name(fn: Callable[..., Any]) -> str:
    """The registered name of a workflow or step declared without ``name=``: its
    qualified name (``charge``, ``Billing.charge``), the same however its module was
    loaded (imported, or run as ``__main__``)."""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(qualname, str) or not qualname:
        raise ConfigurationError(
            f"{fn!r} has no __qualname__ to be registered under; pass name=... explicitly"
        )
    return qualname


def former_name(fn: Callable[..., Any]) -> str | None:
    """The default name of durably 0.1 (``<module>.<qualname>``): replay still accepts a
    step or child recorded under it, so workflows in flight across the upgrade go on."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    return f"{module}.{qualname}"


def signature_of(fn: Callable[..., Any]) -> inspect.Signature | None:
    """The signature arguments are bound to before a workflow is written (None when
    Python cannot tell it, as for some builtins: then nothing is checked)."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


@dataclass(slots=True)
class StepSpec:
    """A step: its function and retry policy."""

    fn: Callable[..., Any]
    name: str
    retries: int = 0
    interval: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    retry_on: Callable[[BaseException], bool] | None = None
    is_async: bool = False
    # The name the step had by default in durably 0.1, when it was declared without name=
    # (replay accepts a step recorded under it; see ``former_name``).
    former: str | None = None
    _hint: Any = field(default=_UNSET, repr=False)

    def __post_init__(self) -> None:
        check_name(self.name, "step name", error=ConfigurationError)
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ConfigurationError(
                f"step {self.name!r}: retries must be a whole number >= 0, got {self.retries!r}"
            )
        for label, value in (
            ("interval", self.interval),
            ("backoff", self.backoff),
            ("max_delay", self.max_delay),
        ):
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not 0 <= value < math.inf  # also refuses NaN
            ):
                raise ConfigurationError(
                    f"step {self.name!r}: {label} must be a finite number >= 0, got {value!r}"
                )
        if self.backoff < 1:
            raise ConfigurationError(
                f"step {self.name!r}: backoff multiplies the delay after each attempt and "
                f"must be >= 1, got {self.backoff!r}"
            )
        if self.retry_on is not None and not callable(self.retry_on):
            raise ConfigurationError(
                f"step {self.name!r}: retry_on must be a function of the exception, "
                f"got {self.retry_on!r}"
            )
        self.is_async = inspect.iscoroutinefunction(self.fn)

    @property
    def return_hint(self) -> Any:
        if self._hint is _UNSET:
            self._hint = codec_module.return_hint(self.fn)
        return self._hint

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based), bounded by max_delay."""
        return float(min(self.max_delay, self.interval * self.backoff ** (attempt - 1)))

    def should_retry(self, exc: BaseException) -> bool:
        return self.retry_on is None or bool(self.retry_on(exc))


ISOLATION_LEVELS = ("serializable", "repeatable read", "read committed")


@dataclass(slots=True)
class TransactionSpec(StepSpec):
    """A transaction step: a step whose function gets an open database connection and
    commits together with its checkpoint. ``database``: another database's URL (None: the
    app's own); ``conflict_retries``: runs after a serialization failure or deadlock."""

    isolation: str = "serializable"
    database: str | None = None
    conflict_retries: int = 10
    # Send BEGIN, the function's statements, the checkpoint and COMMIT in libpq's
    # pipeline mode (one round trip for a function that only writes).
    pipeline: bool = False

    def __post_init__(self) -> None:
        StepSpec.__post_init__(self)
        if self.isolation not in ISOLATION_LEVELS:
            raise ConfigurationError(
                f"transaction {self.name!r}: isolation must be one of "
                f"{', '.join(map(repr, ISOLATION_LEVELS))}, got {self.isolation!r}"
            )
        if self.database is not None and (not isinstance(self.database, str) or not self.database):
            raise ConfigurationError(
                f"transaction {self.name!r}: database must be a PostgreSQL URL, got "
                f"{type(self.database).__name__}"
            )
        if not isinstance(self.pipeline, bool):
            raise ConfigurationError(
                f"transaction {self.name!r}: pipeline must be True or False, got {self.pipeline!r}"
            )
        retries = self.conflict_retries
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigurationError(
                f"transaction {self.name!r}: conflict_retries must be a whole number >= 0, "
                f"got {retries!r}"
            )
        params = signature_of(self.fn)
        if params is not None and not params.parameters:
            raise ConfigurationError(
                f"transaction {self.name!r} takes no parameters; its first parameter receives "
                f"the open database connection (def {self.name}(conn, ...))"
            )

    def conflict_delay(self, conflicts: int) -> float:
        """Seconds before running again after the ``conflicts``-th conflict in a row: short,
        growing, and spread so that the transactions that collided do not collide again."""
        return float(min(1.0, 0.005 * 2 ** (conflicts - 1)) * (0.5 + random.random()))


@dataclass(slots=True)
class WorkflowSpec:
    """A workflow: its function, registered name and recovery policy."""

    fn: Callable[..., Any]
    name: str
    max_recovery_attempts: int = 50
    is_async: bool = False
    # As for steps: the 0.1 default name, when declared without name= (a parent's
    # replay accepts a child recorded under it).
    former: str | None = None
    _hint: Any = field(default=_UNSET, repr=False)
    _signature: Any = field(default=_UNSET, repr=False)  # inspect.Signature | None
    _plain: tuple[str, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        attempts = self.max_recovery_attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ConfigurationError(
                f"workflow {self.name!r}: max_recovery_attempts must be a whole number >= 1, "
                f"got {attempts!r}"
            )
        check_name(self.name, "workflow name", error=ConfigurationError)
        self.is_async = inspect.iscoroutinefunction(self.fn)

    def check_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse arguments the function cannot take, before anything is written: a call
        that would fail inside the workflow must not store (and so poison) its ID."""
        signature = self._signature
        if signature is _UNSET:  # taken once, at the first call
            signature = self._signature = signature_of(self.fn)
            self._plain = _plain_names(signature)
        if signature is None:
            return
        plain = self._plain
        if plain is not None:
            # The common shape (named parameters, no defaults, no *args/**kwargs) is
            # checked without binding, which costs microseconds per call.
            given = len(args)
            if given + len(kwargs) == len(plain) and all(k in plain[given:] for k in kwargs):
                return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(
                f"workflow {self.name!r} cannot take these arguments: {exc} (its signature "
                f"is {signature}); nothing was stored"
            ) from None

    @property
    def return_hint(self) -> Any:
        if self._hint is _UNSET:
            self._hint = codec_module.return_hint(self.fn)
        return self._hint


def _plain_names(signature: inspect.Signature | None) -> tuple[str, ...] | None:
    """The parameter names when every one is positional-or-keyword without a default (the
    arguments then fit exactly when each name gets one value); else None."""
    if signature is None:
        return None
    params = signature.parameters.values()
    if all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params):
        return tuple(signature.parameters)
    return None
