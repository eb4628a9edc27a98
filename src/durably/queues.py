"""``app.queue(...)``: durable queues whose limits hold across every worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durably import codec as codec_module
from durably.app_core import AppCore
from durably.errors import InvalidArgument
from durably.execution.effects import Protocol
from durably.execution.queueing import debounce as debounce_protocol
from durably.execution.specs import WorkflowSpec
from durably.options import check_name, check_seconds
from durably.queue_spec import QueueSpec
from durably.twins import Job, twins
from durably.workflow import Workflow, WorkflowHandle

if TYPE_CHECKING:
    from durably.runtime.engine import Engine


class Queue:
    """A declared queue: enqueue workflows on it, or debounce them."""

    def __init__(self, app: AppCore, spec: QueueSpec) -> None:
        self._app = app
        self.spec = spec
        self.name = spec.name

    def __repr__(self) -> str:
        return f"<durably queue {self.name!r}>"

    def enqueue(self, wf: Workflow[Any, Any], *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Put ``wf(*args, **kwargs)`` on this queue; returns its handle at once."""
        return _workflow(wf).options(queue=self.name).start(*args, **kwargs)

    async def enqueue_async(
        self, wf: Workflow[Any, Any], *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Async twin of ``enqueue``."""
        return await _workflow(wf).options(queue=self.name).start_async(*args, **kwargs)

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
        latest arguments; with ``max_wait``, no later than that long after the first call."""
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


def _workflow(wf: object) -> Workflow[Any, Any]:
    if not isinstance(wf, Workflow):
        raise InvalidArgument(f"expected a durably workflow, got {type(wf).__name__}")
    return wf
