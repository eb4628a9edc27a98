"""``app.queue(...)``: durable queues whose limits hold across every worker."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from durably import codec as codec_module
from durably.app_core import AppCore
from durably.batch import Run, as_runs, encode_runs, split_run, stamped
from durably.errors import InvalidArgument
from durably.execution.context import active_workflow
from durably.execution.effects import Protocol
from durably.execution.protocol import Started
from durably.execution.queueing import debounce as debounce_protocol
from durably.execution.queueing import enqueue_many as enqueue_many_protocol
from durably.execution.specs import WorkflowSpec
from durably.options import check_name, check_seconds
from durably.queue_spec import QueueSpec
from durably.twins import Job, twins
from durably.workflow import Workflow, WorkflowHandle, say_if_undeclared

if TYPE_CHECKING:
    from durably.runtime.engine import Engine


class Queue:
    """A declared queue: enqueue workflows on it, or debounce them."""

    def __init__(self, app: AppCore, spec: QueueSpec) -> None:
        self._app = app
        self.spec = spec
        self.name = spec.name
        """The queue's name: what ``options(queue=...)`` and ``client.enqueue`` take."""
        # Each workflow as bound to this queue, made once: ``options()`` builds a new
        # Workflow, which cost an enqueue as much as encoding its arguments.
        self._bound: weakref.WeakKeyDictionary[Workflow[Any, Any], Workflow[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"<durably queue {self.name!r}>"

    def enqueue(self, wf: Workflow[Any, Any], *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Put ``wf(*args, **kwargs)`` on this queue; returns its handle at once."""
        return self._on_queue(wf).start(*args, **kwargs)

    async def enqueue_async(
        self, wf: Workflow[Any, Any], *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Async twin of ``enqueue``."""
        return await self._on_queue(wf).start_async(*args, **kwargs)

    def _on_queue(self, wf: Workflow[Any, Any]) -> Workflow[Any, Any]:
        """``wf`` with this queue as its option (its other options kept)."""
        workflow = _workflow(wf)
        bound = self._bound.get(workflow)
        if bound is None:
            bound = self._bound[workflow] = workflow.options(queue=self.name)
        return bound

    def _enqueue_many(
        self,
        wf: Workflow[Any, Any],
        runs: Iterable[Run],
        *,
        ids: Sequence[str] | None = None,
    ) -> Job[list[WorkflowHandle[Any]]]:
        """Put many runs of ``wf`` on this queue at once; returns their handles, in order.

        Each run is a tuple of positional arguments or a dict of keyword arguments; every
        run is checked before any is written. ``ids`` gives each run its ID (an existing
        one attaches, as for ``enqueue``); options set with ``wf.options(...)`` apply to
        all. A thousand runs go in one statement and one commit, and workers are told
        once: far cheaper per run than as many enqueues. Inside a workflow, each run is
        enqueued as a child of its own, in order.
        """
        workflow = self._on_queue(wf)
        spec = workflow.spec
        engine = self._app.engine
        engine.ensure_launched()
        options = workflow.start_options
        given = as_runs(runs)
        encoded = encode_runs(given, ids, options, engine.codec, spec.check_args)
        if active_workflow() is not None:
            return engine, _children(workflow, given, ids)
        encoded = stamped(engine, encoded, spec.name, self.name)
        queued = enqueue_many_protocol(engine, spec, options, encoded)
        return engine, _as_handles(engine, spec, self.name, queued)

    enqueue_many, enqueue_many_async = twins(_enqueue_many)

    def _debounce(
        self,
        key: str,
        period: float,
        wf: Workflow[Any, Any],
        *args: Any,
        max_wait: float | None = None,
        **kwargs: Any,
    ) -> Job[WorkflowHandle[Any]]:
        """Run ``wf`` once ``period`` s after the last call with this ``key``, with the
        latest arguments; with ``max_wait``, no later than that long after the first call.
        Every call of a burst returns the handle of that one run."""
        check_name(key, "debounce key")
        period = check_seconds(period, "period")
        if max_wait is not None:
            max_wait = check_seconds(max_wait, "max_wait")
        spec = _workflow(wf).spec
        spec.check_args(args, kwargs)
        engine = self._app.engine
        engine.ensure_launched()
        inputs = codec_module.dumps_args(engine.codec, args, kwargs)
        protocol = debounce_protocol(engine, spec, self.name, key, period, max_wait, inputs, None)
        return engine, _as_handle(engine, spec, protocol)

    debounce, debounce_async = twins(_debounce)


def _as_handle(
    engine: Engine, spec: WorkflowSpec, debounced: Protocol[str]
) -> Protocol[WorkflowHandle[Any]]:
    return WorkflowHandle(engine, (yield from debounced), spec.return_hint)


def _as_handles(
    engine: Engine, spec: WorkflowSpec, queue: str, queued: Protocol[list[Started]]
) -> Protocol[list[WorkflowHandle[Any]]]:
    started = yield from queued
    say_if_undeclared(engine, queue, all(one.queue_declared for one in started))
    return [WorkflowHandle(engine, one.workflow_id, spec.return_hint) for one in started]


def _children(
    workflow: Workflow[Any, Any], runs: list[Run], ids: Sequence[str] | None
) -> Protocol[list[WorkflowHandle[Any]]]:
    """Inside a workflow: each run a child enqueue of its own, numbered now, in order
    (their IDs derive from the parent's unless ``ids`` gives them)."""
    jobs = []
    for index, run in enumerate(runs):
        child = workflow if ids is None else workflow.options(id=ids[index])
        jobs.append(child._start(*split_run(run, index))[1])
    handles = []
    for job in jobs:
        handles.append((yield from job))
    return handles


def _workflow(wf: object) -> Workflow[Any, Any]:
    if not isinstance(wf, Workflow):
        raise InvalidArgument(f"expected a durably workflow, got {type(wf).__name__}")
    return wf
