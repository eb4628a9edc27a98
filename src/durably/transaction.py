"""``@app.transaction``: a function whose SQL commits together with its checkpoint."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from durably.app_core import AppCore
from durably.errors import ConfigurationError
from durably.execution.observe import observed
from durably.execution.specs import StepSpec, TransactionSpec, default_name, former_name
from durably.execution.transactions import run_alone, run_transaction
from durably.runtime.drivers import drive_async, drive_sync
from durably.workflow import check_callable, claim_name, workflow_of

P = ParamSpec("P")
R = TypeVar("R")


class Transaction(Generic[P, R]):
    """A transaction step. Inside a workflow its function runs in a database transaction
    that also writes its checkpoint, so its writes happen exactly once; outside any
    workflow it runs once in a transaction of its own. Callers leave out the connection:
    durably passes it as the function's first argument."""

    def __init__(self, app: AppCore, spec: TransactionSpec) -> None:
        self._app = app
        self.spec = spec
        functools.update_wrapper(self, spec.fn)

    def __repr__(self) -> str:
        return f"<durably transaction {self.spec.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function in a database transaction, its connection passed first. In
        a workflow the same transaction writes the step's checkpoint (exactly once);
        outside any workflow it runs once and nothing is recorded."""
        ctx = workflow_of(self._app, "transaction", self.spec.name)
        engine = self._app.engine  # in a workflow: the one running it (workflow_of)
        if ctx is None:
            protocol = run_alone(engine, self.spec, args, kwargs)
        else:
            # Numbered now, in the caller's task, as every durable operation is.
            position = ctx.take_step()
            protocol = run_transaction(ctx, position, self.spec, args, kwargs)
            if engine.observers:
                protocol = observed(ctx, position, self.spec.name, "transaction", protocol)
        if self.spec.is_async:
            return drive_async(engine, protocol)  # type: ignore[return-value]
        return drive_sync(engine, protocol)  # type: ignore[no-any-return]


def declare_transaction(
    app: AppCore,
    steps: dict[str, StepSpec],
    fn: Callable[Concatenate[Any, P], R],
    name: str | None,
    settings: Mapping[str, Any],
) -> Transaction[P, R]:
    """Make ``fn`` a transaction step of ``app`` (what ``@app.transaction`` does). It
    shares the steps' names: replay tells operations apart by name and kind."""
    check_callable(fn, "transaction")
    if isinstance(fn, Transaction):
        raise ConfigurationError(f"{fn!r} is already durable; decorate the plain function")
    spec = TransactionSpec(
        fn,
        default_name(fn) if name is None else name,
        former=None if name is not None else former_name(fn),
        **settings,
    )
    claim_name(steps, spec, "transaction", name)
    steps[spec.name] = spec
    return Transaction(app, spec)
