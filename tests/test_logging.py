"""What a worker logs about workflows and steps: the lines, their levels, their extra fields."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import durably
from durably.runtime import logs
from support import wait_until

pytestmark = pytest.mark.timeout(60)


def lines(caplog: pytest.LogCaptureFixture, *parts: str) -> list[logging.LogRecord]:
    """The records whose message holds every one of ``parts``."""
    return [r for r in caplog.records if all(p in r.getMessage() for p in parts)]


def field(record: logging.LogRecord, name: str) -> Any:
    return record.__dict__[name]


@pytest.fixture
def caught(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="durably")
    return caplog


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_workflow_logs_its_start_and_finish(
    app: durably.App, caught: pytest.LogCaptureFixture, kind: str
) -> None:
    if kind == "sync":

        @app.workflow(name="greet")
        def greet(who: str) -> str:
            return f"hello {who}"

        assert greet.options(id="g-1").start("ann").result(timeout=30) == "hello ann"
    else:

        @app.workflow(name="greet")
        async def agreet(who: str) -> str:
            await asyncio.sleep(0)
            return f"hello {who}"

        assert agreet.options(id="g-1").start("ann").result(timeout=30) == "hello ann"

    [started] = lines(caught, "workflow g-1 (greet) started")
    [finished] = lines(caught, "workflow g-1 (greet) finished")
    for record in (started, finished):
        assert record.levelno == logging.INFO
        assert record.name == "durably.workflows"
        assert field(record, "workflow_id") == "g-1"
        assert field(record, "workflow_name") == "greet"
    assert field(finished, "status") == "SUCCESS"
    assert caught.records.index(started) < caught.records.index(finished)


def test_a_failing_workflow_logs_its_failure_on_one_line(
    app: durably.App, caught: pytest.LogCaptureFixture
) -> None:
    @app.workflow(name="doomed")
    def doomed() -> None:
        raise ValueError("no stock\nsecond line of the message")

    with pytest.raises(ValueError, match="no stock"):
        doomed.options(id="d-1")()
    [failed] = lines(caught, "workflow d-1 (doomed) failed")
    assert failed.levelno == logging.INFO
    assert failed.getMessage() == "workflow d-1 (doomed) failed: ValueError: no stock"
    assert field(failed, "workflow_id") == "d-1"
    assert field(failed, "workflow_name") == "doomed"
    assert field(failed, "status") == "ERROR"
    assert field(failed, "error_type") == "ValueError"
    assert not lines(caught, "workflow d-1 (doomed) finished")


def test_step_failures_and_retries_are_warnings_with_attempt_and_delay(
    app: durably.App, caught: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @app.step(name="flaky", retries=2, interval=0.01, backoff=2)
    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return len(calls)

    @app.step(name="broken", retries=1, interval=0.01)
    def broken() -> None:
        raise KeyError("gone")

    @app.workflow(name="retrying")
    def retrying() -> int:
        value = flaky()
        with contextlib.suppress(durably.StepRetriesExceeded):
            broken()
        return value

    assert retrying.options(id="r-1")() == 3
    retried = lines(caught, "step flaky of workflow r-1 (retrying) failed")
    assert [r.getMessage() for r in retried] == [
        "step flaky of workflow r-1 (retrying) failed (attempt 1 of 3): "
        "ConnectionError: try 1; retrying in 0.01 s",
        "step flaky of workflow r-1 (retrying) failed (attempt 2 of 3): "
        "ConnectionError: try 2; retrying in 0.02 s",
    ]
    for attempt, record in enumerate(retried, start=1):
        assert record.levelno == logging.WARNING
        assert field(record, "workflow_id") == "r-1"
        assert field(record, "workflow_name") == "retrying"
        assert field(record, "step") == "flaky"
        assert field(record, "attempt") == attempt
        assert field(record, "retry_in") == pytest.approx(0.01 * 2 ** (attempt - 1))
    final = lines(caught, "step broken of workflow r-1 (retrying) failed")
    assert [r.getMessage() for r in final] == [
        "step broken of workflow r-1 (retrying) failed (attempt 1 of 2): "
        "KeyError: 'gone'; retrying in 0.01 s",
        "step broken of workflow r-1 (retrying) failed (attempt 2 of 2): "
        "KeyError: 'gone'; no attempts left",
    ]
    assert field(final[1], "retry_in") is None
    assert field(final[1], "step") == "broken"
    # The workflow caught it and finished.
    assert lines(caught, "workflow r-1 (retrying) finished")


def test_a_failure_retry_on_declines_is_final(
    app: durably.App, caught: pytest.LogCaptureFixture
) -> None:
    @app.step(name="picky", retries=5, retry_on=lambda exc: not isinstance(exc, ValueError))
    def picky() -> None:
        raise ValueError("bad input")

    @app.workflow(name="choosy")
    def choosy() -> None:
        picky()

    with pytest.raises(ValueError):
        choosy.options(id="c-1")()
    [record] = lines(caught, "step picky of workflow c-1 (choosy) failed")
    assert record.getMessage().endswith(
        "(attempt 1 of 6): ValueError: bad input; retry_on declined a retry"
    )
    assert lines(caught, "workflow c-1 (choosy) failed: ValueError: bad input")


def test_a_takeover_and_the_resumed_run_are_logged(
    make_app: Callable[..., durably.App], caught: pytest.LogCaptureFixture
) -> None:
    inside = threading.Event()
    let_go = threading.Event()

    def build(app: durably.App, blocks: bool) -> durably.Workflow[[], str]:
        @app.step(name="first")
        def first() -> str:
            return "one"

        @app.step(name="second")
        def second() -> str:
            if blocks:
                inside.set()
                let_go.wait(30)
            return "two"

        @app.workflow(name="handed")
        def handed() -> str:
            return first() + second()

        return handed

    leaving = make_app(executor_id="leaving", lease=600.0)
    staying = make_app(executor_id="staying", lease=600.0, poll_interval=0.1)
    handed = build(leaving, blocks=True)
    build(staying, blocks=False)
    staying.launch()
    handle = handed.options(id="h-1").start()
    try:
        assert inside.wait(30)
        leaving.shutdown(grace=0)  # released: "staying" takes it over at its next beat
        assert staying.handle("h-1").result(timeout=30) == "onetwo"
    finally:
        let_go.set()
    assert handle.id == "h-1"
    [taken] = lines(caught, "taking over workflow h-1 (handed)")
    assert taken.levelno == logging.INFO
    assert taken.getMessage().endswith("whose lease expired (recovery attempt 1)")
    assert field(taken, "workflow_id") == "h-1"
    assert field(taken, "workflow_name") == "handed"
    assert field(taken, "recovered") == "takeover"
    [resumed] = lines(caught, "workflow h-1 (handed) resumed, replaying 1 recorded operation")
    assert resumed.levelno == logging.INFO
    assert field(resumed, "epoch") == 2
    # (The handle may read the outcome before the run that recorded it has logged.)
    [finished] = wait_until(
        lambda: lines(caught, "workflow h-1 (handed) finished"), what="the finished line"
    )
    assert field(finished, "workflow_id") == "h-1"


def test_nothing_is_formatted_when_the_level_is_off(
    app: durably.App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    described: list[BaseException] = []
    monkeypatch.setattr(logs, "describe", lambda error: described.append(error) or "")
    caplog.set_level(logging.ERROR, logger="durably")

    @app.step(name="failing", retries=1, interval=0)
    def failing() -> None:
        raise RuntimeError("x")

    @app.workflow(name="quiet")
    def quiet() -> None:
        failing()

    with pytest.raises(durably.StepRetriesExceeded):
        quiet()
    assert described == []
    assert not [r for r in caplog.records if r.name == "durably.workflows"]


def test_a_cancelled_workflow_logs_its_cancellation(
    app: durably.App, caught: pytest.LogCaptureFixture
) -> None:
    inside = threading.Event()
    let_go = threading.Event()

    @app.step(name="waiting")
    def waiting() -> None:
        inside.set()
        let_go.wait(30)

    @app.workflow(name="called_off")
    def called_off() -> None:
        waiting()
        waiting()

    handle = called_off.options(id="x-1").start()
    assert inside.wait(30)
    app.cancel("x-1")
    let_go.set()
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=30)
    [record] = wait_until(
        lambda: lines(caught, "workflow x-1 (called_off) cancelled"), what="the cancelled line"
    )
    assert record.levelno == logging.INFO
    assert field(record, "status") == "CANCELLED"
    assert field(record, "workflow_name") == "called_off"
