"""Workflow definitions shared, with the same names, by the tests and the worker processes.

``build`` declares every workflow on a new App. Each step body appends one line
``"<label> <pid>"`` to the effects file (opened with O_APPEND, so lines from several
processes never mix), which lets a test count how often each body really ran, and by
which process. A step whose label is in ``hold`` then waits at a gate: it polls until
the file ``gate_dir/<label>`` exists, so a test decides exactly when the step may end
(and can kill or pause the process while it waits).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import psycopg.sql

import durably

GATE_TIMEOUT = 60.0


def effect(effects: str | os.PathLike[str], label: str) -> None:
    """Append ``"<label> <pid>"`` to the effects file in one write (O_APPEND)."""
    fd = os.open(effects, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{label} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def expected_three(x: int) -> list[int]:
    """What workflow ``three`` returns for ``x`` when nothing goes wrong."""
    a = x * 2
    b = a + 1
    return [a, b, b * 10]


class Deployment(NamedTuple):
    """An app and its workflows by name."""

    app: durably.App
    workflows: dict[str, durably.Workflow[Any, Any]]


def build(
    url: str,
    schema: str,
    *,
    executor_id: str | None,
    lease: float,
    effects: str | os.PathLike[str],
    gate_dir: str | os.PathLike[str] | None = None,
    hold: Iterable[str] = (),
    max_recovery_attempts: int = 2,
) -> Deployment:
    """A new App on ``schema`` with every test workflow declared on it."""
    app = durably.App(url, schema=schema, executor_id=executor_id, lease=lease)
    held = frozenset(hold)

    def ran(label: str) -> None:
        effect(effects, label)
        if label in held:
            assert gate_dir is not None, "a held step needs a gate directory"
            gate = Path(gate_dir) / label
            deadline = time.monotonic() + GATE_TIMEOUT
            while not gate.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gate {gate} was never opened")
                time.sleep(0.01)

    @app.step(name="s1")
    def s1(x: int) -> int:
        ran("s1")
        return x * 2

    @app.step(name="s2")
    def s2(x: int) -> int:
        ran("s2")
        return x + 1

    @app.step(name="s3")
    def s3(x: int) -> int:
        ran("s3")
        return x * 10

    @app.workflow(name="three")
    def three(x: int) -> list[int]:
        a = s1(x)
        b = s2(a)
        return [a, b, s3(b)]

    @app.step(name="tagged")
    def tagged(x: int) -> str:
        # The value names the process that computed it: an overwrite would show.
        ran("tagged")
        return f"{x}@{os.getpid()}"

    @app.workflow(name="fenced")
    def fenced(x: int) -> list[object]:
        a = s1(x)
        try:
            b = tagged(a)
        except durably.LostOwnership:
            effect(effects, "LOST")
            raise
        return [a, b, s3(a)]

    @app.step(name="suicide")
    def suicide() -> None:
        ran("suicide")
        os.kill(os.getpid(), signal.SIGKILL)

    @app.workflow(name="doomed", max_recovery_attempts=max_recovery_attempts)
    def doomed(x: int) -> str:
        s1(x)
        suicide()
        return "unreachable"

    @app.step(name="advance")
    def advance(i: int) -> int:
        ran(f"advance{i}")
        return i

    @app.step(name="die_once")
    def die_once(i: int) -> None:
        # Kills its process the first time it runs for ``i`` (a marker file remembers).
        marker = Path(effects).with_name(f"died-{i}")
        if not marker.exists():
            marker.touch()
            ran(f"die{i}")
            os.kill(os.getpid(), signal.SIGKILL)

    @app.workflow(name="marching", max_recovery_attempts=max_recovery_attempts)
    def marching(n: int) -> int:
        # Every run records one step more, then its worker dies: progress each time.
        for i in range(1, n + 1):
            advance(i)
            die_once(i)
        return n

    @app.workflow(name="once")
    def once(x: int) -> str:
        # The body itself counts its executions (a body may replay, a step never reruns).
        effect(effects, "once-body")
        return f"{s1(x)}@{os.getpid()}"

    # A transaction step: its row in tx_rows (a table the test creates in the schema)
    # commits together with its checkpoint. It waits at its gate with the transaction
    # open, so a test can kill or pause the process in the middle of it.
    rows = psycopg.sql.SQL("INSERT INTO {}.tx_rows (workflow_id, pid) VALUES (%s, %s)").format(
        psycopg.sql.Identifier(schema)
    )

    @app.transaction(name="tx_insert", isolation="read committed")
    def tx_insert(conn: psycopg.Connection[Any], x: int) -> str:
        conn.execute(rows, (durably.workflow_id(), os.getpid()))
        ran("tx_insert")
        return f"{x}@{os.getpid()}"

    @app.workflow(name="txflow")
    def txflow(x: int) -> list[object]:
        try:
            inserted = tx_insert(x)
        except durably.LostOwnership:
            effect(effects, "LOST")
            raise
        return [inserted, s1(x)]

    workflows = (three, fenced, doomed, marching, once, txflow)
    return Deployment(app, {wf.name: wf for wf in workflows})
