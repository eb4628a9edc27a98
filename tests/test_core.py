"""The core engine in one process: running, idempotency, children, errors, replay."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import durably
from support import wait_until


class Crash(BaseException):
    """Stands for the process dying: not an error the workflow records."""


def crash_then_recover(
    make_app: Callable[..., durably.App],
    build: Callable[[durably.App], Any],
    start: Callable[[Any], Any],
) -> tuple[durably.App, Any]:
    """Run a workflow until it 'crashes', then recover it in a new app with the same executor."""
    executor = f"exec-{uuid.uuid4().hex[:6]}"
    first = make_app(executor_id=executor)
    wfs = build(first)
    with pytest.raises(Crash):
        start(wfs)
    first.shutdown(grace=0)
    # A new process with the same executor ID recovers its workflows at once on launch.
    second = make_app(executor_id=executor)
    wfs2 = build(second)
    second.launch()
    return second, wfs2


def test_call_start_handle_status(app: durably.App) -> None:
    @app.step
    def double(x: int) -> int:
        return 2 * x

    @app.workflow
    def wf(x: int) -> int:
        return double(x) + 1

    assert wf(20) == 41
    handle = wf.options(id="h-1").start(5)
    assert handle.id == "h-1"
    assert handle.result(timeout=10) == 11
    assert handle.status() is durably.Status.SUCCESS
    again = app.handle("h-1")
    assert again.result() == 11
    with pytest.raises(durably.WorkflowNotFound, match="nope"):
        app.handle("nope")


def test_async_workflow_and_steps(app: durably.App) -> None:
    @app.step
    async def inc(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @app.workflow
    async def wf(x: int) -> list[int]:
        return list(await asyncio.gather(inc(x), inc(x + 10), inc(x + 20)))

    async def main() -> tuple[Any, ...]:
        direct = await wf(1)
        handle = await wf.options(id="a-1").start_async(2)
        return direct, await handle.result_async(timeout=10), await handle.status_async()

    direct, started, status = asyncio.run(main())
    assert direct == [2, 12, 22]
    assert started == [3, 13, 23]
    assert status is durably.Status.SUCCESS
    steps = app.list_steps("a-1")
    assert [s.step for s in steps] == [1, 2, 3]
    assert [s.output for s in steps] == [3, 13, 23]  # numbered at call time, in call order


def test_same_id_runs_once_and_returns_same_result(app: durably.App) -> None:
    runs: list[int] = []

    @app.workflow
    def wf(x: int) -> int:
        runs.append(x)
        return x * 3

    assert wf.options(id="once")(4) == 12
    assert wf.options(id="once")(4) == 12
    assert wf.options(id="once").start(4).result() == 12
    assert runs == [4]


def test_none_result_and_recorded_error_replayed(app: durably.App) -> None:
    runs: list[str] = []

    @app.workflow
    def nothing() -> None:
        runs.append("nothing")

    @app.workflow
    def fails(msg: str) -> int:
        runs.append("fails")
        raise KeyError(msg)

    assert nothing.options(id="n")() is None
    assert nothing.options(id="n")() is None
    for _ in range(2):
        with pytest.raises(KeyError, match="gone"):
            fails.options(id="f")("gone")
    assert runs == ["nothing", "fails"]
    assert app.handle("f").status() is durably.Status.ERROR


def test_a_sync_step_that_returns_an_awaitable_fails_with_what_to_do(app: durably.App) -> None:
    """A sync step whose function hands back a coroutine cannot be awaited in a sync
    workflow: the step fails with a TypeError that says to await it from an async
    workflow, and the coroutine is never recorded as its result."""

    async def later() -> int:
        return 2

    pending: list[Any] = []

    @app.step(retries=0)
    def hands_back_a_coroutine() -> Any:
        pending.append(later())
        return pending[-1]

    @app.workflow
    def gets_awaitable() -> int:
        hands_back_a_coroutine()
        return 0

    with pytest.raises(TypeError, match="hands_back_a_coroutine is async; call it from an"):
        gets_awaitable.options(id="awaitable-1")()
    for coroutine in pending:
        coroutine.close()
    [step] = app.list_steps("awaitable-1")
    assert step.error is not None and step.output is None
    assert app.handle("awaitable-1").status() is durably.Status.ERROR


def test_conflicting_function_for_existing_id(app: durably.App) -> None:
    @app.workflow
    def one() -> int:
        return 1

    @app.workflow
    def two() -> int:
        return 2

    assert one.options(id="shared")() == 1
    with pytest.raises(durably.WorkflowConflict, match="shared"):
        two.options(id="shared")()
    with pytest.raises(durably.WorkflowConflict):
        two.options(id="shared").start()


def test_child_workflow_deterministic_id_and_link(app: durably.App) -> None:
    @app.workflow
    def child(x: int) -> int:
        return x + 100

    @app.step
    def noop() -> None:
        return None

    @app.workflow
    def parent(x: int) -> int:
        noop()
        a = child(x)
        b = child.start(x + 1).result()
        return a + b

    assert parent.options(id="par")(1) == 101 + 102
    kids = app.list_workflows(name=child.name)
    assert sorted(k.id for k in kids) == ["par-2", "par-3"]
    assert {k.parent_id for k in kids} == {"par"}
    steps = app.list_steps("par")
    assert [(s.kind, s.child_id) for s in steps] == [
        ("step", None),
        ("child", "par-2"),
        ("child", "par-3"),
    ]


def test_child_reused_on_replay(make_app: Callable[..., durably.App]) -> None:
    counts = {"child": 0, "crash": True}

    def build(app: durably.App) -> Any:
        @app.workflow(name="kid")
        def kid(x: int) -> int:
            counts["child"] += 1
            return x * 2

        @app.step(name="boom")
        def boom() -> None:
            if counts["crash"]:
                counts["crash"] = False
                raise Crash()

        @app.workflow(name="dad")
        def dad(x: int) -> int:
            y = kid(x)
            boom()
            return y + 1

        return dad

    app2, _dad = crash_then_recover(make_app, build, lambda dad: dad.options(id="dad-1")(5))
    assert app2.handle("dad-1").result(timeout=10) == 11
    assert counts["child"] == 1  # the recovered parent re-attached to the finished child


def test_step_outside_workflow_is_plain_call(app: durably.App, db: Any) -> None:
    @app.step
    def add(a: int, b: int) -> int:
        return a + b

    @app.step
    async def aadd(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3
    assert asyncio.run(aadd(2, 3)) == 5
    assert db.execute("select count(*) from operations").fetchone()[0] == 0


def test_retries_with_backoff_and_final_error(app: durably.App) -> None:
    attempts: list[int] = []

    @app.step(retries=3, interval=0.001, backoff=2.0)
    def flaky(fail_times: int) -> str:
        attempts.append(1)
        if len(attempts) <= fail_times:
            raise ConnectionError(f"attempt {len(attempts)}")
        return "ok"

    @app.workflow
    def wf(fail_times: int) -> str:
        return flaky(fail_times)

    assert wf(2) == "ok"
    assert len(attempts) == 3
    attempts.clear()
    with pytest.raises(durably.StepRetriesExceeded) as info:
        wf(10)
    assert len(attempts) == 4
    assert [str(e) for e in info.value.errors] == [f"attempt {i}" for i in range(1, 5)]
    assert all(isinstance(e, ConnectionError) for e in info.value.errors)


def test_retry_on_predicate(app: durably.App) -> None:
    attempts: list[str] = []

    @app.step(retries=5, interval=0.001, retry_on=lambda e: isinstance(e, ConnectionError))
    def picky(kind: str) -> str:
        attempts.append(kind)
        if kind == "fatal":
            raise ValueError("not retryable")
        if len(attempts) < 3:
            raise ConnectionError("retry me")
        return "done"

    @app.workflow
    def wf(kind: str) -> str:
        return picky(kind)

    with pytest.raises(ValueError, match="not retryable"):
        wf("fatal")
    assert attempts == ["fatal"]
    attempts.clear()
    assert wf("transient") == "done"
    assert len(attempts) == 3


def test_backoff_delays_are_bounded() -> None:
    from durably.execution.specs import StepSpec

    spec = StepSpec(lambda: None, "s", retries=10, interval=0.5, backoff=3.0, max_delay=4.0)
    assert [spec.delay_before(i) for i in range(1, 5)] == [0.5, 1.5, 4.0, 4.0]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Receipt:
    id: uuid.UUID
    amount: Decimal
    at: datetime
    raw: bytes
    color: Color
    pair: tuple[int, str]


def test_replayed_values_keep_their_types(make_app: Callable[..., durably.App]) -> None:
    seen: list[Any] = []
    state = {"crash": True}
    fixed = Receipt(
        uuid.uuid4(),
        Decimal("12.50"),
        datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        b"\x00\xff",
        Color.BLUE,
        (1, "a"),
    )

    def build(app: durably.App) -> Any:
        @app.step(name="make")
        def make() -> Receipt:
            return fixed

        @app.step(name="when")
        def when() -> datetime:
            return fixed.at + timedelta(days=1)

        @app.step(name="crash")
        def crash() -> None:
            if state["crash"]:
                state["crash"] = False
                raise Crash()

        @app.workflow(name="typed")
        def typed() -> str:
            r = make()
            w = when()
            seen.append((r, w))
            crash()
            return r.id.hex

        return typed

    app2, _ = crash_then_recover(make_app, build, lambda wf: wf.options(id="typed-1")())
    assert app2.handle("typed-1").result(timeout=10) == fixed.id.hex
    original, replayed = seen
    assert replayed == original
    assert type(replayed[0]) is Receipt and type(replayed[0].pair) is tuple
    assert type(replayed[0].color) is Color and type(replayed[1]) is datetime


def test_nondeterminism_is_detected(make_app: Callable[..., durably.App]) -> None:
    state = {"first": True}

    def build(app: durably.App) -> Any:
        @app.step(name="alpha")
        def alpha() -> int:
            return 1

        @app.step(name="beta")
        def beta() -> int:
            return 2

        @app.step(name="crash")
        def crash() -> None:
            raise Crash()

        @app.workflow(name="shifty")
        def shifty() -> int:
            if state["first"]:
                state["first"] = False
                alpha()
                crash()
            return beta()

        return shifty

    app2, _ = crash_then_recover(make_app, build, lambda wf: wf.options(id="nd")())
    with pytest.raises(durably.NonDeterminismError) as info:
        app2.handle("nd").result(timeout=10)
    message = str(info.value)
    assert "step 1" in message and "alpha" in message and "beta" in message


def test_completed_steps_not_rerun_after_crash(make_app: Callable[..., durably.App]) -> None:
    ran: list[str] = []
    state = {"crash": True}

    def build(app: durably.App) -> Any:
        def make_step(label: str) -> Any:
            @app.step(name=label)
            def body() -> str:
                ran.append(label)
                if label == "s3" and state["crash"]:
                    state["crash"] = False
                    raise Crash()
                return label.upper()

            return body

        s1, s2, s3 = make_step("s1"), make_step("s2"), make_step("s3")

        @app.workflow(name="three")
        def three() -> str:
            return s1() + s2() + s3()

        return three

    app2, _ = crash_then_recover(make_app, build, lambda wf: wf.options(id="t3")())
    assert app2.handle("t3").result(timeout=10) == "S1S2S3"
    assert ran == ["s1", "s2", "s3", "s3"]


def test_unstorable_arguments_rejected_before_write(app: durably.App, db: Any) -> None:
    import socket

    @app.workflow
    def wf(x: Any) -> None:
        return None

    with socket.socket() as sock, pytest.raises(durably.ValueEncodingError, match="socket"):
        wf(sock)
    with pytest.raises(durably.ValueEncodingError, match="function"):
        wf.start(lambda: 1)
    with pytest.raises(durably.ValueEncodingError):
        wf(float("nan"))
    with pytest.raises(durably.ValueEncodingError):
        wf("nul\x00char")
    assert db.execute("select count(*) from workflows").fetchone()[0] == 0


def test_unstorable_results(app: durably.App, db: Any) -> None:
    @app.step
    def bad_step() -> Any:
        return threading.Lock()

    @app.workflow
    def uses_bad_step() -> str:
        try:
            bad_step()
        except durably.ValueEncodingError as exc:
            return f"caught: {type(exc).__name__}"
        return "no error"

    @app.workflow
    def bad_result() -> Any:
        return object()

    assert uses_bad_step.options(id="bs")() == "caught: ValueEncodingError"
    assert app.list_steps("bs") == []  # nothing recorded for the step
    with pytest.raises(durably.ValueEncodingError, match="object"):
        bad_result.options(id="br")()
    assert app.handle("br").status() is durably.Status.ERROR


def test_bad_options_and_ids(app: durably.App) -> None:
    @app.workflow
    def wf() -> int:
        return 1

    with pytest.raises(durably.InvalidArgument):
        wf.options(id="")
    with pytest.raises(durably.InvalidArgument):
        wf.options(id=123)  # type: ignore[arg-type]
    with pytest.raises(durably.InvalidArgument):
        wf.options(timeout=-1)
    with pytest.raises(durably.InvalidArgument):
        app.handle("")
    with pytest.raises(durably.ConfigurationError, match="retries"):
        app.step(retries=-1)(lambda: None)
    with pytest.raises(durably.ConfigurationError, match="backoff"):
        app.step(backoff=0.5)(lambda: None)
    with pytest.raises(durably.ConfigurationError, match="max_recovery_attempts"):
        app.workflow(max_recovery_attempts=0)(lambda: None)
    with pytest.raises(durably.ConfigurationError, match="already registered"):
        app.workflow(name=wf.name)(lambda: 2)
    with pytest.raises(durably.ConfigurationError):
        durably.App("postgresql://x", schema="")
    with pytest.raises(durably.ConfigurationError):
        durably.App("postgresql://x", lease=0)


def test_durable_calls_outside_workflow(app: durably.App) -> None:
    @app.workflow
    def wf() -> int:
        return 1

    # The same workflow function is usable from many threads without a workflow around it.
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(wf())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1, 1, 1, 1]


def test_list_workflows_filters(app: durably.App) -> None:
    @app.workflow(name="ok")
    def ok(i: int) -> int:
        return i

    @app.workflow(name="bad")
    def bad() -> None:
        raise RuntimeError("x")

    for i in range(5):
        ok.options(id=f"ok-{i}")(i)
    with pytest.raises(RuntimeError):
        bad.options(id="bad-0")()

    everything = app.list_workflows()
    assert [w.id for w in everything] == [f"ok-{i}" for i in range(5)] + ["bad-0"]
    assert [w.id for w in app.list_workflows(descending=True, limit=2)] == ["bad-0", "ok-4"]
    assert [w.id for w in app.list_workflows(limit=2, offset=1)] == ["ok-1", "ok-2"]
    errors = app.list_workflows(status="ERROR")
    assert [w.id for w in errors] == ["bad-0"]
    assert isinstance(errors[0].error, RuntimeError)
    assert [w.id for w in app.list_workflows(name="ok", ids=["ok-1", "ok-3", "bad-0"])] == [
        "ok-1",
        "ok-3",
    ]
    assert app.list_workflows(status=["SUCCESS", "ERROR"], limit=100).__len__() == 6
    middle = everything[2].created_at
    assert [w.id for w in app.list_workflows(created_after=middle, name="ok")] == [
        "ok-2",
        "ok-3",
        "ok-4",
    ]
    assert [w.id for w in app.list_workflows(created_before=middle)] == ["ok-0", "ok-1"]
    assert everything[0].output == 0 and everything[0].inputs == {"args": [0], "kwargs": {}}
    with pytest.raises(durably.InvalidArgument, match="unknown status"):
        app.list_workflows(status="DONE")
    with pytest.raises(durably.InvalidArgument):
        app.list_workflows(limit=-1)
    with pytest.raises(durably.InvalidArgument):
        app.list_workflows(created_after="yesterday")  # type: ignore[arg-type]


def test_list_steps_records(app: durably.App) -> None:
    @app.step
    def good() -> dict[str, int]:
        return {"a": 1}

    @app.step
    def bad() -> None:
        raise ValueError("broken")

    @app.workflow
    def wf() -> str:
        good()
        with contextlib.suppress(ValueError):
            bad()
        return "done"

    wf.options(id="ls")()
    first, second = app.list_steps("ls")
    assert (first.step, first.kind, first.output, first.error) == (1, "step", {"a": 1}, None)
    assert second.step == 2 and isinstance(second.error, ValueError)
    assert first.started_at <= first.completed_at <= second.started_at
    assert first.name.endswith("good")
    with pytest.raises(durably.WorkflowNotFound):
        app.list_steps("missing")


def test_result_timeout(app: durably.App) -> None:
    gate = threading.Event()

    @app.workflow
    def waits() -> int:
        gate.wait(10)
        return 7

    handle = waits.start()
    with pytest.raises(durably.ResultTimeout):
        handle.result(timeout=0.05)
    assert handle.status() is durably.Status.PENDING
    gate.set()
    assert handle.result(timeout=10) == 7


def test_orphaned_workflow_is_recovered_by_its_own_live_executor(
    make_app: Callable[..., durably.App],
) -> None:
    # A workflow that stopped without an outcome in a process that is still alive (its
    # thread died, or its database connection was lost for too long) is not stranded:
    # the same executor picks it up again once it has been idle for a lease.
    app = make_app(lease=0.5)
    state = {"crash": True}

    @app.step
    def maybe_crash() -> str:
        if state["crash"]:
            state["crash"] = False
            raise Crash()
        return "recovered"

    @app.workflow
    def wf() -> str:
        return maybe_crash()

    app.launch()
    with pytest.raises(Crash):
        wf.options(id="orphan")()
    assert app.handle("orphan").result(timeout=20) == "recovered"
    [info] = app.list_workflows(ids=["orphan"])
    assert info.recovery_attempts == 1 and info.executor_id == app.executor_id


def test_replay_reads_the_history_once_and_never_per_step(
    make_app: Callable[..., durably.App],
) -> None:
    # DESIGN 6a: a replay loads every recorded operation in one query, then runs the
    # function against them in memory. Count the statements the replaying process sends.
    state = {"crash": True}

    def build(app: durably.App) -> Any:
        @app.step(name="tick")
        def tick(i: int) -> int:
            return i

        @app.step(name="last")
        def last() -> str:
            if state["crash"]:
                state["crash"] = False
                raise Crash()
            return "done"

        @app.workflow(name="long")
        def long() -> str:
            for i in range(40):
                tick(i)
            return last()

        return long

    executor = f"exec-{uuid.uuid4().hex[:6]}"
    first = make_app(executor_id=executor)
    wf = build(first)
    with pytest.raises(Crash):
        wf.options(id="long-1")()
    first.shutdown(grace=0)

    second = make_app(executor_id=executor)
    build(second)
    db = second.engine.db
    calls = {"run": 0, "write": 0}
    run, write = db.run, db.write

    def counting_run(statement: Any) -> Any:
        calls["run"] += 1
        return run(statement)

    def counting_write(statement: Any, **kw: Any) -> Any:
        calls["write"] += 1
        return write(statement, **kw)

    db.run, db.write = counting_run, counting_write  # type: ignore[method-assign]
    second.launch()
    handle = second.handle("long-1")
    assert handle.result(timeout=20) == "done"
    steps = second.list_steps("long-1")
    assert [s.name for s in steps] == ["tick"] * 40 + ["last"]
    # The replayed thread wrote the one new checkpoint and the outcome; it read nothing
    # per step (the history came in one query of the executor loop). The few reads are
    # this test's own: handle() and list_steps().
    assert calls["write"] == 2
    assert calls["run"] <= 3


def test_concurrent_checkpoints_share_commits(app: durably.App, db: Any) -> None:
    # Group commit: checkpoints of concurrent workflows go out in shared transactions.
    @app.step
    async def noop(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @app.workflow
    async def wf(n: int) -> int:
        for i in range(5):
            await noop(i)
        return n

    async def main() -> list[int]:
        return list(await asyncio.gather(*(wf(i) for i in range(50))))

    assert asyncio.run(main()) == list(range(50))
    rows, transactions = db.execute(
        "SELECT count(*), count(DISTINCT xmin::text) FROM operations"
    ).fetchone()
    assert rows == 250
    assert transactions < rows / 2  # many checkpoints per commit


def test_launch_recovers_more_than_one_batch_of_own_workflows_once(
    make_app: Callable[..., durably.App], db: Any
) -> None:
    # More pending workflows than one claim batch (100): each is recovered exactly once.
    state = {"crash": True}

    def build(app: durably.App) -> Any:
        @app.step(name="maybe")
        def maybe() -> str:
            if state["crash"]:
                raise Crash()
            return "ok"

        @app.workflow(name="many")
        def many(i: int) -> str:
            return maybe()

        return many

    executor = f"exec-{uuid.uuid4().hex[:6]}"
    first = make_app(executor_id=executor)
    many = build(first)
    for i in range(150):
        with pytest.raises(Crash):
            many.options(id=f"many-{i}")(i)
    first.shutdown(grace=0)
    state["crash"] = False
    second = make_app(executor_id=executor)
    build(second)
    second.launch()
    assert all(second.handle(f"many-{i}").result(timeout=30) == "ok" for i in range(150))
    attempts = db.execute("SELECT DISTINCT recovery_attempts FROM workflows").fetchall()
    assert attempts == [(1,)]


def test_launch_recovery_is_paced_by_the_recovery_capacity(
    make_app: Callable[..., durably.App], db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog of own workflows is claimed in batches as recovered runs finish: at no
    time are more than the capacity running here (memory does not grow with the
    backlog), and every one is recovered exactly once."""
    from durably.runtime import recovery

    monkeypatch.setattr(recovery, "RECOVERY_CAPACITY", 30)
    state = {"crash": True}
    gate = threading.Event()

    def build(app: durably.App) -> Any:
        @app.step(name="held")
        def held() -> str:
            if state["crash"]:
                raise Crash()
            gate.wait(30)
            return "ok"

        @app.workflow(name="paced")
        def paced(i: int) -> str:
            return held()

        return paced

    executor = f"exec-{uuid.uuid4().hex[:6]}"
    first = make_app(executor_id=executor)
    paced = build(first)
    for i in range(150):
        with pytest.raises(Crash):
            paced.options(id=f"paced-{i}")(i)
    first.shutdown(grace=0)
    state["crash"] = False
    second = make_app(executor_id=executor, max_threads=200)
    build(second)
    second.launch()

    def claimed() -> int:
        return db.execute("SELECT count(*) FROM workflows WHERE epoch > 1").fetchone()[0]

    wait_until(lambda: claimed() >= 30, what="the first recovered runs")
    assert claimed() == 30  # never more than the capacity at once
    gate.set()
    assert all(second.handle(f"paced-{i}").result(timeout=60) == "ok" for i in range(150))
    attempts = db.execute("SELECT DISTINCT recovery_attempts FROM workflows").fetchall()
    assert attempts == [(1,)]
