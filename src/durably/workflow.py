"""The objects the decorators return: callable workflows and steps, and their handles."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from durably import codec as codec_module
from durably.app_core import AppCore
from durably.errors import ConfigurationError, InvalidArgument, WorkflowNotFound
from durably.execution.context import WorkflowContext, active_workflow, in_step
from durably.execution.effects import Protocol
from durably.execution.observe import observed, stamp
from durably.execution.protocol import Started, read_outcome, run_step, start_child, start_top
from durably.execution.queueing import enqueue, enqueue_child
from durably.execution.specs import StepSpec, WorkflowSpec, default_name, former_name
from durably.options import IfDuplicate, WorkflowOptions, check_seconds
from durably.runtime.drivers import drive_async, drive_sync
from durably.runtime.engine import NOT_HERE
from durably.status import Status
from durably.store.rows import Outcome
from durably.twins import Job

if TYPE_CHECKING:
    from durably.runtime.engine import Engine

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("durably")


class WorkflowHandle(Generic[R]):
    """A workflow that exists in the database: wait for its result or look at its status."""

    def __init__(self, engine: Engine, workflow_id: str, hint: Any = None) -> None:
        self._engine = engine
        self.id = workflow_id
        """The workflow's ID: ``app.handle(id)`` or ``client.handle(id)`` gives this handle
        again, in any process."""
        self._hint = hint

    def __repr__(self) -> str:
        return f"WorkflowHandle(id={self.id!r})"

    def result(self, timeout: float | None = None) -> R:
        """Wait for the workflow to finish; return its result or raise its recorded error.
        ``timeout``: seconds to wait (None: no limit), then ``ResultTimeout``; the workflow
        goes on."""
        return self._engine.wait_outcome(self.id, self._hint, _check_timeout(timeout))  # type: ignore[no-any-return]

    async def result_async(self, timeout: float | None = None) -> R:
        """Async twin of ``result``."""
        return await self._engine.wait_outcome_async(  # type: ignore[no-any-return]
            self.id, self._hint, _check_timeout(timeout)
        )

    def status(self) -> Status:
        """The workflow's current status."""
        return _status(self.id, drive_sync(self._engine, read_outcome(self._engine, self.id)))

    async def status_async(self) -> Status:
        """Async twin of ``status``."""
        outcome = await drive_async(self._engine, read_outcome(self._engine, self.id))
        return _status(self.id, outcome)


