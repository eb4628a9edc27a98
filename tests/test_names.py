"""Registered names: a function's qualified name, the same however its module is run.

A workflow started from a script (``python orders.py``, module ``__main__``) is run by a
worker that imported the module (``durably worker orders:app``): both call it
``process_order``. Names of durably 0.1 (``<module>.<qualname>``) recorded by
workflows in flight still replay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durably
from durably.execution.specs import former_name
from support import wait_until

ROOT = Path(__file__).resolve().parent.parent


def test_default_name_is_the_qualified_name(make_app: Callable[..., durably.App]) -> None:
    app = make_app()

    @app.workflow
    def process_order(order: str) -> str:
        return order

    class Billing:
        @app.step
        def charge(order: str) -> str:  # a Step is no descriptor: called as Billing.charge
            return order

    @app.workflow(name="orders.v2")
    def renamed() -> None: ...

    assert process_order.name == "test_default_name_is_the_qualified_name.<locals>.process_order"
    assert Billing.charge.spec.name.endswith("<locals>.Billing.charge")
    assert "test_names" not in process_order.name  # no module
    assert renamed.name == "orders.v2"


def module_level_workflow(n: int) -> int:
    return n


def test_a_module_level_function_is_named_without_its_module(
    make_app: Callable[..., durably.App],
) -> None:
    app = make_app()
    wf = app.workflow(module_level_workflow)
    assert wf.name == "module_level_workflow"
    assert wf.spec.former == f"{__name__}.module_level_workflow"
    assert app.workflow(name="explicit")(lambda: None).spec.former is None


def _other_module_function(source: str) -> Callable[..., Any]:
    """A function of the same qualified name as one of this module, from another module."""
    namespace: dict[str, Any] = {"__name__": "elsewhere"}
    exec(compile(source, "elsewhere.py", "exec"), namespace)
    function: Callable[..., Any] = namespace["module_level_workflow"]
    return function


def test_two_functions_with_one_default_name_are_refused(
    make_app: Callable[..., durably.App],
) -> None:
    app = make_app()
    app.workflow(module_level_workflow)
    app.workflow(module_level_workflow)  # the same function again: fine
    twin = _other_module_function("def module_level_workflow(n):\n    return n\n")
    with pytest.raises(durably.ConfigurationError, match="name=") as refused:
        app.workflow(twin)
    assert "elsewhere.module_level_workflow" in str(refused.value)
    assert f"{__name__}.module_level_workflow" in str(refused.value)
    assert app.workflow(name="elsewhere.module_level_workflow")(twin).name == (
        "elsewhere.module_level_workflow"
    )
    # Steps follow the same rule: replay tells them apart by name.
    app.step(module_level_workflow)
    with pytest.raises(durably.ConfigurationError, match="name="):
        app.step(twin)
    assert app.step(name="other")(twin).spec.name == "other"
    with pytest.raises(durably.ConfigurationError, match="already registered"):
        app.step(name="other")(lambda: None)


def test_steps_and_children_recorded_under_their_01_names_still_replay(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """A workflow in flight across the upgrade: its steps and children were recorded as
    ``<module>.<qualname>``; the new code declares them without name= and replays them."""
    calls: list[str] = []

    def charge(order: str) -> str:
        calls.append(order)
        return f"charged {order}"

    def receipt(order: str) -> str:
        return f"receipt {order}"

    def flow(order: str) -> list[Any]:
        charged = steps["charge"](order)
        printed = steps["receipt"](order)
        return [charged, printed, durably.recv("go", timeout=60)]

    steps: dict[str, Any] = {}

    def declare(app: durably.App, old: bool) -> None:
        steps["charge"] = app.step(name=former_name(charge) if old else None)(charge)
        steps["receipt"] = app.workflow(name=former_name(receipt) if old else None)(receipt)
        app.workflow(name="orders.flow")(flow)  # a workflow's own name is kept with name=

    old_app = make_app(park_after=0)
    declare(old_app, old=True)
    old_app.launch()
    handle = old_app.workflow(name="orders.flow")(flow).start("o-1")
    wait_until(lambda: _parked(db, handle.id), what="flow parked in recv")
    recorded = [r[0] for r in db.execute("SELECT name FROM operations ORDER BY step")]
    assert recorded[:2] == [former_name(charge), former_name(receipt)]
    old_app.shutdown()

    # The upgraded code hashes to another version: it recovers the old one's on purpose.
    new_app = make_app(park_after=0, recover_versions="any")
    declare(new_app, old=False)
    new_app.launch()
    new_app.send(handle.id, "ok", topic="go")
    assert new_app.handle(handle.id).result(timeout=20) == ["charged o-1", "receipt o-1", "ok"]
    assert calls == ["o-1"]  # replayed, not re-run


def test_a_step_renamed_otherwise_fails_replay_loudly(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    def flow() -> str:
        steps["s"]()
        return str(durably.recv("go", timeout=60))

    def first() -> int:
        return 1

    steps: dict[str, Any] = {}
    old_app = make_app(park_after=0)
    steps["s"] = old_app.step(name="first")(first)
    wf = old_app.workflow(name="renames")(flow)
    old_app.launch()
    handle = wf.start()
    wait_until(lambda: _parked(db, handle.id), what="parked in recv")
    old_app.shutdown()

    # The upgraded code hashes to another version: it recovers the old one's on purpose.
    new_app = make_app(park_after=0, recover_versions="any")
    steps["s"] = new_app.step(name="first_v2")(first)
    new_app.workflow(name="renames")(flow)
    new_app.launch()
    new_app.send(handle.id, "x", topic="go")
    with pytest.raises(durably.NonDeterminismError, match="name=") as failed:
        new_app.handle(handle.id).result(timeout=20)
    assert "step first" in str(failed.value) and "step first_v2" in str(failed.value)


def _parked(db: psycopg.Connection[Any], workflow_id: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM workflows WHERE id = %s AND status = 'PENDING' AND executor_id IS NULL "
        "AND wait_kind = 'recv'",
        (workflow_id,),
    ).fetchone()
    return row is not None


# ------------------------------------------------------------------ a script and a worker

SCRIPT = textwrap.dedent(
    """
    import os
    import sys

    import durably

    app = durably.App(os.environ["ORDERS_URL"], schema=os.environ["ORDERS_SCHEMA"])
    orders = app.queue("orders")


    @app.step
    def charge(order: str) -> str:
        return f"charged {order}"


    @app.workflow
    def process_order(order: str) -> str:
        return charge(order)


    if __name__ == "__main__" and sys.argv[1:] == ["start"]:
        app.launch(queues=[])  # this process only starts work: it claims none
        print(process_order.options(queue="orders").start("o-1").id, flush=True)
        app.shutdown()
    """
)


@pytest.fixture
def orders(pg_url: str, schema: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    (tmp_path / "orders.py").write_text(SCRIPT)
    env = dict(os.environ)
    env.pop("DURABLY_DATABASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    env.update(ORDERS_URL=pg_url, ORDERS_SCHEMA=schema)
    yield env


def test_started_from_a_script_run_by_a_worker_of_the_module(
    orders: dict[str, str], pg_url: str, schema: str, tmp_path: Path
) -> None:
    started = subprocess.run(
        [sys.executable, "orders.py", "start"],
        cwd=tmp_path,
        env=orders,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    workflow_id = started.stdout.strip()

    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "durably.cli", "worker", "orders:app"],
        cwd=tmp_path,
        env=orders,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with durably.Client(pg_url, schema=schema) as client:
            handle = client.handle(workflow_id)
            assert handle.result(timeout=30) == "charged o-1"
            (info,) = client.list_workflows(ids=[workflow_id])
            assert info.name == "process_order"
            assert [s.name for s in client.list_steps(workflow_id)] == ["charge"]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
            log.close()
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
