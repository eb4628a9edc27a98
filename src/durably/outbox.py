"""Enqueue and send inside the caller's own transaction (the outbox): ``enqueue_in`` and
``send_in``, with ``_async`` twins, shared by ``App`` and ``Client``.

The workflow or message is written on the caller's connection, in the transaction the
caller has open: it commits with the caller's own writes or is rolled back with them,
and workers are woken when it commits (a NOTIFY sent in a transaction is delivered at
its commit). The protocols are the ordinary ones (``execution.queueing.enqueue``,
``execution.waits.send_outside``); only where their statements run differs
(``runtime.drivers.drive_borrowed_*`` on ``store.borrowed``).
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeAlias, TypeVar

from durably import codec as codec_module
from durably.app_core import AppCore
from durably.errors import InvalidArgument
from durably.execution.effects import Protocol
from durably.execution.queueing import enqueue as enqueue_protocol
from durably.execution.specs import WorkflowSpec
from durably.execution.waits import check_key, check_topic, send_outside
from durably.options import WorkflowOptions, check_name, check_workflow_id
from durably.queues import Queue
from durably.runtime.drivers import drive_borrowed_async, drive_borrowed_sync
from durably.runtime.engine import Engine
from durably.store.borrowed import AsyncConnection, SyncConnection, check_async, check_sync
from durably.workflow import Workflow, noting_undeclared

if TYPE_CHECKING:
    from durably.execution.protocol import Started

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound="Outbox")

# The engine whose schema the rows go to, and the protocol whose statements write them.
Borrowing: TypeAlias = tuple[Engine, Protocol[T]]


def in_transaction(
    build: Callable[Concatenate[S, P], Borrowing[T]],
) -> tuple[
    Callable[Concatenate[S, SyncConnection, P], T],
    Callable[Concatenate[S, AsyncConnection, P], Coroutine[Any, Any, T]],
]:
    """The methods ``name(conn, ...)`` and ``name_async(conn, ...)`` of builder ``_name``
    (as ``twins`` makes them, with the caller's connection first). The builder checks
    the arguments and encodes the values; the connection is checked next; only then does
    a statement run, on that connection."""
    name = build.__name__.lstrip("_")

    @functools.wraps(build)
    def blocking(self: S, conn: SyncConnection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        engine, protocol = build(self, *args, **kwargs)
        return drive_borrowed_sync(check_sync(conn, engine.db), protocol)

    @functools.wraps(build)
    async def awaiting(self: S, conn: AsyncConnection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        engine, protocol = build(self, *args, **kwargs)
        checked = await check_async(conn, await engine.async_db())
        return await drive_borrowed_async(checked, protocol)

    _present(blocking, build, name, build.__doc__, "psycopg.Connection")
    _present(
        awaiting, build, f"{name}_async", f"Async twin of ``{name}``.", "psycopg.AsyncConnection"
    )
    return blocking, awaiting


def _present(method: Any, build: Callable[..., Any], name: str, doc: str | None, conn: str) -> None:
    # help() and tracebacks show the public name and parameters, the connection included.
    method.__name__ = name
    method.__qualname__ = f"{build.__qualname__.rpartition('.')[0]}.{name}".lstrip(".")
    method.__doc__ = doc
    signature = inspect.signature(build)
    params = list(signature.parameters.values())
    positional = inspect.Parameter.POSITIONAL_ONLY
    params[1:1] = [inspect.Parameter("conn", positional, annotation=conn)]
    params[0] = params[0].replace(kind=positional)
    method.__signature__ = signature.replace(
        parameters=params, return_annotation=inspect.Signature.empty
    )


def _unregistered(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("a workflow enqueued by name is never run by its enqueuer")


class Outbox(AppCore):
    """``enqueue_in`` and ``send_in``: durably's writes inside the caller's transaction.

    ``conn`` is a psycopg 3 connection to the app's database (``psycopg.Connection``;
    ``psycopg.AsyncConnection`` for the ``_async`` twins) with a transaction open, or
    with autocommit off (its first statement opens one). durably never commits it, rolls
    it back or changes its settings: what it writes commits with the caller's writes, or
    is rolled back with them. Refused before anything runs on it: a connection that is
    closed, whose transaction already failed, in autocommit mode with no transaction
    open, or to another database (its name and port are compared with the app's).
    """

    def _enqueue_in(
        self,
        queue_name: str | Queue,
        workflow: str | Workflow[Any, Any],
        /,
        *args: Any,
        id: str | None = None,
        priority: int | None = None,
        dedup_key: str | None = None,
        partition_key: str | None = None,
        delay: float | timedelta | datetime | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Borrowing[str]:
        """Put ``workflow(*args, **kwargs)`` on queue ``queue_name`` in the caller's
        transaction on ``conn``; returns the workflow's ID. It exists, and workers see it,
        once that transaction commits; a rollback leaves nothing. ``workflow`` is a
        workflow of this app or a workflow name (what a ``Client`` passes; a name no code
        here registers is enqueued unchecked, as ``client.enqueue`` does). The options mean
        what they mean on ``wf.options(...)``; the same ``id`` twice is one workflow, and a
        held ``dedup_key`` raises ``DuplicateWorkflow`` (the transaction stays usable).
        One statement runs on ``conn`` (more only for an ID or key already taken)."""
        spec, base = self._spec_of(workflow)
        queue = queue_name.name if isinstance(queue_name, Queue) else queue_name
        given: dict[str, Any] = {
            "id": id, "timeout": timeout, "priority": priority, "dedup_key": dedup_key,
            "partition_key": partition_key, "delay": delay,
        }  # fmt: skip
        options = replace(base, queue=queue, **{k: v for k, v in given.items() if v is not None})
        options.validate()
        spec.check_args(args, kwargs)
        engine = self.engine
        inputs = codec_module.dumps_args(engine.codec, args, kwargs)  # before any write
        workflow_id = options.id if options.id is not None else str(uuid.uuid4())
        queued = enqueue_protocol(engine, spec, options, workflow_id, inputs)
        return engine, _workflow_id(noting_undeclared(engine, queue, queued))

    enqueue_in, enqueue_in_async = in_transaction(_enqueue_in)

    def _send_in(
        self,
        workflow_id: str,
        message: Any,
        topic: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Borrowing[None]:
        """Send ``message`` to a workflow in the caller's transaction on ``conn``: it is
        delivered once that transaction commits (a workflow waiting in ``recv`` wakes
        then), and never if it rolls back. The same ``idempotency_key`` delivers once.
        WorkflowNotFound if no workflow has that ID (one enqueued earlier in the same
        transaction counts). The target's row stays locked until the transaction ends,
        so a send that runs last keeps the target waiting least."""
        check_workflow_id(workflow_id)
        topic = check_topic(topic)
        if idempotency_key is not None:
            check_key(idempotency_key, "idempotency_key")
        engine = self.engine
        value = engine.codec.dumps(message)  # refused before anything is written
        return engine, send_outside(engine, workflow_id, value, topic, idempotency_key)

    send_in, send_in_async = in_transaction(_send_in)

    def _spec_of(self, workflow: object) -> tuple[WorkflowSpec, WorkflowOptions]:
        """The spec to enqueue (the registered one when there is one: its arguments are
        checked), and the options the workflow object already carries."""
        if isinstance(workflow, Workflow):
            if workflow._app is not self:
                raise InvalidArgument(
                    f"{workflow!r} belongs to another app; enqueue it on its own app, or "
                    f"pass its name"
                )
            return workflow.spec, workflow._options
        if not isinstance(workflow, str):
            raise InvalidArgument(
                f"workflow must be a durably workflow or a workflow name, got "
                f"{type(workflow).__name__}"
            )
        name = check_name(workflow, "workflow name")
        spec = self._registry.get(name)
        return (spec or WorkflowSpec(_unregistered, name)), WorkflowOptions()


def _workflow_id(started: Protocol[Started]) -> Protocol[str]:
    return (yield from started).workflow_id
