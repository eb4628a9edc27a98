"""Cron schedules: ``@app.scheduled`` and the schedule methods of App.

(Listing, pausing, resuming and deleting need no workflow code: they live in
``schedule_control``, which App and Client share.)

A schedule runs a workflow at every tick of a cron expression, exactly once per tick
across all the workers of the app. Schedules are rows in the database, so every worker
sees them, whichever process declared or created them; a schedule fires only on the
workers that have its workflow registered.

The workflow gets the tick time as its single argument (``scheduled_at``: an aware
datetime in UTC), and its ID is ``sched:<schedule name>:<tick in UTC>``, for example
``sched:sweep:2025-01-31T09:00:00Z``. That ID is what makes a tick run once: starting a
workflow whose ID exists attaches to it instead of running it again. It also makes
``backfill`` and ``trigger`` idempotent: they start the workflows of given tick times,
so running them again adds nothing.

Missed ticks (no worker ran when they fell due): by default only the latest one runs
when a worker comes back, the older ones are skipped; with ``catch_up=True`` every
missed tick runs, oldest first, up to the latest 1000 (older ones are skipped with a
warning). Ticks that fell while a schedule was paused are never run by ``resume``
(use ``backfill`` for them).

These methods are not durable operations: inside a workflow, call them from a step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from durably.errors import ConfigurationError, UnknownWorkflow
from durably.errors import ScheduleNotFound as ScheduleNotFound  # re-exported
from durably.execution.effects import Protocol, Read, Write
from durably.execution.specs import WorkflowSpec, default_name
from durably.names import check_name
from durably.runtime.drivers import drive_sync
from durably.runtime.scheduler import RECHECK, Cron, Scheduler, run_started, start_tick
from durably.schedule_control import (
    ScheduleControl,
    backfill_ticks,
    check_at,
    check_range,
    schedule_info,
)
from durably.schedule_control import ScheduleInfo as ScheduleInfo  # re-exported
from durably.store.schedule_statements import schedule_statements
from durably.twins import Job, twins
from durably.workflow import Workflow, WorkflowHandle, declare_workflow

if TYPE_CHECKING:
    from durably.runtime.engine import Engine, SchedulerHook

P = ParamSpec("P")
R = TypeVar("R")

MAX_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class _Definition:
    name: str
    workflow_name: str
    cron: Cron
    catch_up: bool


class Scheduling(ScheduleControl):
    """The schedule methods of App."""

    # Provided by App: how long a worker waits at most between schedule checks.
    poll_interval: float

    # ------------------------------------------------------------- declaring

    def scheduled(
        self,
        cron: str,
        timezone: str | None = None,
        *,
        name: str | None = None,
        catch_up: bool = False,
        max_recovery_attempts: int = 50,
    ) -> Callable[[Callable[P, R]], Workflow[P, R]]:
        """Run the decorated function at every tick of ``cron``, exactly once per tick
        across all workers; it receives the tick time (``scheduled_at``, aware, UTC).

        ``cron`` has 5 fields (minute hour day-of-month month day-of-week) or 6 with a
        leading seconds field; it is read in ``timezone`` (an IANA name, default UTC).
        The function becomes a workflow like ``@app.workflow(name=...)`` (callable and
        startable as usual), and the schedule takes the workflow's name.

        The schedule is stored when the app connects to its database, and on every
        launch the code's declaration wins: a stored schedule of the same name is given
        this cron, timezone and catch-up setting (it stays paused if it was paused).
        An invalid cron or timezone raises ConfigurationError here, storing nothing.
        """
        app = self
        parsed = Cron.parse(cron, timezone)
        _check_catch_up(catch_up)
        if name is not None:
            _check_name(name)

        def decorate(fn: Callable[P, R]) -> Workflow[P, R]:
            if callable(fn) and not isinstance(fn, Workflow):
                # Checked before registering: a refused declaration leaves nothing behind.
                _check_name(default_name(fn) if name is None else name)
                _check_signature(fn, default_name(fn) if name is None else name)
            wf = declare_workflow(app, fn, name, max_recovery_attempts)
            definition = _Definition(wf.name, wf.name, parsed, catch_up)
            self._sched_declared()[wf.name] = definition
            engine = app._engine
            if engine is not None:  # declared after the app connected: store it now
                drive_sync(engine, _upsert(engine, definition))
            return wf

        return decorate

    def _sched_declared(self) -> dict[str, _Definition]:
        declared: dict[str, _Definition] | None = self.__dict__.get("_declared_schedules")
        if declared is None:
            declared = self.__dict__["_declared_schedules"] = {}
        return declared

    def _make_scheduler(self, engine: Engine) -> SchedulerHook | None:
        """Store the declared schedules (the code's declaration wins), and give the engine
        its scheduler: every worker checks every schedule of its workflows."""
        for definition in self._sched_declared().values():
            drive_sync(engine, _upsert(engine, definition))
        return Scheduler(engine, max_wait=RECHECK)

    # ------------------------------------------------------------- managing

    def _create_schedule(
        self,
        name: str,
        wf: Workflow[Any, Any] | str,
        cron: str,
        *,
        timezone: str | None = None,
        catch_up: bool = False,
    ) -> Job[ScheduleInfo]:
        """Create a schedule at run time (or redefine the one of that name): run ``wf`` (a
        workflow of this app, or its name) at every tick of ``cron`` in ``timezone``.

        Redefining keeps the schedule's paused state and, if its cron and timezone are
        unchanged, its progress; a new cron or timezone starts from the next tick.
        """
        definition = self._sched_definition(name, wf, cron, timezone, catch_up)
        engine = self.engine
        return engine, _upsert(engine, definition)

    create_schedule, create_schedule_async = twins(_create_schedule)

    def _sched_definition(
        self, name: str, wf: object, cron: str, timezone: str | None, catch_up: bool
    ) -> _Definition:
        _check_name(name)
        parsed = Cron.parse(cron, timezone)
        _check_catch_up(catch_up)
        if isinstance(wf, Workflow):
            workflow_name = wf.name
        elif isinstance(wf, str):
            workflow_name = wf
        else:
            raise ConfigurationError(
                f"create_schedule takes a workflow of this app or its name, got {type(wf).__name__}"
            )
        spec = self._registry.get(workflow_name)
        if spec is None:
            raise ConfigurationError(
                f"no workflow named {workflow_name!r} is registered on this app; declare it "
                f"with @app.workflow before scheduling it"
            )
        _check_signature(spec.fn, workflow_name)
        return _Definition(name, workflow_name, parsed, catch_up)

    # ------------------------------------------------------------- running ticks

    def _backfill(
        self, name: str, start: datetime, end: datetime
    ) -> Job[list[WorkflowHandle[Any]]]:
        """Run every tick of the schedule in [``start``, ``end``) (aware datetimes), in
        the background; return their handles in tick order.

        Each tick is the workflow ``sched:<name>:<tick>``: a tick that already ran (by
        the schedule or an earlier backfill) is not run again, so backfilling twice adds
        nothing. Works on paused schedules too. At most 10,000 ticks per call.
        """
        start, end = check_range(start, end)
        engine = self.engine
        engine.ensure_launched()
        return engine, self._sched_backfill(name, start, end)

    backfill, backfill_async = twins(_backfill)

    def _sched_backfill(
        self, name: str, start: datetime, end: datetime
    ) -> Protocol[list[WorkflowHandle[Any]]]:
        row = yield from self._sched_row(name)
        spec = self._sched_spec(row.workflow_name, name)
        ticks = backfill_ticks(row, start, end)
        engine = self.engine
        handles: list[WorkflowHandle[Any]] = []
        for tick in ticks:
            generation = engine.lease.generation
            started = yield from start_tick(engine, spec, name, tick)
            run_started(engine, spec, started, tick, generation)
            handles.append(WorkflowHandle(engine, started.workflow_id, spec.return_hint))
        return handles

    def _trigger(self, name: str, at: datetime | None = None) -> Job[WorkflowHandle[Any]]:
        """Run the schedule's workflow once now, in the background; return its handle.

        It runs as the tick of time ``at`` (an aware datetime, truncated to the second;
        default: now), with the ID ``sched:<name>:<at>``: triggering again with the same
        ``at`` runs nothing more, and if the cron also fires at ``at`` that tick is this
        same run. Works on paused schedules too.
        """
        tick = check_at(at)
        engine = self.engine
        engine.ensure_launched()
        return engine, self._sched_trigger(name, tick)

    trigger, trigger_async = twins(_trigger)

    def _sched_trigger(self, name: str, tick: datetime) -> Protocol[WorkflowHandle[Any]]:
        row = yield from self._sched_row(name)
        spec = self._sched_spec(row.workflow_name, name)
        engine = self.engine
        generation = engine.lease.generation
        started = yield from start_tick(engine, spec, name, tick)
        run_started(engine, spec, started, tick, generation)
        return WorkflowHandle(engine, started.workflow_id, spec.return_hint)

    # ------------------------------------------------------------- helpers

    def _sched_spec(self, workflow_name: str, schedule: str) -> WorkflowSpec:
        spec = self._registry.get(workflow_name)
        if spec is None:
            raise UnknownWorkflow(
                f"schedule {schedule!r} runs workflow {workflow_name!r}, which is not "
                f"registered on this app"
            )
        return spec

    def _sched_forget(self, name: str) -> None:
        self._sched_declared().pop(name, None)


def _upsert(engine: Engine, definition: _Definition) -> Protocol[ScheduleInfo]:
    statements = schedule_statements(engine.db.schema, engine.db.dialect)
    cron = definition.cron
    rows = yield Write(
        statements.upsert(
            name=definition.name,
            workflow_name=definition.workflow_name,
            cron=cron.expr,
            timezone=cron.timezone,
            catch_up=definition.catch_up,
            next_tick=cron.after(datetime.now(UTC)),
        )
    )
    if not rows:  # created by a concurrent call between our snapshot and our insert
        rows = yield Read(statements.get(definition.name))
    return schedule_info(rows[0])


def _check_name(name: object) -> None:
    check_name(name, "schedule name", max_chars=MAX_NAME_LENGTH, error=ConfigurationError)


def _check_catch_up(catch_up: object) -> None:
    if not isinstance(catch_up, bool):
        raise ConfigurationError(f"catch_up must be True or False, got {catch_up!r}")


def _check_signature(fn: Callable[..., Any], what: str) -> None:
    """A scheduled workflow is called with the tick time as its one argument."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # cannot tell: let the first tick say
    try:
        signature.bind(datetime.now(UTC))
    except TypeError:
        raise ConfigurationError(
            f"scheduled workflow {what!r} must accept the tick time as its single argument "
            f"(def {getattr(fn, '__name__', 'fn')}(scheduled_at: datetime)); its signature "
            f"is {signature}"
        ) from None
