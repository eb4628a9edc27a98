"""Cron schedules: each tick runs exactly once across workers; management API; cron and
timezone handling; catch-up; backfill and trigger idempotence. Real Postgres, real
worker processes, no mocks and no sleeps: every wait polls for what it waits for."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import psycopg
import pytest

import durably
from durably.runtime.scheduler import MAX_CATCH_UP, Cron, plan_ticks, tick_id
from durably.scheduling import ScheduleInfo, ScheduleNotFound
from schedprocs.workflows import SCHEDULE, declare, effect
from support import wait_until

T = TypeVar("T")
WORKER = Path(__file__).resolve().parent / "schedprocs" / "worker.py"
ROOT = WORKER.parent.parent.parent
DEADLINE = 30.0


# --------------------------------------------------------------------------- helpers


def parse_tick(workflow_id: str) -> datetime:
    """The tick time in a tick's workflow ID ``sched:<name>:<YYYY-MM-DDTHH:MM:SSZ>``."""
    stamp = workflow_id[-len("2025-01-01T00:00:00Z") :]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def ticks(db: psycopg.Connection[Any], schedule: str) -> list[datetime]:
    """Tick times of every workflow the schedule started, in order."""
    rows = db.execute(
        "SELECT id FROM workflows WHERE id LIKE %s ORDER BY id", (f"sched:{schedule}:%",)
    ).fetchall()
    return [parse_tick(row[0]) for row in rows]


def statuses(db: psycopg.Connection[Any], schedule: str) -> dict[str, str]:
    rows = db.execute(
        "SELECT id, status FROM workflows WHERE id LIKE %s", (f"sched:{schedule}:%",)
    ).fetchall()
    return dict(rows)


def db_now(db: psycopg.Connection[Any]) -> datetime:
    now: datetime = db.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    return now.astimezone(UTC)


def schedule_rows(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("SELECT name, cron FROM schedules ORDER BY name").fetchall()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --------------------------------------------------------------------------- workers


class Worker:
    """A schedule worker process (tests/schedprocs/worker.py)."""

    def __init__(self, config: dict[str, Any], log_path: Path) -> None:
        self._log = log_path.open("ab")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )

    def expect(self, event: str) -> dict[str, Any]:
        """The next stdout line, which must be the event ``event``."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self._log.flush()
            raise AssertionError(
                f"worker {self.proc.pid} exited (code {self.proc.wait()}) before {event}; "
                f"log:\n{self.log_path.read_text(errors='replace')[-4000:]}"
            )
        answer: dict[str, Any] = json.loads(line)
        assert answer["event"] == event, answer
        return answer

    def stop(self) -> None:
        """Ask the worker to shut down, and wait until it did."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("exit\n")
        self.proc.stdin.flush()
        self.expect("bye")
        assert self.proc.wait(timeout=DEADLINE) == 0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEADLINE)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._log.close()


