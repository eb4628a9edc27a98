"""Cron schedules at run time: which ticks are due, and starting each exactly once.

A tick of schedule ``S`` at time ``T`` is the workflow with the ID
``sched:S:<T in UTC, e.g. 2025-01-31T09:00:00Z>``, whose single argument is ``T`` (an
aware UTC datetime). Creating it is the ordinary workflow start (``start_top``: an INSERT
... ON CONFLICT DO NOTHING), so when several workers find the same tick due, exactly
one creates and runs it; the others see it exists and move on. The schedule row's
``last_tick``/``next_tick`` are advanced afterwards with a conditional UPDATE (from the
state the worker read), so they only save work; they never decide who runs a tick. A
worker that dies between the two leaves the tick to be found again, and its ID then
finds the workflow it already created: nothing runs twice, nothing is lost.

The keeper calls ``Scheduler.tick`` on the runtime loop. Each call sends one query
(the due schedules of the workflows registered here, plus the next one to come, with
the database's clock), then per due schedule one INSERT per tick started (concurrent,
so they share group commits) and one UPDATE; and it says when to call again: at the
next tick, or after ``max_wait`` seconds at most. Schedules created or resumed by other
processes are seen sooner: every heartbeat's survey carries the next tick of any active
schedule of this app's workflows, and brings the check forward.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

from cronsim import CronSim

from durably import codec as codec_module
from durably.errors import (
    ConfigurationError,
    ConnectionLost,
    DatabaseUnavailable,
    WorkflowConflict,
)
from durably.execution.context import WorkflowContext
from durably.execution.effects import Protocol
from durably.execution.protocol import Started, start_top
from durably.execution.specs import WorkflowSpec
from durably.runtime.drivers import drive_async
from durably.store.database import AsyncDatabase
from durably.store.rows import DueSchedule
from durably.store.schedule_statements import schedule_statements

if TYPE_CHECKING:
    from durably.runtime.engine import Engine

log = logging.getLogger("durably")

# A schedule with catch_up runs at most this many missed ticks (the latest ones).
MAX_CATCH_UP = 1000
# Ticks started per check; a longer backlog continues at the next check, right away.
BATCH = 100
# Due schedules handled per check (the rest at the next check, right away).
MAX_DUE = 100
# After a failed check (database unreachable): try again this much later.
RETRY_AFTER = 1.0
# Wake a little after a tick is due rather than a little before it.
SLACK = 0.005
SECOND = timedelta(seconds=1)
FIELDS_HELP = (
    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading "
    "seconds field"
)


# ---------------------------------------------------------------------------- cron


@dataclass(frozen=True, slots=True)
class Cron:
    """A validated cron expression in a timezone. Every time it returns is UTC."""

    expr: str
    timezone: str
    zone: tzinfo

    @classmethod
    def parse(cls, expr: object, timezone: object = None) -> Cron:
        """Validate ``expr`` (5 fields, or 6 with leading seconds) and ``timezone`` (an
        IANA name; None is UTC); ConfigurationError naming the problem otherwise."""
        if not isinstance(expr, str):
            hint = " (use @app.scheduled('<cron>'), with the expression)" if callable(expr) else ""
            raise ConfigurationError(
                f"a cron expression must be a string, got {type(expr).__name__}{hint}"
            )
        normalized = " ".join(expr.split())
        fields = len(normalized.split())
        if fields not in (5, 6):
            raise ConfigurationError(
                f"invalid cron expression {expr!r}: it has {fields} fields; {FIELDS_HELP}"
            )
        name, zone = _zone(timezone)
        try:
            sim = CronSim(normalized, datetime.now(UTC).astimezone(zone))
        except Exception as exc:
            problem = str(exc)
            if problem.startswith("Bad "):
                problem = f"bad {problem[4:]} field"
            raise ConfigurationError(f"invalid cron expression {expr!r}: {problem}") from None
        try:
            next(sim)
        except StopIteration:
            raise ConfigurationError(
                f"invalid cron expression {expr!r}: it never fires (no tick within 50 years)"
            ) from None
        return cls(normalized, name, zone)

    def after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after ``moment``; None if there is none (50 years)."""
        forward: Iterator[datetime] = CronSim(self.expr, moment.astimezone(self.zone))
        try:
            # Local-time crons are read on the wall clock: from inside the repeated hour
            # of a daylight-saving change, the next match can be an instant already past.
            for _ in range(100):
                tick = next(forward).astimezone(UTC)
                if tick > moment:
                    return tick
        except StopIteration:
            pass
        return None

    def at_or_after(self, moment: datetime) -> datetime | None:
        """The first tick at or after ``moment``."""
        return self.after(_ceil_second(moment) - SECOND)

    def ticks(self, first: datetime, until: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` ticks from ``first`` (inclusive) to ``until`` (inclusive)."""
        found: list[datetime] = []
        tick = self.at_or_after(first)
        while tick is not None and tick <= until and len(found) < limit:
            found.append(tick)
            tick = self.after(tick)
        return found

    def latest(self, moment: datetime, count: int = 1) -> datetime | None:
        """The ``count``-th latest tick at or before ``moment`` (the earliest of the
        ``count`` latest, when there are fewer); None if there is none at all."""
        oldest: datetime | None = None
        start = (_floor_second(moment) + SECOND).astimezone(self.zone)
        backwards: Iterator[datetime] = CronSim(self.expr, start, reverse=True)
        try:
            for _ in range(count):
                oldest = next(backwards)
        except StopIteration:
            pass
        if oldest is None:
            return None
        # Forward iteration is the reference: a tick ID must not depend on the direction
        # it was found from (daylight-saving changes are where they could differ).
        canonical = self.after(oldest.astimezone(UTC) - SECOND)
        if canonical is not None and canonical <= moment:
            return canonical
        return oldest.astimezone(UTC)


def _zone(timezone: object) -> tuple[str, tzinfo]:
    if timezone is None or timezone == "UTC":
        return "UTC", UTC
    if isinstance(timezone, ZoneInfo):
        timezone = timezone.key
    if not isinstance(timezone, str) or not timezone:
        raise ConfigurationError(
            f"timezone must be an IANA time zone name such as 'Europe/Paris' (or None for "
            f"UTC), got {timezone!r}"
        )
    try:
        return timezone, ZoneInfo(timezone)
    except Exception:
        raise ConfigurationError(
            f"unknown timezone {timezone!r}: expected an IANA time zone name such as "
            f"'Europe/Paris' or 'America/New_York'"
        ) from None


def _floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _ceil_second(moment: datetime) -> datetime:
    floor = moment.replace(microsecond=0)
    return floor if floor == moment else floor + SECOND


def tick_id(schedule: str, tick: datetime) -> str:
    """The workflow ID of a tick: ``sched:<schedule>:<tick in UTC, ISO 8601>``."""
    return f"sched:{schedule}:{tick.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


# ---------------------------------------------------------------------------- planning


class Plan(NamedTuple):
    """The ticks to start now, and the schedule's state once they are started."""

    ticks: list[datetime]
    next_tick: datetime | None
    skipped_from: datetime | None  # the first of the missed ticks left out, if any


def plan_ticks(
    cron: Cron, *, next_tick: datetime, now: datetime, catch_up: bool, budget: int = BATCH
) -> Plan:
    """Which of a schedule's due ticks (``next_tick`` <= ``now``) to start now.

    Without catch-up, only the latest due tick runs; missed ones before it are skipped.
    With catch-up, every missed tick runs, oldest first, ``budget`` per call, but at most
    the latest MAX_CATCH_UP of them: older ones are skipped.
    """
    if not catch_up:
        latest = cron.latest(now)
        if latest is None or latest < next_tick:
            latest = next_tick
        skipped = next_tick if latest > next_tick else None
        return Plan([latest], cron.after(latest), skipped)
    ticks = cron.ticks(next_tick, now, budget + 1)
    skipped = None
    if len(ticks) > budget:
        # A backlog: run it from its MAX_CATCH_UP-th latest tick at the earliest.
        oldest = cron.latest(now, MAX_CATCH_UP)
        if oldest is not None and oldest > next_tick:
            skipped = next_tick
            ticks = cron.ticks(oldest, now, budget)
    ticks = ticks[:budget] or [next_tick]
    return Plan(ticks, cron.after(ticks[-1]), skipped)


# ---------------------------------------------------------------------------- starting


def start_tick(
    engine: Engine, spec: WorkflowSpec, schedule: str, tick: datetime
) -> Protocol[Started]:
    """Create the tick's workflow (its epoch is None when it already existed)."""
    tick = tick.astimezone(UTC)
    inputs = codec_module.dumps_args(engine.codec, (tick,), {})
    return (yield from start_top(engine, spec, tick_id(schedule, tick), inputs))


def run_started(
    engine: Engine, spec: WorkflowSpec, started: Started, tick: datetime, generation: int
) -> None:
    """Run a tick this process created, in the background (``generation``: the lease
    generation taken before the statement that created it)."""
    if started.epoch is None:
        return
    ctx = WorkflowContext(
        engine,
        started.workflow_id,
        spec.name,
        started.epoch,
        deadline=started.deadline,
        lease_generation=generation,
    )
    engine.run_in_background(ctx, spec, (tick.astimezone(UTC),), {})


# The longest wait between checks with no tick due: only a safety net, since the
# heartbeat's survey tells of every schedule's next tick.
RECHECK = 300.0


class Scheduler:
    """The engine's scheduler hook: starts due ticks from the keeper's loop."""

    def __init__(self, engine: Engine, max_wait: float) -> None:
        self.engine = engine
        self.max_wait = max(0.05, float(max_wait))
        self.statements = schedule_statements(engine.db.schema, engine.db.dialect)
        self._crons: dict[tuple[str, str], Cron] = {}

    async def tick(self, adb: AsyncDatabase) -> float:
        """Start every due tick; return the monotonic time of the next check.

        Never raises: a failed check is logged and tried again RETRY_AFTER s later.
        """
        try:
            return await self._check(adb)
        except (ConnectionLost, DatabaseUnavailable):
            # The store logs the outage once.
            return time.monotonic() + RETRY_AFTER
        except Exception:
            log.warning("durably scheduler: check failed; retrying", exc_info=True)
            return time.monotonic() + RETRY_AFTER

    async def _check(self, adb: AsyncDatabase) -> float:
        names = list(self.engine.registry)
        if not names:
            return time.monotonic() + self.max_wait
        rows = await adb.run(self.statements.due(names, MAX_DUE))
        mono = time.monotonic()
        if not rows:
            return mono + self.max_wait
        now: datetime = rows[0].now.astimezone(UTC)
        wake: datetime | None = None
        again = sum(1 for row in rows if row.next_tick <= now) >= MAX_DUE
        budget = BATCH
        for row in rows:
            last_tick = row.last_tick.astimezone(UTC) if row.last_tick is not None else None
            due = row._replace(last_tick=last_tick, next_tick=row.next_tick.astimezone(UTC))
            if due.next_tick > now:
                wake = _earliest(wake, due.next_tick)
                continue
            if budget <= 0:
                again = True
                continue
            try:
                plan = await self._run(adb, due, now, budget)
            except ConfigurationError as exc:
                log.error("durably: schedule %r cannot run: %s", due.name, exc)
                continue
            budget -= len(plan.ticks)
            if plan.next_tick is not None:
                if plan.next_tick <= now:
                    again = True
                wake = _earliest(wake, plan.next_tick)
        if again:
            return mono
        delay = self.max_wait
        if wake is not None:
            delay = min(delay, (wake - now).total_seconds() + SLACK)
        return mono + max(0.0, delay)

    async def _run(self, adb: AsyncDatabase, due: DueSchedule, now: datetime, budget: int) -> Plan:
        """Start a due schedule's ticks, then advance it (if nobody else did first)."""
        engine = self.engine
        cron = self._cron(due.cron, due.timezone)
        plan = plan_ticks(
            cron, next_tick=due.next_tick, now=now, catch_up=due.catch_up, budget=budget
        )
        if plan.skipped_from is not None and due.catch_up:
            log.warning(
                "durably: schedule %r missed more than %d ticks since %s; only the latest "
                "%d run, the older ones are skipped",
                due.name,
                MAX_CATCH_UP,
                plan.skipped_from.isoformat(),
                MAX_CATCH_UP,
            )
        elif plan.skipped_from is not None:
            log.info(
                "durably: schedule %r missed its ticks from %s; only the latest (%s) runs "
                "(catch_up is off)",
                due.name,
                plan.skipped_from.isoformat(),
                plan.ticks[-1].isoformat(),
            )
        spec = engine.registry[due.workflow_name]
        results = await asyncio.gather(
            *(self._start(spec, due.name, tick) for tick in plan.ticks), return_exceptions=True
        )
        for result in results:
            if isinstance(result, WorkflowConflict):
                log.error("durably: schedule %r: %s", due.name, result)
            elif isinstance(result, BaseException):
                raise result  # not advanced: the next check starts the same ticks again
        await adb.write(
            self.statements.advance(
                name=due.name,
                revision=due.revision,
                old_last_tick=due.last_tick,
                last_tick=plan.ticks[-1],
                next_tick=plan.next_tick,
            )
        )
        return plan

    async def _start(self, spec: WorkflowSpec, schedule: str, tick: datetime) -> None:
        engine = self.engine
        generation = engine.lease.generation
        started = await drive_async(engine, start_tick(engine, spec, schedule, tick))
        if started.epoch is None:
            log.debug(
                "durably: schedule %r: %s was started elsewhere", schedule, started.workflow_id
            )
        else:
            log.debug("durably: schedule %r: starting %s", schedule, started.workflow_id)
        run_started(engine, spec, started, tick, generation)

    def _cron(self, expr: str, timezone: str) -> Cron:
        key = (expr, timezone)
        cron = self._crons.get(key)
        if cron is None:
            if len(self._crons) > 1000:
                self._crons.clear()
            cron = self._crons[key] = Cron.parse(expr, timezone)
        return cron


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a