def _status(workflow_id: str, outcome: Outcome | None) -> Status:
    if outcome is None:
        raise WorkflowNotFound(workflow_id)
    return Status(outcome.status)


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise InvalidArgument(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return check_seconds(timeout, "timeout")  # None, not infinity, waits for ever


class Workflow(Generic[P, R]):
    """A durable workflow. Call it to run it durably; ``start`` runs it in the background."""

    def __init__(
        self, app: AppCore, spec: WorkflowSpec, options: WorkflowOptions | None = None
    ) -> None:
        self._app = app
        self.spec = spec
        self._options = options or WorkflowOptions()
        functools.update_wrapper(self, spec.fn)

    @property
    def name(self) -> str:
        """The name it is registered, recorded and enqueued under."""
        return self.spec.name

    def __repr__(self) -> str:
        return f"<durably workflow {self.spec.name!r}>"

    @property
    def start_options(self) -> WorkflowOptions:
        """The options its next start takes (set with ``options``)."""
        return self._options

    def options(
        self,
        *,
        id: str | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        dedup_key: str | None = None,
        partition_key: str | None = None,
        delay: float | timedelta | datetime | None = None,
        if_duplicate: IfDuplicate | None = None,
    ) -> Workflow[P, R]:
        """This workflow with options for the next start: ``id`` (an idempotency key),
        ``timeout`` (seconds; a deadline fixed at the start, past which the workflow is
        cancelled), and for queued work ``queue``,
        ``priority`` (1..2**31-1, lower first), ``dedup_key``, ``partition_key``,
        ``delay`` (seconds, a timedelta or an aware datetime) and ``if_duplicate`` ('raise' or
        'existing')."""
        given: dict[str, Any] = {
            "id": id, "timeout": timeout, "queue": queue, "priority": priority,
            "dedup_key": dedup_key, "partition_key": partition_key, "delay": delay,
            "if_duplicate": if_duplicate,
        }  # fmt: skip
        options = replace(self._options, **{k: v for k, v in given.items() if v is not None})
        options.validate()
        return Workflow(self._app, self.spec, options)

    # ---- call: run durably and return the result

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the workflow durably and return its result (an ``async def`` workflow
        gives a coroutine to await). The arguments are checked against its signature
        before anything is written. Called from a workflow, it is a child with the ID
        ``<parent>-<step>``."""
        # Everything that numbers the call happens now, before any await, so that
        # concurrent children (asyncio.gather) replay with the same step numbers.
        engine, begin = self._begin(args, kwargs)
        if self.spec.is_async:
            return self._run_async(engine, begin, args, kwargs)  # type: ignore[return-value]
        generation = engine.lease.generation
        started = drive_sync(engine, begin)
        if started.epoch is not None:
            ctx = self._context(engine, started, generation)
            try:
                return engine.run_sync(ctx, self.spec, args, kwargs)  # type: ignore[no-any-return]
            except NOT_HERE:
                pass  # parked, or taken over: its outcome is recorded elsewhere or later
        return engine.wait_outcome(started.workflow_id, self.spec.return_hint, None)  # type: ignore[no-any-return]

    async def _run_async(
        self,
        engine: Engine,
        begin: Protocol[Started],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        generation = engine.lease.generation
        started = await drive_async(engine, begin)
        if started.epoch is not None:
            ctx = self._context(engine, started, generation)
            try:
                return await engine.run_async(ctx, self.spec, args, kwargs)
            except NOT_HERE:
                pass
        return await engine.wait_outcome_async(started.workflow_id, self.spec.return_hint, None)

    def _context(self, engine: Engine, started: Started, generation: int) -> WorkflowContext:
        """The run of a workflow this call created; ``generation`` is the executor's lease
        generation taken before the statement that created it."""
        assert started.epoch is not None
        return WorkflowContext(
            engine,
            started.workflow_id,
            self.spec.name,
            started.epoch,
            deadline=started.deadline,
            lease_generation=generation,
        )

    # ---- start: run in the background, return a handle

    def start(self, *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[Any]:
        """Start the workflow in the background and return its handle at once."""
        return drive_sync(*self._start(args, kwargs))

    async def start_async(self, *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[Any]:
        """Async twin of ``start``."""
        return await drive_async(*self._start(args, kwargs))

    def _start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job[WorkflowHandle[Any]]:
        engine, begin = self._begin(args, kwargs, background=True)
        # Taken before the statement that creates the run: see ``_context``.
        generation = engine.lease.generation
        return engine, self._started(engine, begin, generation, args, kwargs)

    def _started(
        self,
        engine: Engine,
        begin: Protocol[Started],
        generation: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Protocol[WorkflowHandle[Any]]:
        started = yield from begin
        if started.epoch is not None:
            ctx = self._context(engine, started, generation)
            engine.run_in_background(ctx, self.spec, args, kwargs)
        return WorkflowHandle(engine, started.workflow_id, self.spec.return_hint)

    def _begin(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, background: bool = False
    ) -> tuple[Engine, Protocol[Started]]:
        """Number the call (inside a workflow) and prepare the protocol that starts it.
        ``background``: the caller gets a handle, not the result (``start``)."""
        # Before anything is numbered or written: arguments the function cannot take are
        # refused here, in the caller, instead of failing inside a stored workflow.
        self.spec.check_args(args, kwargs)
        engine = self._app.engine
        engine.ensure_launched()
        parent = active_workflow()
        options = self._options
        if parent is not None and parent.engine is engine:
            position = parent.take_step()
            if options.queue is not None:
                child = enqueue_child(parent, position, self.spec, options, args, kwargs)
                if engine.observers:
                    child = observed(parent, position, self.spec.name, "enqueue", child)
                return engine, noting_undeclared(engine, options.queue, child)
            starting = start_child(
                parent,
                position,
                self.spec,
                self._options.id,
                args,
                kwargs,
                self._options.timeout,
            )
            if engine.observers:
                starting = observed(parent, position, self.spec.name, "child", starting)
            return engine, starting
        if self._options.id is None and in_step.get() is not None:
            # A step body runs again after a crash or a failed attempt: a new random ID
            # each time would start the workflow once per attempt, unseen.
            raise ConfigurationError(
                f"workflow {self.spec.name!r} started in a step without an ID would start "
                f"again, as another workflow, each time the step runs again; give it one "
                f"made from the step's key: "
                f'.options(id=f"{{durably.step_key()}}-{self.spec.name}")'
            )
        workflow_id = self._options.id if self._options.id is not None else str(uuid.uuid4())
        # Encoding happens here, before anything is written: bad input changes nothing.
        inputs = codec_module.dumps_args(engine.codec, args, kwargs)
        if engine.observers:
            kind = "start" if options.queue is None else "enqueue"
            inputs = stamp(engine, workflow_id, self.spec.name, kind, inputs, options.queue)
        if options.queue is not None:
            queued = enqueue(engine, self.spec, options, workflow_id, inputs)
            return engine, noting_undeclared(engine, options.queue, queued)
        return engine, start_top(
            engine, self.spec, workflow_id, inputs, options.timeout, for_caller=background
        )


# Queues (per schema) this process said are not declared yet: once each, not per enqueue.
_UNDECLARED_SAID: set[tuple[str, str]] = set()


def noting_undeclared(engine: Engine, queue: str, queued: Protocol[Started]) -> Protocol[Started]:
    """Enqueue needs no queue row, so work on a queue nobody declared yet is accepted and
    waits; that is said (a warning, once per queue) in case the name is a typo."""
    started = yield from queued
    say_if_undeclared(engine, queue, started.queue_declared)
    return started


def say_if_undeclared(engine: Engine, queue: str, declared: bool) -> None:
    """The warning of ``noting_undeclared``, once per queue and schema."""
    said = (engine.statements.schema, queue)
    if not declared and said not in _UNDECLARED_SAID:
        _UNDECLARED_SAID.add(said)
        log.warning(
            "queue %r is not declared yet: its work waits ENQUEUED until a worker whose code "
            "declares it with app.queue(%r, ...) starts (check the name if none does)",
            queue,
            queue,
        )


class Step(Generic[P, R]):
    """A step: inside a workflow its result is recorded; outside one it is a plain call."""

    def __init__(self, app: AppCore, spec: StepSpec) -> None:
        self._app = app
        self.spec = spec
        functools.update_wrapper(self, spec.fn)

    def __repr__(self) -> str:
        return f"<durably step {self.spec.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the step. In a workflow it takes the next step number, runs with its
        retry policy and records its result (replayed, not run again, after a crash);
        outside any workflow it is a plain call of the function."""
        ctx = workflow_of(self._app, "step", self.spec.name)
        if ctx is None:
            return self.spec.fn(*args, **kwargs)  # type: ignore[no-any-return]
        # The number is taken now, in the caller's task, so concurrent steps replay alike.
        position = ctx.take_step()
        protocol = run_step(ctx, position, self.spec, args, kwargs)
        if ctx.engine.observers:
            protocol = observed(ctx, position, self.spec.name, "step", protocol)
        if self.spec.is_async:
            return drive_async(ctx.engine, protocol)  # type: ignore[return-value]
        return drive_sync(ctx.engine, protocol)  # type: ignore[no-any-return]


def workflow_of(app: AppCore, kind: str, name: str) -> WorkflowContext | None:
    """The workflow a step or transaction of ``app`` is called in (None: outside any).
    A workflow of another App cannot record it: refused, never run unrecorded."""
    ctx = active_workflow()
    if ctx is None or ctx.engine is app._engine:
        return ctx
    raise ConfigurationError(
        f"{kind} {name!r} is declared on another App than workflow {ctx.workflow_id!r} "
        f"that calls it, whose App could not record it; declare the {kind} on the "
        f"workflow's App (one App per database schema and process)"
    )


def declare_workflow(
    app: AppCore, fn: Callable[P, R], name: str | None, max_recovery_attempts: int
) -> Workflow[P, R]:
    """Register ``fn`` as a workflow of ``app`` (what ``@app.workflow`` and
    ``@app.scheduled`` do); a second function under a taken name is refused."""
    check_callable(fn, "workflow")
    spec = WorkflowSpec(
        fn,
        default_name(fn) if name is None else name,
        max_recovery_attempts=max_recovery_attempts,
        former=None if name is not None else former_name(fn),
    )
    claim_name(app._registry, spec, "workflow", name)
    app._registry[spec.name] = spec
    return Workflow(app, spec)


def declare_step(
    app: AppCore,
    steps: dict[str, StepSpec],
    fn: Callable[P, R],
    name: str | None,
    retry: Mapping[str, Any],
) -> Step[P, R]:
    """Make ``fn`` a step of ``app`` (what ``@app.step`` does); as for workflows, a second
    function under a taken name is refused: replay tells steps apart by name."""
    check_callable(fn, "step")
    spec = StepSpec(
        fn,
        default_name(fn) if name is None else name,
        former=None if name is not None else former_name(fn),
        **retry,
    )
    claim_name(steps, spec, "step", name)
    steps[spec.name] = spec
    return Step(app, spec)


def claim_name(
    taken: Mapping[str, WorkflowSpec | StepSpec],
    spec: WorkflowSpec | StepSpec,
    what: str,
    given: str | None,
) -> None:
    registered = taken.get(spec.name)
    if registered is None or registered.fn is spec.fn:
        return
    source = f"{_where(registered.fn)} and {_where(spec.fn)}"
    if given is None:
        raise ConfigurationError(
            f"two {what}s are both named {spec.name!r} on this app ({source}): the default "
            f"name is the function's qualified name, without its module; pass "
            f"name=... to @app.{what} of one of them"
        )
    raise ConfigurationError(
        f"a {what} named {spec.name!r} is already registered on this app ({source}); "
        f"give one of them another name=..."
    )


def _where(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{qualname}"


def check_callable(fn: object, what: str) -> None:
    """A decorator got a plain function (not its own settings, not a durable object)."""
    if not callable(fn):
        raise ConfigurationError(
            f"@{what} decorates a function; got {type(fn).__name__} (did you mean "
            f"@app.{what}(...)?)"
        )
    if isinstance(fn, Workflow | Step):
        raise ConfigurationError(f"{fn!r} is already durable; decorate the plain function")