@pytest.fixture
def spawn(pg_url: str, schema: str, tmp_path: Path) -> Iterator[Callable[[str], Worker]]:
    started: list[Worker] = []

    def start(executor_id: str) -> Worker:
        config = {
            "url": pg_url,
            "schema": schema,
            "executor_id": executor_id,
            "effects": str(tmp_path / "effects.txt"),
        }
        worker = Worker(config, tmp_path / f"{executor_id}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


# --------------------------------------------------------------------------- exactly once


def test_a_schedule_firing_every_second_runs_each_tick_once_with_three_workers_running(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    spawn: Callable[[str], Worker],
    tmp_path: Path,
) -> None:
    effects = tmp_path / "effects.txt"
    workers = [spawn(f"sched-worker-{i}") for i in range(3)]
    pids = {worker.expect("ready")["pid"] for worker in workers}
    all_ready = db_now(db)
    # Five ticks (about four seconds) fired while all three workers competed for them.
    wait_until(
        lambda: len([t for t in ticks(db, SCHEDULE) if t > all_ready]) >= 5,
        what="five ticks with the three workers running",
    )

    # Stop the schedule, then the workers. A tick a worker created just before it
    # stopped is taken over and finished by this process, so that every tick ends.
    app = make_app(executor_id="sched-finisher", lease=1.0, poll_interval=0.2)
    declare(app, effects)
    assert not app.pause_schedule(SCHEDULE).catch_up
    for worker in workers:
        worker.stop()
    app.launch()
    wait_until(
        lambda: set(statuses(db, SCHEDULE).values()) == {"SUCCESS"},
        what="every tick's workflow to finish",
    )

    started = ticks(db, SCHEDULE)
    ran = collections.Counter(line.split()[0] for line in lines(effects))
    assert len(started) == len(set(started)) >= 5
    # Each tick ran exactly once: one side effect per tick, none for any other time.
    assert ran == collections.Counter(t.isoformat() for t in started)
    assert set(ran.values()) == {1}
    assert all(t.microsecond == 0 for t in started)
    # The runs came from the worker processes (not from this one, which was paused).
    runners = {int(line.split()[1]) for line in lines(effects)}
    assert runners <= pids | {os.getpid()}
    assert runners & pids


# --------------------------------------------------------------------------- backfill, trigger


def test_backfill_twice_adds_nothing(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    app = make_app()

    @app.workflow(name="hourly")
    def hourly(scheduled_at: datetime) -> str:
        effect(effects, scheduled_at.isoformat())
        return scheduled_at.isoformat()

    app.create_schedule("hourly", hourly, "0 * * * *")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(hours=6)

    def in_range() -> list[datetime]:
        return [t for t in ticks(db, "hourly") if start <= t < end + timedelta(hours=3)]

    handles = app.backfill("hourly", start, end)
    expected = [start + timedelta(hours=h) for h in range(6)]
    assert [h.id for h in handles] == [tick_id("hourly", t) for t in expected]
    assert [h.result(timeout=DEADLINE) for h in handles] == [t.isoformat() for t in expected]
    assert in_range() == expected
    assert len(lines(effects)) == 6

    again = app.backfill("hourly", start, end)
    assert [h.id for h in again] == [h.id for h in handles]
    assert [h.result(timeout=DEADLINE) for h in again] == [t.isoformat() for t in expected]
    assert in_range() == expected
    assert len(lines(effects)) == 6

    # An overlapping range adds only the ticks not run yet; an empty one adds nothing.
    overlap = app.backfill("hourly", start + timedelta(hours=3), end + timedelta(hours=3))
    assert [h.result(timeout=DEADLINE) for h in overlap][-1] == (
        end + timedelta(hours=2)
    ).isoformat()
    assert len(in_range()) == 9
    assert len(lines(effects)) == 9
    assert app.backfill("hourly", end, end) == []


def test_backfill_checks_its_arguments(make_app: Callable[..., durably.App]) -> None:
    app = make_app()

    @app.workflow(name="secondly")
    def secondly(scheduled_at: datetime) -> None:
        return None

    app.create_schedule("secondly", secondly, "* * * * * *")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(durably.InvalidArgument, match="timezone-aware"):
        app.backfill("secondly", datetime(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(durably.InvalidArgument, match="before start"):
        app.backfill("secondly", start, start - timedelta(seconds=1))
    with pytest.raises(durably.InvalidArgument, match="more than 10000 ticks"):
        app.backfill("secondly", start, start + timedelta(days=1))
    with pytest.raises(ScheduleNotFound, match="'nope'"):
        app.backfill("nope", start, start + timedelta(hours=1))


def test_trigger_twice_with_the_same_time_runs_once(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    app = make_app()

    @app.workflow(name="report")
    def report(scheduled_at: datetime) -> str:
        effect(effects, scheduled_at.isoformat())
        return scheduled_at.isoformat()

    app.create_schedule("report", report, "0 0 1 1 *")
    at = datetime(2024, 5, 17, 12, 30, 5, 123456, tzinfo=ZoneInfo("Europe/Paris"))
    first = app.trigger("report", at=at)
    second = app.trigger("report", at=at.replace(microsecond=0))
    assert first.id == second.id == "sched:report:2024-05-17T10:30:05Z"
    assert first.result(timeout=DEADLINE) == second.result(timeout=DEADLINE)
    assert first.result() == "2024-05-17T10:30:05+00:00"
    assert lines(effects) == ["2024-05-17T10:30:05+00:00"]

    # Without a time: now, to the second.
    before = db_now(db).replace(microsecond=0)
    now = app.trigger("report")
    assert now.result(timeout=DEADLINE)
    assert before <= parse_tick(now.id) <= db_now(db)
    assert len(lines(effects)) == 2
    with pytest.raises(ScheduleNotFound):
        app.trigger("nope")


# --------------------------------------------------------------------------- management


def test_invalid_cron_or_timezone_is_a_configuration_error_and_stores_nothing(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app()

    @app.workflow(name="job")
    def job(scheduled_at: datetime) -> None:
        return None

    bad = {
        "61 * * * *": "bad minute field",
        "* * * *": "it has 4 fields",
        "* * * * * * *": "it has 7 fields",
        "0 25 * * *": "bad hour field",
        "*/0 * * * *": "bad minute field",
        "0 0 31 2 *": "bad day-of-month field",
        "every day": "it has 2 fields",
    }
    for cron, problem in bad.items():
        with pytest.raises(durably.ConfigurationError) as caught:
            app.create_schedule("job", job, cron)
        assert repr(cron) in str(caught.value) and problem in str(caught.value)
        with pytest.raises(durably.ConfigurationError, match=problem):

            @app.scheduled(cron, name="declared")
            def declared(scheduled_at: datetime) -> None:
                return None

    with pytest.raises(durably.ConfigurationError, match="unknown timezone 'Mars/Olympus'"):
        app.create_schedule("job", job, "0 9 * * *", timezone="Mars/Olympus")
    with pytest.raises(durably.ConfigurationError, match="unknown timezone 'Nowhere'"):

        @app.scheduled("0 9 * * *", timezone="Nowhere", name="declared")
        def declared_tz(scheduled_at: datetime) -> None:
            return None

    with pytest.raises(durably.ConfigurationError, match="must accept the tick time"):

        @app.scheduled("0 9 * * *", name="declared")
        def no_argument() -> None:
            return None

    with pytest.raises(durably.ConfigurationError, match="a cron expression must be a string"):
        app.scheduled(job)  # type: ignore[arg-type]
    with pytest.raises(durably.ConfigurationError, match="no workflow named 'unknown'"):
        app.create_schedule("job", "unknown", "0 9 * * *")
    with pytest.raises(durably.ConfigurationError, match="schedule name"):
        app.create_schedule("", job, "0 9 * * *")

    # Nothing was stored or registered.
    assert app.list_schedules() == []
    assert schedule_rows(db) == []
    assert "declared" not in app._registry


def test_scheduled_registers_a_workflow_and_a_schedule_the_code_wins_at_launch(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app()

    @app.scheduled("*/5 * * * *", timezone="Europe/Paris", name="sweep")
    def sweep(scheduled_at: datetime) -> str:
        return f"swept {scheduled_at:%H:%M}"

    assert isinstance(sweep, durably.Workflow)
    assert sweep.name == "sweep"
    [info] = app.list_schedules()
    assert info.name == "sweep" and info.workflow_name == "sweep"
    assert (info.cron, info.timezone, info.paused, info.catch_up) == (
        "*/5 * * * *",
        "Europe/Paris",
        False,
        False,
    )
    # Still an ordinary workflow.
    assert sweep(datetime(2024, 1, 1, 8, 15, tzinfo=UTC)) == "swept 08:15"
    assert app.pause_schedule("sweep").paused

    # Another deployment declares it differently: the code's declaration wins at launch,
    # and the schedule stays paused.
    other = make_app()

    @other.scheduled("0 * * * *", name="sweep", catch_up=True)
    def sweep_again(scheduled_at: datetime) -> str:
        return "again"

    [info] = other.list_schedules()
    assert (info.cron, info.timezone, info.paused, info.catch_up) == (
        "0 * * * *",
        "UTC",
        True,
        True,
    )
    assert info.next_tick is None  # paused

    # Declared after the app connected: stored at once.
    @other.scheduled("0 0 * * *", name="late")
    def late(scheduled_at: datetime) -> None:
        return None

    assert [row[0] for row in schedule_rows(db)] == ["late", "sweep"]


def test_list_shows_next_tick_and_delete_removes(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app()

    @app.workflow(name="five")
    def five(scheduled_at: datetime) -> None:
        return None

    before = datetime.now(UTC)
    created = app.create_schedule("five", five, "*/5  *  * * *")
    after = datetime.now(UTC)
    assert isinstance(created, ScheduleInfo)
    assert created.cron == "*/5 * * * *"  # whitespace normalised
    assert created.last_tick is None
    assert created.next_tick is not None and created.next_tick.tzinfo is not None
    # The first multiple of five minutes after the creation.
    floor = before.replace(second=0, microsecond=0)
    expected = floor + timedelta(minutes=5 - floor.minute % 5)
    later = after.replace(second=0, microsecond=0)
    assert created.next_tick in {expected, later + timedelta(minutes=5 - later.minute % 5)}
    assert app.list_schedules() == [created]
    assert app.get_schedule("five") == created

    # Creating it again with the same definition changes nothing; with another, it is
    # redefined.
    assert app.create_schedule("five", five, "*/5 * * * *") == created
    redefined = app.create_schedule("five", five, "0 12 * * *", catch_up=True)
    assert redefined.cron == "0 12 * * *" and redefined.catch_up
    assert redefined.next_tick is not None
    assert redefined.next_tick.hour == 12 and redefined.next_tick.minute == 0

    app.delete_schedule("five")
    assert app.list_schedules() == []
    assert schedule_rows(db) == []
    with pytest.raises(ScheduleNotFound, match="no schedule named 'five'"):
        app.delete_schedule("five")
    with pytest.raises(ScheduleNotFound):
        app.get_schedule("five")
    with pytest.raises(ScheduleNotFound):
        app.pause_schedule("five")
    with pytest.raises(ScheduleNotFound):
        app.resume_schedule("five")


def test_pause_stops_firing_resume_resumes_and_delete_stops_it(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A second, untouched schedule is the witness that the scheduler kept checking:
    its tick two seconds after the pause was started by a check made after the pause."""
    app = make_app(poll_interval=0.2)

    @app.workflow(name="watched")
    def watched(scheduled_at: datetime) -> None:
        return None

    @app.workflow(name="witness")
    def witness(scheduled_at: datetime) -> None:
        return None

    app.create_schedule("watched", watched, "* * * * * *")
    app.create_schedule("witness", witness, "* * * * * *")
    app.launch()
    wait_until(lambda: ticks(db, "watched"), what="a first tick")

    def witness_past(moment: datetime) -> bool:
        return any(t >= moment + timedelta(seconds=2) for t in ticks(db, "witness"))

    paused = app.pause_schedule("watched")
    paused_at = db_now(db)
    assert paused.paused and paused.next_tick is None
    assert [(s.name, s.paused) for s in app.list_schedules()] == [
        ("watched", True),
        ("witness", False),
    ]
    wait_until(lambda: witness_past(paused_at), what="the witness to tick after the pause")
    # A check that read the schedule just before the pause may still start a tick
    # that was due then, never a later one.
    assert max(ticks(db, "watched")) <= paused_at

    resumed = app.resume_schedule("watched")
    resumed_at = db_now(db)
    assert not resumed.paused and resumed.next_tick is not None
    assert resumed.next_tick > paused_at
    wait_until(lambda: any(t > resumed_at for t in ticks(db, "watched")), what="ticks after resume")
    # Ticks that fell while it was paused were not run.
    assert not [t for t in ticks(db, "watched") if paused_at < t < resumed.next_tick]
    # Resuming a running schedule changes nothing.
    assert app.resume_schedule("watched").next_tick is not None

    app.delete_schedule("watched")
    deleted_at = db_now(db)
    wait_until(lambda: witness_past(deleted_at), what="the witness to tick after the delete")
    assert max(ticks(db, "watched")) <= deleted_at
    assert [s.name for s in app.list_schedules()] == ["witness"]


def test_schedules_fire_only_on_workers_with_the_workflow_registered(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    owner = make_app(poll_interval=0.2)

    @owner.workflow(name="foreign")
    def foreign(scheduled_at: datetime) -> None:
        return None

    owner.create_schedule("foreign", foreign, "* * * * * *")  # connected, not launched

    other = make_app(poll_interval=0.2)

    @other.workflow(name="witness")
    def witness(scheduled_at: datetime) -> None:
        return None

    other.create_schedule("witness", witness, "* * * * * *")
    other.launch()
    since = db_now(db)
    wait_until(
        lambda: any(t >= since + timedelta(seconds=2) for t in ticks(db, "witness")),
        what="the witness to tick",
    )
    assert ticks(db, "foreign") == []

    owner.launch()
    wait_until(lambda: ticks(db, "foreign"), what="the owner to run its schedule")


# --------------------------------------------------------------------------- time


def test_timezone_gives_the_right_utc_instants(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app()

    @app.workflow(name="morning")
    def morning(scheduled_at: datetime) -> str:
        return scheduled_at.isoformat()

    zone = ZoneInfo("America/New_York")
    info = app.create_schedule("morning", morning, "0 9 * * *", timezone="America/New_York")
    assert info.timezone == "America/New_York"
    # The next 09:00 in New York, whatever the offset of the day (EST or EDT).
    local_now = datetime.now(zone)
    nine = local_now.replace(hour=9, minute=0, second=0, microsecond=0)
    if nine <= local_now:
        nine = (nine + timedelta(days=1)).replace(hour=9)
    expected = datetime(nine.year, nine.month, nine.day, 9, tzinfo=zone).astimezone(UTC)
    assert info.next_tick == expected
    assert info.next_tick.tzinfo is UTC

    # Winter (EST, UTC-5) and summer (EDT, UTC-4): 09:00 local is 14:00 or 13:00 UTC.
    winter = app.backfill(
        "morning", datetime(2024, 1, 15, tzinfo=UTC), datetime(2024, 1, 17, tzinfo=UTC)
    )
    summer = app.backfill(
        "morning", datetime(2024, 7, 15, tzinfo=UTC), datetime(2024, 7, 16, tzinfo=UTC)
    )
    assert [h.id for h in winter] == [
        "sched:morning:2024-01-15T14:00:00Z",
        "sched:morning:2024-01-16T14:00:00Z",
    ]
    assert [h.id for h in summer] == ["sched:morning:2024-07-15T13:00:00Z"]
    assert summer[0].result(timeout=DEADLINE) == "2024-07-15T13:00:00+00:00"
    # Across the spring change (10 March 2024): still 09:00 local each day.
    spring = app.backfill(
        "morning", datetime(2024, 3, 9, tzinfo=UTC), datetime(2024, 3, 12, tzinfo=UTC)
    )
    assert [parse_tick(h.id).astimezone(zone).hour for h in spring] == [9, 9, 9]
    assert [parse_tick(h.id).hour for h in spring] == [14, 13, 13]


def test_cron_with_seconds_and_tick_ids() -> None:
    cron = Cron.parse("30 0 9 * * MON-FRI", "Europe/Paris")
    friday = datetime(2024, 5, 17, 7, 0, 30, tzinfo=UTC)  # 09:00:30 in Paris (UTC+2)
    assert cron.after(friday - timedelta(seconds=1)) == friday
    assert cron.after(friday) == datetime(2024, 5, 20, 7, 0, 30, tzinfo=UTC)  # Monday
    assert cron.latest(friday + timedelta(hours=50)) == friday
    assert tick_id("a:b", friday) == "sched:a:b:2024-05-17T07:00:30Z"
    assert Cron.parse("0 9 * * *").timezone == "UTC"


def test_daylight_saving_changes_run_a_local_time_once_a_day() -> None:
    ny = "America/New_York"
    # 3 November 2024: 01:30 happens twice (EDT, then EST); it runs once, the first time.
    fall = Cron.parse("30 1 * * *", ny)
    assert fall.ticks(datetime(2024, 11, 2, tzinfo=UTC), datetime(2024, 11, 5, tzinfo=UTC), 9) == [
        datetime(2024, 11, 2, 5, 30, tzinfo=UTC),
        datetime(2024, 11, 3, 5, 30, tzinfo=UTC),
        datetime(2024, 11, 4, 6, 30, tzinfo=UTC),
    ]
    # From inside the repeated hour, the next tick is the next day's, never a past one.
    assert fall.after(datetime(2024, 11, 3, 6, 15, tzinfo=UTC)) == datetime(
        2024, 11, 4, 6, 30, tzinfo=UTC
    )
    # 10 March 2024: 02:30 does not exist; it runs once, when the clock jumps (03:00 EDT).
    spring = Cron.parse("30 2 * * *", ny)
    assert spring.ticks(datetime(2024, 3, 9, tzinfo=UTC), datetime(2024, 3, 12, tzinfo=UTC), 9) == [
        datetime(2024, 3, 9, 7, 30, tzinfo=UTC),
        datetime(2024, 3, 10, 7, 0, tzinfo=UTC),
        datetime(2024, 3, 11, 6, 30, tzinfo=UTC),
    ]
    # Intervals keep their pace in real time through the repeated hour.
    every20 = Cron.parse("*/20 * * * *", ny)
    start = datetime(2024, 11, 3, 5, tzinfo=UTC)
    assert every20.ticks(start, start + timedelta(hours=2), 20) == [
        start + timedelta(minutes=20 * i) for i in range(7)
    ]


def test_missed_ticks_are_caught_up_or_coalesced(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app(poll_interval=0.2)

    @app.workflow(name="minutely")
    def minutely(scheduled_at: datetime) -> None:
        return None

    app.create_schedule("catching", minutely, "* * * * *", catch_up=True)
    app.create_schedule("coalescing", minutely, "* * * * *")
    # As if no worker had run for ten minutes.
    now = db_now(db)
    missed_since = now.replace(second=0, microsecond=0) - timedelta(minutes=10)
    db.execute("UPDATE schedules SET next_tick = %s", (missed_since,))
    app.launch()

    expected = [missed_since + timedelta(minutes=m) for m in range(11)]
    caught = wait_until(
        lambda: (found := ticks(db, "catching"))[: len(expected)] == expected and found,
        what="every missed tick to run",
    )
    assert caught[: len(expected)] == expected
    coalesced = wait_until(lambda: ticks(db, "coalescing"), what="the latest missed tick")
    # Only the latest missed tick ran (a new minute may have begun since).
    assert coalesced[0] >= expected[-1]
    assert len(coalesced) <= 2
    # The schedule is advanced just after its tick's workflow is created.
    last_tick = wait_until(
        lambda: app.get_schedule("coalescing").last_tick, what="the schedule to advance"
    )
    assert last_tick >= expected[-1]


def test_catch_up_is_bounded_to_the_latest_ticks() -> None:
    cron = Cron.parse("* * * * * *")
    now = datetime(2024, 1, 1, 12, tzinfo=UTC)
    plan = plan_ticks(cron, next_tick=now - timedelta(hours=2), now=now, catch_up=True)
    oldest = now - timedelta(seconds=MAX_CATCH_UP - 1)
    assert plan.skipped_from == now - timedelta(hours=2)
    assert plan.ticks[0] == oldest and len(plan.ticks) == 100
    assert plan.next_tick == oldest + timedelta(seconds=100)
    # The rest of the backlog follows, in batches, without skipping again.
    rest = plan_ticks(cron, next_tick=plan.next_tick, now=now, catch_up=True)
    assert rest.skipped_from is None and rest.ticks[0] == plan.next_tick
    # Without catch-up: only the latest.
    latest = plan_ticks(cron, next_tick=now - timedelta(hours=2), now=now, catch_up=False)
    assert latest.ticks == [now] and latest.next_tick == now + timedelta(seconds=1)


# --------------------------------------------------------------------------- async


def test_async_twins(make_app: Callable[..., durably.App], db: psycopg.Connection[Any]) -> None:
    app = make_app()

    @app.workflow(name="nightly")
    async def nightly(scheduled_at: datetime) -> str:
        return scheduled_at.isoformat()

    async def main() -> None:
        info = await app.create_schedule_async(
            "nightly", nightly, "0 2 * * *", timezone="Asia/Tokyo"
        )
        assert info.next_tick is not None and info.next_tick.hour == 17  # 02:00 JST
        assert await app.list_schedules_async() == [info]
        assert await app.get_schedule_async("nightly") == info
        assert (await app.pause_schedule_async("nightly")).paused
        assert not (await app.resume_schedule_async("nightly")).paused
        start = datetime(2024, 1, 1, tzinfo=UTC)
        handles = await app.backfill_async("nightly", start, start + timedelta(days=2))
        assert [h.id for h in handles] == [
            "sched:nightly:2024-01-01T17:00:00Z",
            "sched:nightly:2024-01-02T17:00:00Z",
        ]
        again = await app.backfill_async("nightly", start, start + timedelta(days=2))
        assert [h.id for h in again] == [h.id for h in handles]
        assert await handles[1].result_async(timeout=DEADLINE) == "2024-01-02T17:00:00+00:00"
        at = datetime(2024, 3, 1, 17, tzinfo=UTC)
        triggered = await app.trigger_async("nightly", at=at)
        assert (await app.trigger_async("nightly", at=at)).id == triggered.id
        assert await triggered.result_async(timeout=DEADLINE) == at.isoformat()
        await app.delete_schedule_async("nightly")
        assert await app.list_schedules_async() == []

    asyncio.run(main())
    assert len(ticks(db, "nightly")) == 3
