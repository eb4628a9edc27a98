"""Code upgrades of workflows in flight: ``durably.patched`` and ``durably.deprecate_patch``.

Each test records executions with one version of a workflow's code (one App), then
replays them with another version (a second App on the same schema, same workflow
name), the way a deployment replaces a process. Executions park in ``recv`` between
versions, so nothing runs while the code changes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import durably
from support import wait_until

pytestmark = pytest.mark.timeout(90)

PATCH = "new-pricing"


def build(app: durably.App, version: str, calls: Counter[str]) -> durably.Workflow[..., Any]:
    """The workflow ``pricing`` as written in ``version``: "old" (before the change),
    "patched" (both branches, chosen by ``durably.patched``) or "deprecated" (only the
    new branch, after ``durably.deprecate_patch``)."""

    @app.step(name="old_price")
    def old_price(x: int) -> int:
        calls["old_price"] += 1
        return x * 2

    @app.step(name="new_price")
    def new_price(x: int) -> int:
        calls["new_price"] += 1
        return x * 3

    @app.step(name="ship")
    def ship(price: int) -> str:
        calls["ship"] += 1
        return f"shipped {price}"

    @app.workflow(name="pricing")
    def pricing(x: int) -> list[Any]:
        a = durably.recv("a", timeout=300)  # an execution parked here has not priced yet
        if version == "old":
            price = old_price(x)
        elif version == "patched":
            price = new_price(x) if durably.patched(PATCH) else old_price(x)
        else:
            durably.deprecate_patch(PATCH)
            price = new_price(x)
        b = durably.recv("b", timeout=300)  # an execution parked here has priced
        return [a, price, b, ship(price)]

    return pricing


def parked_at(db: psycopg.Connection[Any], workflow_id: str, topic: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM workflows WHERE id = %s AND status = 'PENDING' AND executor_id IS NULL "
        "AND wait_kind = 'recv' AND wait_topic = %s",
        (workflow_id, topic),
    ).fetchone()
    return row is not None


def steps(app: durably.App, workflow_id: str) -> list[tuple[int, str, str]]:
    return [(s.step, s.kind, s.name) for s in app.list_steps(workflow_id)]


def start_parked(
    app: durably.App,
    wf: durably.Workflow[..., Any],
    db: psycopg.Connection[Any],
    workflow_id: str,
    x: int,
    *,
    priced: bool,
) -> None:
    """Start an execution and leave it parked before pricing (``recv("a")``) or after
    it (``recv("b")``)."""
    wf.options(id=workflow_id).start(x)
    if priced:
        wait_until(lambda: parked_at(db, workflow_id, "a"), what=f"{workflow_id} parked at a")
        app.send(workflow_id, "A", topic="a")
    topic = "b" if priced else "a"
    wait_until(lambda: parked_at(db, workflow_id, topic), what=f"{workflow_id} parked at {topic}")


def finish(app: durably.App, workflow_id: str, *, priced: bool) -> Any:
    if not priced:
        app.send(workflow_id, "A", topic="a")
    app.send(workflow_id, "B", topic="b")
    return app.handle(workflow_id).result(timeout=30)


OLD_STEPS = [(1, "recv", "recv:a"), (2, "step", "old_price"), (3, "recv", "recv:b")]
# (An execution parked in recv("b") has recorded everything before it.)
NEW_STEPS = [
    (1, "recv", "recv:a"),
    (2, "patch", PATCH),
    (3, "step", "new_price"),
    (4, "recv", "recv:b"),
]


def test_an_execution_recorded_before_the_patch_replays_the_old_branch(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    calls: Counter[str] = Counter()
    old_app = make_app(park_after=0)
    old = build(old_app, "old", calls)
    old_app.launch()
    start_parked(old_app, old, db, "late", 5, priced=True)
    start_parked(old_app, old, db, "early", 7, priced=False)
    assert steps(old_app, "late") == OLD_STEPS[:2]
    old_app.shutdown()

    new_app = make_app(park_after=0)
    build(new_app, "patched", calls)
    new_app.launch()
    # Priced by the old code: the old price, replayed (not run again), and the old
    # step numbers; no marker is written.
    assert finish(new_app, "late", priced=True) == ["A", 10, "B", "shipped 10"]
    assert steps(new_app, "late") == [*OLD_STEPS, (4, "step", "ship")]
    assert calls["old_price"] == 1 and calls["new_price"] == 0
    # Parked before the change point: past its history there, so the new code.
    assert finish(new_app, "early", priced=False) == ["A", 21, "B", "shipped 21"]
    assert steps(new_app, "early") == [*NEW_STEPS, (5, "step", "ship")]
    assert calls["old_price"] == 1 and calls["new_price"] == 1


def test_a_new_execution_records_the_marker_and_its_replay_takes_the_new_branch(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    calls: Counter[str] = Counter()
    first = make_app(park_after=0)
    wf = build(first, "patched", calls)
    first.launch()
    start_parked(first, wf, db, "n1", 5, priced=True)
    assert steps(first, "n1") == NEW_STEPS[:3]
    marker = first.list_steps("n1")[1]
    assert marker.output is None and marker.error is None
    first.shutdown()

    second = make_app(park_after=0)
    build(second, "patched", calls)
    second.launch()
    assert finish(second, "n1", priced=True) == ["A", 15, "B", "shipped 15"]
    assert steps(second, "n1") == [*NEW_STEPS, (5, "step", "ship")]
    assert calls == Counter(new_price=1, ship=1)  # the price was replayed, not run again


def test_code_without_the_call_fails_loudly_on_a_recorded_marker(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    # Removing the patched() call (instead of deprecating it) shifts every later step
    # number by one: the replay must refuse, not run the wrong code.
    calls: Counter[str] = Counter()
    first = make_app(park_after=0)
    wf = build(first, "patched", calls)
    first.launch()
    start_parked(first, wf, db, "n1", 5, priced=True)
    first.shutdown()

    second = make_app(park_after=0)
    build(second, "old", calls)
    second.launch()
    with pytest.raises(durably.NonDeterminismError) as failed:
        finish(second, "n1", priced=True)
    assert f"patch {PATCH}" in str(failed.value) and "step old_price" in str(failed.value)


def test_deprecate_patch_replays_executions_recorded_with_and_without_the_marker(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    calls: Counter[str] = Counter()
    old_app = make_app(park_after=0)
    old = build(old_app, "old", calls)
    old_app.launch()
    start_parked(old_app, old, db, "old-late", 1, priced=True)
    start_parked(old_app, old, db, "old-early", 2, priced=False)
    old_app.shutdown()

    patched_app = make_app(park_after=0)
    patched = build(patched_app, "patched", calls)
    patched_app.launch()
    start_parked(patched_app, patched, db, "marked", 3, priced=True)
    patched_app.shutdown()

    app = make_app(park_after=0)
    deprecated = build(app, "deprecated", calls)
    app.launch()
    start_parked(app, deprecated, db, "unmarked", 4, priced=True)
    unmarked = [(1, "recv", "recv:a"), (2, "step", "new_price"), (3, "recv", "recv:b")]
    assert steps(app, "unmarked") == unmarked[:2]  # deprecate_patch writes nothing
    priced = calls["new_price"]

    assert finish(app, "marked", priced=True) == ["A", 9, "B", "shipped 9"]
    assert steps(app, "marked") == [*NEW_STEPS, (5, "step", "ship")]
    assert finish(app, "unmarked", priced=True) == ["A", 12, "B", "shipped 12"]
    assert steps(app, "unmarked") == [*unmarked, (4, "step", "ship")]
    assert calls["new_price"] == priced  # both replayed their recorded price
    assert finish(app, "old-early", priced=False) == ["A", 6, "B", "shipped 6"]
    assert calls["new_price"] == priced + 1
    # Priced by the removed old branch: that one execution fails loudly.
    with pytest.raises(durably.NonDeterminismError) as failed:
        finish(app, "old-late", priced=True)
    assert "step old_price" in str(failed.value) and "step new_price" in str(failed.value)


def test_async_twins_record_and_replay_the_marker(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    calls: Counter[str] = Counter()

    def build_async(app: durably.App, deprecated: bool) -> durably.Workflow[..., Any]:
        @app.step(name="fresh")
        async def fresh() -> str:
            calls["fresh"] += 1
            await asyncio.sleep(0)
            return "new"

        @app.workflow(name="apricing")
        async def apricing() -> list[Any]:
            if deprecated:
                await durably.deprecate_patch_async(PATCH)
                branch = await fresh()
            else:
                branch = await fresh() if await durably.patched_async(PATCH) else "old"
            return [branch, await durably.recv_async("go", timeout=300)]

        return apricing

    first = make_app(park_after=0)
    wf = build_async(first, deprecated=False)
    first.launch()
    wf.options(id="a1").start()
    wait_until(lambda: parked_at(db, "a1", "go"), what="async workflow parked")
    assert steps(first, "a1") == [(1, "patch", PATCH), (2, "step", "fresh")]
    first.send("a1", "go", topic="go")
    assert first.handle("a1").result(timeout=30) == ["new", "go"]

    wf.options(id="a2").start()
    wait_until(lambda: parked_at(db, "a2", "go"), what="second async workflow parked")
    first.shutdown()
    second = make_app(park_after=0)
    build_async(second, deprecated=True)
    second.launch()
    second.send("a2", "go", topic="go")
    assert second.handle("a2").result(timeout=30) == ["new", "go"]
    assert calls["fresh"] == 2  # a2's step was replayed
    assert [s.kind for s in second.list_steps("a2")] == ["patch", "step", "recv"]


def test_outside_a_workflow_in_a_step_or_with_a_bad_name_is_refused(
    app: durably.App,
) -> None:
    for call in (durably.patched, durably.deprecate_patch):
        with pytest.raises(durably.NotInWorkflow, match="outside a workflow"):
            call(PATCH)
    with pytest.raises(durably.NotInWorkflow, match=r"patched_async\(\)"):
        asyncio.run(durably.patched_async(PATCH))

    @app.step(name="inner")
    def inner() -> str:
        try:
            durably.patched(PATCH)
        except durably.NotInWorkflow as exc:
            return str(exc)
        return "no error"

    @app.workflow(name="names")
    def names() -> list[str]:
        refused = []
        for bad in ("", 3, None, "a\x00b"):
            for call in (durably.patched, durably.deprecate_patch):
                try:
                    call(bad)  # type: ignore[arg-type]
                except durably.InvalidArgument as exc:
                    refused.append(str(exc))
        return [*refused, inner()]

    handle = names.options(id="bad").start()
    *refused, in_step = handle.result(timeout=30)
    assert len(refused) == 8 and all(m.startswith("patch name ") for m in refused)
    assert "called in a step" in in_step and "workflow's body" in in_step
    assert steps(app, "bad") == [(1, "step", "inner")]  # nothing written for the refusals
