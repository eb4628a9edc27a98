"""Cron schedules: ``@app.scheduled`` and the schedule methods of App.

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

from durably.app_core import AppCore
from durably.errors import (
    ConfigurationError,
    InvalidArgument,
    ScheduleNotFound,
    UnknownWorkflow,
)
from durably.execution.effects import Protocol, Read, Write
from durably.execution.specs import WorkflowSpec, default_name
from durably.runtime.drivers import drive_sync
from durably.runtime.scheduler import RECHECK, Cron, Scheduler, run_started, start_tick
from durably.store.rows import Schedule
from durably.store.schedule_statements import ScheduleStatements, schedule_statements
from durably.twins import Job, twins
from durably.workflow import Workflow, WorkflowHandle, declare_workflow

if TYPE_CHECKING:
    from durably.runtime.engine import Engine, SchedulerHook

P = ParamSpec("P")
R = TypeVar("R")

MAX_NAME_LENGTH = 200
# A backfill starts at most this many ticks (split longer ranges).
MAX_BACKFILL = 10_000


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as stored. Times are aware datetimes in UTC.

    ``last_tick`` is the latest tick handled (run, or skipped as missed); ``next_tick``
    the next one to run (in the past while no worker has run it yet), None when the
    schedule is paused or never fires again.
    """

    name: str
    workflow_name: str
    cron: str
    timezone: str
    paused: bool
    catch_up: bool
    last_tick: datetime | None
    next_tick: datetime | None


@dataclass(frozen=True, slots=True)
class _Definition:
    name: str
    workflow_name: str
    cron: Cron
    catch_up: bool


class Scheduling(AppCore):
    """The schedule methods of App."""

    # Provided by App: how long a worker waits at most between schedule checks, and the
    # schema the schedules are stored in.
    poll_interval: float
    schema: str

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
                _check_name(name or default_name(fn))
                _check_signature(fn, name or default_name(fn))
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

    def _list_schedules(self) -> Job[list[ScheduleInfo]]:
        """Every schedule of the app, by name."""
        return self.engine, self._sched_list()

    list_schedules, list_schedules_async = twins(_list_schedules)

    def _sched_list(self) -> Protocol[list[ScheduleInfo]]:
        rows = yield Read(self._sched_statements().list())
        return [_info(row) for row in rows]

    def _get_schedule(self, name: str) -> Job[ScheduleInfo]:
        """One schedule; ScheduleNotFound if there is none of that name."""
        return self.engine, self._sched_get(name)

    get_schedule, get_schedule_async = twins(_get_schedule)

    def _sched_get(self, name: str) -> Protocol[ScheduleInfo]:
        return _info((yield from self._sched_row(name)))

    def _sched_row(self, name: str) -> Protocol[Schedule]:
        _check_lookup(name)
        rows = yield Read(self._sched_statements().get(name))
        if not rows:
            raise ScheduleNotFound(name)
        row: Schedule = rows[0]
        return row

    def _pause_schedule(self, name: str) -> Job[ScheduleInfo]:
        """Stop starting the schedule's ticks (workflows already started go on)."""
        return self.engine, self._sched_pause(name)

    pause_schedule, pause_schedule_async = twins(_pause_schedule)

    def _sched_pause(self, name: str) -> Protocol[ScheduleInfo]:
        _check_lookup(name)
        rows = yield Write(self._sched_statements().pause(name))
        if not rows:
            raise ScheduleNotFound(name)
        return _info(rows[0])

    def _resume_schedule(self, name: str) -> Job[ScheduleInfo]:
        """Start a paused schedule again from its next tick; the ticks that fell while it
        was paused are not run (``backfill`` runs them)."""
        return self.engine, self._sched_resume(name)

    resume_schedule, resume_schedule_async = twins(_resume_schedule)

    def _sched_resume(self, name: str) -> Protocol[ScheduleInfo]:
        while True:
            row = yield from self._sched_row(name)
            cron = Cron.parse(row.cron, row.timezone)
            next_tick = cron.after(datetime.now(UTC))
            rows = yield Write(self._sched_statements().resume(name, row.revision, next_tick))
            if rows:
                return _info(rows[0])
            # Changed meanwhile (redefined, paused again): read it again.

    def _delete_schedule(self, name: str) -> Job[None]:
        """Delete a schedule (workflows already started go on). A schedule declared with
        ``@app.scheduled`` comes back at the next launch of code that declares it."""
        return self.engine, self._sched_delete(name)

    delete_schedule, delete_schedule_async = twins(_delete_schedule)

    def _sched_delete(self, name: str) -> Protocol[None]:
        _check_lookup(name)
        rows = yield Write(self._sched_statements().delete(name))
        if not rows:
            raise ScheduleNotFound(name)
        self._sched_declared().pop(name, None)

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
        start, end = _check_range(start, end)
        engine = self.engine
        engine.ensure_launched()
        return engine, self._sched_backfill(name, start, end)

    backfill, backfill_async = twins(_backfill)

    def _sched_backfill(
        self, name: str, start: datetime, end: datetime
    ) -> Protocol[list[WorkflowHandle[Any]]]:
        row = yield from self._sched_row(name)
        spec = self._sched_spec(row.workflow_name, name)
        cron = Cron.parse(row.cron, row.timezone)
        ticks = [t for t in cron.ticks(start, end, MAX_BACKFILL + 1) if t < end]
        if len(ticks) > MAX_BACKFILL:
            raise InvalidArgument(
                f"backfill of schedule {name!r} from {start.isoformat()} to {end.isoformat()} "
                f"covers more than {MAX_BACKFILL} ticks; split it into shorter ranges"
            )
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
        tick = _check_at(at)
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

    def _sched_statements(self) -> ScheduleStatements:
        return schedule_statements(self.schema)


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
    return _info(rows[0])


def _info(row: Schedule) -> ScheduleInfo:
    last_tick, next_tick = row.last_tick, row.next_tick
    return ScheduleInfo(
        name=row.name,
        workflow_name=row.workflow_name,
        cron=row.cron,
        timezone=row.timezone,
        paused=row.paused,
        catch_up=row.catch_up,
        last_tick=last_tick.astimezone(UTC) if last_tick is not None else None,
        next_tick=next_tick.astimezone(UTC) if next_tick is not None and not row.paused else None,
    )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise ConfigurationError(
            f"a schedule name must be a string of 1 to {MAX_NAME_LENGTH} characters without "
            f"NUL, got {name!r}"
        )


def _check_lookup(name: object) -> None:
    if not isinstance(name, str):
        raise InvalidArgument(f"a schedule name must be a string, got {type(name).__name__}")


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


def _aware(value: object, label: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidArgument(f"{label} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(
            f"{label} must be timezone-aware (e.g. datetime(..., tzinfo=UTC)), got {value!r}"
        )
    return value.astimezone(UTC)


def _check_range(start: object, end: object) -> tuple[datetime, datetime]:
    first, last = _aware(start, "start"), _aware(end, "end")
    if last < first:
        raise InvalidArgument(f"end ({last.isoformat()}) is before start ({first.isoformat()})")
    return first, last


def _check_at(at: object) -> datetime:
    if at is None:
        return datetime.now(UTC).replace(microsecond=0)
    return _aware(at, "at").replace(microsecond=0)
