"""``durably.workflow_id()`` and ``durably.step_key()``: what a workflow and its steps
know of themselves, stable across retries and recovery (keys for external effects)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import durably
from waitprocs.util import Crash, crash_then_recover


def test_workflow_id_in_the_body_in_steps_and_in_children(app: durably.App) -> None:
    @app.step
    def where() -> str:
        return durably.workflow_id()

    @app.workflow
    def kid() -> list[str]:
        return [durably.workflow_id(), where()]

    @app.workflow
    def parent() -> list[Any]:
        return [durably.workflow_id(), where(), kid()]

    assert parent.options(id="p")() == ["p", "p", ["p-2", "p-2"]]
    assert parent.start().result(timeout=10)[0] not in ("", "p")


def test_step_key_numbers_the_step_and_is_kept_by_retries(app: durably.App) -> None:
    attempts: list[str] = []

    @app.step(retries=2, interval=0)
    def charge() -> str:
        attempts.append(durably.step_key())
        if len(attempts) < 3:
            raise ConnectionError("payment API down")
        return durably.step_key()

    @app.step
    def refund() -> str:
        return durably.step_key()

    @app.workflow
    def pay() -> list[str]:
        durably.sleep(0)
        return [charge(), refund()]

    assert pay.options(id="order-7")() == ["order-7:2", "order-7:3"]
    assert attempts == ["order-7:2"] * 3


def test_async_workflows_and_steps(app: durably.App) -> None:
    @app.step
    async def keyed() -> list[str]:
        await asyncio.sleep(0)
        return [durably.workflow_id(), durably.step_key()]

    @app.step
    def plain() -> str:
        return durably.step_key()

    @app.workflow
    async def flow() -> list[Any]:
        both = await asyncio.gather(keyed(), keyed())
        return [durably.workflow_id(), *both, plain()]

    assert asyncio.run(flow.options(id="af")()) == [
        "af",
        ["af", "af:1"],
        ["af", "af:2"],
        "af:3",
    ]


def test_step_key_is_the_same_when_a_step_runs_again_after_a_crash(
    make_app: Callable[..., durably.App],
) -> None:
    keys: list[str] = []

    def build(app: durably.App) -> Any:
        @app.step(name="first")
        def first() -> int:
            return 1

        @app.step(name="dies_once")
        def dies_once() -> str:
            keys.append(durably.step_key())
            if len(keys) == 1:
                raise Crash()  # the process dies before the step is recorded
            return durably.step_key()

        @app.workflow(name="crashy")
        def crashy() -> str:
            first()
            return dies_once()

        return crashy

    app2, _ = crash_then_recover(make_app, build, lambda wf: wf.options(id="c-1")())
    assert app2.handle("c-1").result(timeout=10) == "c-1:2"
    assert keys == ["c-1:2", "c-1:2"]


def test_outside_a_workflow_or_a_step_is_not_in_workflow(app: durably.App) -> None:
    with pytest.raises(durably.NotInWorkflow, match="workflow_id"):
        durably.workflow_id()
    with pytest.raises(durably.NotInWorkflow, match="step_key"):
        durably.step_key()

    @app.workflow
    def body() -> str:
        try:
            durably.step_key()
        except durably.NotInWorkflow as exc:
            return str(exc)
        return "no error"

    assert "inside a step" in body()
