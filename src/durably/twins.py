"""One source for a public method and its ``_async`` twin: ``twins``, and its ``Job``.

``x, x_async = twins(_x)`` makes both methods from one builder, which holds the
signature and the docstring. A builder checks its arguments and returns a ``Job``: the
engine to run on and the protocol to run there (``durably.execution.effects``). The
sync twin drives the protocol on the calling thread, the async twin awaits it; neither
adds logic, so the two cannot drift apart. Type checkers see both with the builder's
parameters.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeAlias, TypeVar

from durably.execution.effects import Protocol
from durably.execution.host import Host
from durably.runtime.drivers import drive_async, drive_sync

P = ParamSpec("P")
T = TypeVar("T")

# The engine to run on, and the protocol to run there. Where a check must come before
# the engine connects, the builder makes it before it asks for the engine.
Job: TypeAlias = tuple[Host, Protocol[T]]


def twins(
    build: Callable[P, Job[T]],
) -> tuple[Callable[P, T], Callable[P, Coroutine[Any, Any, T]]]:
    """The methods ``name`` and ``name_async`` of builder ``_name``."""
    name = build.__name__.lstrip("_")

    @functools.wraps(build)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> T:
        return drive_sync(*build(*args, **kwargs))

    @functools.wraps(build)
    async def awaiting(*args: P.args, **kwargs: P.kwargs) -> T:
        return await drive_async(*build(*args, **kwargs))

    _present(blocking, build, name, build.__doc__)
    _present(awaiting, build, f"{name}_async", f"Async twin of ``{name}``.")
    return blocking, awaiting


def _present(method: Any, build: Callable[..., Any], name: str, doc: str | None) -> None:
    # help(), tracebacks and reprs show the public name and parameters, not the builder
    # and its Job.
    method.__name__ = name
    method.__qualname__ = f"{build.__qualname__.rpartition('.')[0]}.{name}".lstrip(".")
    method.__doc__ = doc
    method.__annotations__ = {k: v for k, v in build.__annotations__.items() if k != "return"}
    method.__signature__ = inspect.signature(build).replace(
        return_annotation=inspect.Signature.empty
    )
