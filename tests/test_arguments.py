"""Arguments are bound to the workflow's signature before anything is written.

A call the function cannot take raises TypeError in the caller, naming the workflow and
what was wrong, and stores nothing: its ID stays free for a correct call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import durably


def rows(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("SELECT id, name FROM workflows ORDER BY id").fetchall()


def test_a_call_with_wrong_arguments_stores_nothing_and_leaves_the_id_free(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="one_arg")
    def one_arg(n: int) -> int:
        return n * 2

    wrong: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        ((1, 2, 3), {}, "too many positional arguments"),
        ((), {}, "missing a required argument: 'n'"),
        ((1,), {"m": 2}, "unexpected keyword argument 'm'"),
    ]
    for args, kwargs, reason in wrong:
        with pytest.raises(TypeError, match="one_arg") as refused:
            one_arg.options(id="x")(*args, **kwargs)
        assert reason in str(refused.value)
        assert "nothing was stored" in str(refused.value)
        with pytest.raises(TypeError, match=reason):
            one_arg.options(id="x").start(*args, **kwargs)
    assert rows(db) == []
    assert one_arg.options(id="x")(4) == 8
    assert one_arg.options(id="x").start(n=4).result(timeout=10) == 8
    assert rows(db) == [("x", "one_arg")]


def test_async_entry_points_refuse_wrong_arguments(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="pair")
    async def pair(a: int, b: int = 0) -> int:
        return a + b

    async def scenario() -> None:
        with pytest.raises(TypeError, match="pair"):
            await pair.options(id="p")(1, 2, 3)
        with pytest.raises(TypeError, match="pair"):
            await pair.options(id="p").start_async(b=1)
        assert rows(db) == []
        assert await pair.options(id="p")(1, b=2) == 3

    asyncio.run(scenario())


def test_queues_and_debounce_refuse_wrong_arguments(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app()
    work = app.queue("work")

    @app.workflow(name="job")
    def job(item: str) -> str:
        return item

    app.launch()
    with pytest.raises(TypeError, match="job"):
        work.enqueue(job, "a", "b")
    with pytest.raises(TypeError, match="job"):
        job.options(queue="work", id="j").start()
    with pytest.raises(TypeError, match="job"):
        work.debounce("k", 5.0, job, wrong="a")

    async def scenario() -> None:
        with pytest.raises(TypeError, match="job"):
            await work.enqueue_async(job)
        with pytest.raises(TypeError, match="job"):
            await work.debounce_async("k", 5.0, job, "a", "b")

    asyncio.run(scenario())
    assert rows(db) == []
    assert job.options(queue="work", id="j").start("ok").result(timeout=10) == "ok"


def test_a_child_with_wrong_arguments_is_refused_in_the_parent(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="kid")
    def kid(n: int) -> int:
        return n

    @app.step(name="after")
    def after() -> str:
        return "after"

    @app.workflow(name="parent")
    def parent() -> list[Any]:
        seen: list[Any] = []
        try:
            kid(1, 2)
        except TypeError as exc:
            seen.append(str(exc))
        seen.append(after())
        seen.append(kid(3))
        return seen

    result = parent.options(id="dad")()
    assert "workflow 'kid'" in result[0] and "too many positional arguments" in result[0]
    assert result[1:] == ["after", 3]
    # The refused call took no step number and left no child behind.
    assert [(s.step, s.kind, s.name) for s in app.list_steps("dad")] == [
        (1, "step", "after"),
        (2, "child", "kid"),
    ]
    assert rows(db) == [("dad", "parent"), ("dad-2", "kid")]
