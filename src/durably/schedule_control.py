"""The schedule methods that need no workflow code: shared by App and Client.

Listing, pausing, resuming and deleting a schedule work on its row alone, so a
``Client`` (an operator's script, the ``durably schedules`` commands) has them too. A
Client can also ``trigger`` and ``backfill``: it cannot run the tick itself, so it
creates the tick's workflow (``sched:<name>:<tick>``) parked and due now, for any worker
that registers the schedule's workflow to claim and run, as after ``resume``. The ID
makes that idempotent exactly like the App's own trigger: a tick that exists is left as
it is. ``App`` keeps its own ``trigger`` and ``backfill`` (``scheduling``), which run
the tick in the calling process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from durably import codec as codec_module
from durably.app_core import AppCore
from durably.errors import InvalidArgument, ScheduleNotFound, WorkflowConflict
from durably.execution.effects import Protocol, Read, Write
from durably.runtime.scheduler import Cron, tick_id
from durably.store.rows import Schedule
from durably.store.schedule_statements import ScheduleStatements, schedule_statements
from durably.twins import Job, twins
from durably.workflow import WorkflowHandle

# A backfill starts at most this many ticks (split longer ranges).
MAX_BACKFILL = 10_000
# Ticks created per statement by a Client's backfill (progress is reported after each).
HAND_OVER_BATCH = 500
# The recovery attempts of a tick a Client starts: it cannot see the workflow's own
# setting, so it takes the default of @app.workflow and @app.scheduled.
HANDED_OVER_ATTEMPTS = 50

# Called with (ticks started so far, ticks in all) during a backfill.
BackfillProgress = Callable[[int, int], None]


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


class ScheduleControl(AppCore):
    """Listing and steering schedules by name (App and Client)."""

    # Provided by App and Client: the schema the schedules are stored in.
    schema: str

    def _list_schedules(self) -> Job[list[ScheduleInfo]]:
        """Every schedule of the app, by name."""
        return self.engine, self._sched_list()

    list_schedules, list_schedules_async = twins(_list_schedules)

    def _sched_list(self) -> Protocol[list[ScheduleInfo]]:
        rows = yield Read(self._sched_statements().list())
        return [schedule_info(row) for row in rows]

    def _get_schedule(self, name: str) -> Job[ScheduleInfo]:
        """One schedule; ScheduleNotFound if there is none of that name."""
        return self.engine, self._sched_get(name)

    get_schedule, get_schedule_async = twins(_get_schedule)

    def _sched_get(self, name: str) -> Protocol[ScheduleInfo]:
        return schedule_info((yield from self._sched_row(name)))

    def _sched_row(self, name: str) -> Protocol[Schedule]:
        check_lookup(name)
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
        check_lookup(name)
        rows = yield Write(self._sched_statements().pause(name))
        if not rows:
            raise ScheduleNotFound(name)
        return schedule_info(rows[0])

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
                return schedule_info(rows[0])
            # Changed meanwhile (redefined, paused again): read it again.

    def _delete_schedule(self, name: str) -> Job[None]:
        """Delete a schedule (workflows already started go on). A schedule declared with
        ``@app.scheduled`` comes back at the next launch of code that declares it."""
        return self.engine, self._sched_delete(name)

    delete_schedule, delete_schedule_async = twins(_delete_schedule)

    def _sched_delete(self, name: str) -> Protocol[None]:
        check_lookup(name)
        rows = yield Write(self._sched_statements().delete(name))
        if not rows:
            raise ScheduleNotFound(name)
        self._sched_forget(name)

    def _sched_forget(self, name: str) -> None:
        """A deleted schedule: what this object knows of it goes too (App: its declaration)."""

    def _sched_statements(self) -> ScheduleStatements:
        return schedule_statements(self.schema)


class ScheduleHandOver(ScheduleControl):
    """``trigger`` and ``backfill`` for a Client: ticks started for any worker to run."""

    def _trigger(self, name: str, at: datetime | None = None) -> Job[WorkflowHandle[Any]]:
        """Have the schedule's workflow run once now, as the tick of time ``at`` (an aware
        datetime, truncated to the second; default: now), by any worker that registers
        it; return its handle.

        Its ID is ``sched:<name>:<at>``: triggering again with the same ``at`` runs
        nothing more, and if the cron also fires at ``at`` that tick is this same run.
        Works on paused schedules too. The client runs nothing itself: with no worker
        that knows the workflow, the tick waits (PENDING) until one starts.
        """
        tick = check_at(at)
        engine = self.engine
        return engine, self._sched_trigger_by_name(name, tick)

    trigger, trigger_async = twins(_trigger)

    def _sched_trigger_by_name(self, name: str, tick: datetime) -> Protocol[WorkflowHandle[Any]]:
        row = yield from self._sched_row(name)
        handles = yield from self._sched_hand_over(row, [tick], None)
        return handles[0]

    def _backfill(
        self,
        name: str,
        start: datetime,
        end: datetime,
        *,
        progress: BackfillProgress | None = None,
    ) -> Job[list[WorkflowHandle[Any]]]:
        """Have every tick of the schedule in [``start``, ``end``) (aware datetimes) run
        by the workers that register its workflow; return their handles in tick order.

        A tick that already ran (by the schedule or an earlier backfill) is not run
        again, so backfilling twice adds nothing. Works on paused schedules too. At most
        10,000 ticks per call; ``progress`` is called with (started, total) as they go.
        """
        start, end = check_range(start, end)
        engine = self.engine
        return engine, self._sched_backfill_by_name(name, start, end, progress)

    backfill, backfill_async = twins(_backfill)

    def _sched_backfill_by_name(
        self, name: str, start: datetime, end: datetime, progress: BackfillProgress | None
    ) -> Protocol[list[WorkflowHandle[Any]]]:
        row = yield from self._sched_row(name)
        ticks = backfill_ticks(row, start, end)
        return (yield from self._sched_hand_over(row, ticks, progress))

    def _sched_hand_over(
        self, row: Schedule, ticks: list[datetime], progress: BackfillProgress | None
    ) -> Protocol[list[WorkflowHandle[Any]]]:
        engine = self.engine
        statements = self._sched_statements()
        handles: list[WorkflowHandle[Any]] = []
        for first in range(0, len(ticks), HAND_OVER_BATCH):
            batch = ticks[first : first + HAND_OVER_BATCH]
            rows = yield Write(
                statements.hand_over(
                    workflow_name=row.workflow_name,
                    ids=[tick_id(row.name, tick) for tick in batch],
                    inputs=[codec_module.dumps_args(engine.codec, (tick,), {}) for tick in batch],
                    codec=engine.codec.name,
                    max_recovery_attempts=HANDED_OVER_ATTEMPTS,
                )
            )
            for made in rows:
                if made.name != row.workflow_name:
                    raise WorkflowConflict(made.id, made.name, row.workflow_name)
                handles.append(WorkflowHandle(engine, made.id))
            if progress is not None:
                progress(len(handles), len(ticks))
        return handles


# ------------------------------------------------------------------------- helpers


def schedule_info(row: Schedule) -> ScheduleInfo:
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


def backfill_ticks(row: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """The schedule's ticks in [start, end); InvalidArgument past MAX_BACKFILL of them."""
    cron = Cron.parse(row.cron, row.timezone)
    ticks = [t for t in cron.ticks(start, end, MAX_BACKFILL + 1) if t < end]
    if len(ticks) > MAX_BACKFILL:
        raise InvalidArgument(
            f"backfill of schedule {row.name!r} from {start.isoformat()} to {end.isoformat()} "
            f"covers more than {MAX_BACKFILL} ticks; split it into shorter ranges"
        )
    return ticks


def check_lookup(name: object) -> None:
    if not isinstance(name, str):
        raise InvalidArgument(f"a schedule name must be a string, got {type(name).__name__}")


def _aware(value: object, label: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidArgument(f"{label} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(
            f"{label} must be timezone-aware (e.g. datetime(..., tzinfo=UTC)), got {value!r}"
        )
    return value.astimezone(UTC)


def check_range(start: object, end: object) -> tuple[datetime, datetime]:
    first, last = _aware(start, "start"), _aware(end, "end")
    if last < first:
        raise InvalidArgument(f"end ({last.isoformat()}) is before start ({first.isoformat()})")
    return first, last


def check_at(at: object) -> datetime:
    if at is None:
        return datetime.now(UTC).replace(microsecond=0)
    return _aware(at, "at").replace(microsecond=0)
