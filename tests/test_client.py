"""``durably.Client``: a process with no workflow code enqueues by name and observes.

One worker subprocess (tests/clientprocs/worker.py) runs the workflows for the whole
module, on a schema of its own; this process only ever uses a ``durably.Client`` and
never imports the workers' code. The notification fallback of in-place waits is slowed
to 30 s here, so every result, event and stream value that arrives within the deadlines
below was woken by a database notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

import durably
from durably.execution import waits
from durably.runtime import engine as engine_module
from durably.runtime import served
from support import wait_until

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
TESTS = Path(__file__).resolve().parent
DEADLINE = 10.0
# The worker's fallback scan: the library default, so that work a notification should
# announce but does not shows up as a wait of several seconds.
WORKER_POLL_INTERVAL = "5"
# Receivers messaged while they park (the lost wake-up shows in a few percent of them).
RACE_ROUNDS = 80
WORKER_CODE = "import clientprocs.worker as w; w.main()"


# ------------------------------------------------------------------------ helpers


def worker_env(url: str, schema: str, effects: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CLIENTPROCS_POLL_INTERVAL"] = WORKER_POLL_INTERVAL
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    env["CLIENTPROCS_URL"] = url
    env["CLIENTPROCS_SCHEMA"] = schema
    env["CLIENTPROCS_EFFECTS"] = str(effects)
    env.pop("DURABLY_DATABASE_URL", None)
    return env


class Worker:
    """``clientprocs.worker.main()`` in a subprocess: prints READY, stops when stdin closes."""

    def __init__(self, url: str, schema: str, effects: Path, log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER_CODE],
            cwd=TESTS.parent,
            env=worker_env(url, schema, effects),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def expect(self, prefix: str, timeout: float = DEADLINE) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"worker printed no {prefix!r} within {timeout} s; log:\n{self.log()}"
                ) from None
            if line is None:
                self.lines.put(None)
                raise AssertionError(
                    f"worker exited ({self.proc.wait()}) before {prefix!r}; log:\n{self.log()}"
                )
            if line.startswith(prefix):
                return line

    def stop(self) -> int:
        """Close stdin (the worker's signal to stop) and wait for a clean exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.expect("STOPPED")
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit; log:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEADLINE)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        self._log.close()


def drop_schema(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def worker_modules() -> list[str]:
    return [m for m in sys.modules if m == "clientprocs" or m.startswith("clientprocs.")]


@dataclass
class World:
    url: str
    schema: str
    client: durably.Client
    effects: Path
    worker: Worker

    def effect_lines(self) -> list[str]:
        if not self.effects.exists():
            return []
        return self.effects.read_text().splitlines()

    def _query(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(self.schema)))
            return conn.execute(query, params).fetchall()

    def workflow_ids(self) -> set[str]:
        """Every stored workflow ID (what an enqueue writes)."""
        return {row[0] for row in self._query("SELECT id FROM workflows")}

    def messages(self, workflow_id: str) -> list[tuple[Any, ...]]:
        return self._query(
            "SELECT id, topic, value::text FROM messages WHERE workflow_id = %s ORDER BY id",
            workflow_id,
        )

    def watched(self, workflow_id: str) -> bool:
        """Whether a result() waiter asked to be notified of the workflow's outcome."""
        return bool(self._query("SELECT 1 FROM watchers WHERE workflow_id = %s", workflow_id))

    def parked(self, workflow_id: str) -> bool:
        """Whether the workflow is parked in a recv (released by its worker)."""
        return bool(
            self._query(
                "SELECT 1 FROM workflows WHERE id = %s AND status = 'PENDING' "
                "AND executor_id IS NULL AND wait_kind = 'recv'",
                workflow_id,
            )
        )

    def status(self, workflow_id: str) -> durably.Status:
        (info,) = self.client.list_workflows(ids=[workflow_id])
        return info.status


def uid(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


class Waiter:
    """``handle.result()`` called in a thread at once (its own timeout only bounds the
    thread: ``get`` decides)."""

    def __init__(self, handle: durably.WorkflowHandle[Any]) -> None:
        self.handle = handle
        self.box: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.box["value"] = self.handle.result(timeout=DEADLINE + 5)
        except BaseException as exc:
            self.box["error"] = exc

    def get(self, within: float = DEADLINE) -> dict[str, Any]:
        """{"value": ...} or {"error": ...}; AssertionError if result() was not woken
        within ``within`` s (this process's fallback poll is 30 s: a result that comes
        in time came by notification)."""
        self.thread.join(within)
        if self.thread.is_alive():
            raise AssertionError(
                f"result() of {self.handle.id} was not woken within {within} s "
                f"(status now {self.handle.status()})"
            )
        return self.box


def wait_parked(world: World, workflow_id: str) -> None:
    """Wait until the workflow is parked in its recv (released by its worker).

    A message sent while a workflow is parking can be stranded (see
    test_message_sent_while_the_receiver_parks_is_delivered); other tests send only to a
    parked receiver so that they test what they are about.
    """
    wait_until(lambda: world.parked(workflow_id), what=f"{workflow_id} parked in recv")


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def slow_fallback() -> Iterator[None]:
    """In-place waits poll the database every 30 s instead of every 1 s: anything that
    wakes within a 10 s deadline was woken by a notification."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(waits, "POLL_INTERVAL", 30.0)
        mp.setattr(engine_module, "POLL_INTERVAL", 30.0)
        yield


@pytest.fixture(autouse=True)
def no_workflow_code() -> Iterator[None]:
    """This process never imports the workers' code (and the library never does either)."""
    assert worker_modules() == []
    yield
    assert worker_modules() == []


@pytest.fixture(scope="module")
def world(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    schema = f"t_client_{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("client")
    client = durably.Client(pg_url, schema=schema)
    worker: Worker | None = None
    try:
        client.list_workflows()  # connects and creates the schema
        worker = Worker(pg_url, schema, tmp / "effects.txt", tmp / "worker.log")
        worker.expect("READY")
        yield World(pg_url, schema, client, tmp / "effects.txt", worker)
        assert worker.stop() == 0, worker.log()
    finally:
        try:
            if worker is not None:
                worker.kill()
            client.close()
        finally:
            drop_schema(pg_url, schema)


@pytest.fixture
def client(world: World) -> durably.Client:
    return world.client


# ------------------------------------------------------------------------ enqueue


def test_enqueue_by_name_runs_on_the_worker(world: World, client: durably.Client) -> None:
    name = uid("ann")
    handle = client.enqueue("jobs", "greet", name)
    assert isinstance(handle, durably.WorkflowHandle)
    assert handle.result(timeout=DEADLINE) == f"hello {name}"
    assert handle.status() == durably.Status.SUCCESS
    (info,) = client.list_workflows(ids=[handle.id])
    assert (info.name, info.status, info.output) == ("greet", "SUCCESS", f"hello {name}")
    assert info.inputs == {"args": [name], "kwargs": {}}
    steps = client.list_steps(handle.id)
    assert [(s.step, s.name, s.kind) for s in steps] == [(1, "greet.effect", "step")]
    assert world.effect_lines().count(f"greet {name}") == 1
    # a handle looked up later sees the same outcome
    assert client.handle(handle.id).result(timeout=DEADLINE) == f"hello {name}"


def test_same_id_twice_runs_once(world: World, client: durably.Client) -> None:
    name, wid = uid("once"), uid("id")
    first = client.enqueue("jobs", "greet", name, id=wid)
    second = client.enqueue("jobs", "greet", name, id=wid)
    assert first.id == second.id == wid
    assert second.result(timeout=DEADLINE) == first.result(timeout=DEADLINE) == f"hello {name}"
    third = client.enqueue("jobs", "greet", name, id=wid)  # after it finished
    assert third.id == wid
    assert third.result(timeout=DEADLINE) == f"hello {name}"
    assert [i.id for i in client.list_workflows(ids=[wid])] == [wid]
    assert len(client.list_steps(wid)) == 1
    assert world.effect_lines().count(f"greet {name}") == 1


def test_same_id_for_another_workflow_is_a_conflict(client: durably.Client) -> None:
    wid = uid("conflict")
    client.enqueue("jobs", "greet", "c", id=wid).result(timeout=DEADLINE)
    with pytest.raises(durably.WorkflowConflict):
        client.enqueue("jobs", "slow_steps", 1, id=wid)


def test_priority_orders_waiting_work(world: World, client: durably.Client) -> None:
    # "ranked" runs one workflow at a time; a blocker holds the slot while we enqueue.
    topic = uid("release")
    blocker = client.enqueue("ranked", "wait_msg", topic)
    wait_parked(world, blocker.id)
    low, high, none = uid("prio5"), uid("prio1"), uid("prio-none")
    handles = [
        client.enqueue("ranked", "greet", low, priority=5),
        client.enqueue("ranked", "greet", high, priority=1),
        client.enqueue("ranked", "greet", none),
    ]
    assert [world.status(h.id) for h in handles] == ["ENQUEUED"] * 3
    client.send(blocker.id, "go", topic=topic)
    assert blocker.result(timeout=DEADLINE) == ["got", "go"]
    for h in handles:
        h.result(timeout=DEADLINE)
    ran = [
        line for line in world.effect_lines() if line in {f"greet {n}" for n in (low, high, none)}
    ]
    # work without a priority first, then lower numbers first
    assert ran == [f"greet {none}", f"greet {high}", f"greet {low}"]


def test_dedup_key_refuses_a_second_active_workflow(world: World, client: durably.Client) -> None:
    key, topic = uid("dedup"), uid("release")
    first = client.enqueue("jobs", "wait_msg", topic, dedup_key=key)
    refused = uid("refused")
    with pytest.raises(durably.DuplicateWorkflow) as caught:
        client.enqueue("jobs", "greet", "dup", id=refused, dedup_key=key)
    assert caught.value.holder == first.id
    assert caught.value.dedup_key == key
    with pytest.raises(durably.WorkflowNotFound):
        client.handle(refused)
    wait_parked(world, first.id)
    client.send(first.id, "done", topic=topic)
    assert first.result(timeout=DEADLINE) == ["got", "done"]
    # the key is free again once its holder finished
    name = uid("after-dedup")
    assert client.enqueue("jobs", "greet", name, dedup_key=key).result(timeout=DEADLINE) == (
        f"hello {name}"
    )


def test_partition_key_limits_each_partition(world: World, client: durably.Client) -> None:
    # "parts" runs at most one workflow per partition key at once.
    topic, part_a, part_b = uid("release"), uid("pa"), uid("pb")
    blocker = client.enqueue("parts", "wait_msg", topic, partition_key=part_a)
    wait_parked(world, blocker.id)
    same = client.enqueue("parts", "greet", part_a, partition_key=part_a)
    other = client.enqueue("parts", "greet", part_b, partition_key=part_b)
    assert other.result(timeout=DEADLINE) == f"hello {part_b}"
    assert same.status() == durably.Status.ENQUEUED  # its partition is busy
    client.send(blocker.id, "go", topic=topic)
    assert blocker.result(timeout=DEADLINE) == ["got", "go"]
    assert same.result(timeout=DEADLINE) == f"hello {part_a}"


def test_delay_waits_delayed_then_runs(world: World, client: durably.Client) -> None:
    name = uid("later")
    handle = client.enqueue("jobs", "greet", name, delay=2.0)
    assert handle.status() == durably.Status.DELAYED
    assert handle.result(timeout=20) == f"hello {name}"
    assert world.effect_lines().count(f"greet {name}") == 1


def test_timeout_cancels_the_workflow(world: World, client: durably.Client) -> None:
    handle = client.enqueue("jobs", "wait_msg", uid("never-sent"), timeout=1.0)
    # result() is waiting when the timeout fires: the cancellation must wake it
    waiter = Waiter(handle)
    got = waiter.get()
    assert isinstance(got.get("error"), durably.WorkflowCancelled), got
    assert handle.status() == durably.Status.CANCELLED


def test_cancel_wakes_a_waiting_result(world: World, client: durably.Client) -> None:
    handle = client.enqueue("jobs", "wait_msg", uid("topic"))
    wait_parked(world, handle.id)
    waiter = Waiter(handle)
    wait_until(lambda: world.watched(handle.id), what="result() waiting")
    client.cancel(handle.id)
    got = waiter.get()
    assert isinstance(got.get("error"), durably.WorkflowCancelled), got


def test_a_name_no_worker_registered_waits_enqueued(world: World, client: durably.Client) -> None:
    orphan = client.enqueue("jobs", "nobody_registered_this", 1, x=2)
    assert orphan.status() == durably.Status.ENQUEUED
    # work enqueued after it on the same queue runs; it keeps waiting
    name = uid("behind")
    assert client.enqueue("jobs", "greet", name).result(timeout=DEADLINE) == f"hello {name}"
    (info,) = client.list_workflows(ids=[orphan.id])
    assert (info.name, info.status) == ("nobody_registered_this", "ENQUEUED")
    assert info.inputs == {"args": [1], "kwargs": {"x": 2}}
    assert orphan.id in [i.id for i in client.list_workflows(status="ENQUEUED")]


def test_enqueued_before_any_worker_ever_ran_runs_once_when_one_starts(
    pg_url: str,
    schema: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh schema: no worker ever ran, so no queue is declared. Enqueue needs no
    queue row; the work waits ENQUEUED (with a warning that no live worker serves it,
    once per name and queue) and the first worker that declares the queue runs it, once."""
    monkeypatch.setattr(served, "_warned", set())  # what other tests said, forgotten
    monkeypatch.setattr(served, "_checked", {})
    effects = tmp_path / "effects.txt"
    with (
        caplog.at_level(logging.WARNING, logger="durably"),
        durably.Client(pg_url, schema=schema) as client,
    ):
        handle = client.enqueue("jobs", "greet", "early bird")
        ranked = client.enqueue("ranked", "greet", "ranked bird", priority=2)
        client.enqueue("jobs", "greet", "second", id="second")
        listed = {(i.id, i.name, i.status) for i in client.list_workflows()}
        assert listed == {
            (handle.id, "greet", "ENQUEUED"),
            (ranked.id, "greet", "ENQUEUED"),
            ("second", "greet", "ENQUEUED"),
        }
    said = [r.getMessage() for r in caplog.records if "no live worker serves" in r.getMessage()]
    assert len(said) == 2, said
    assert "'greet' on queue 'jobs'" in said[0] and "'greet' on queue 'ranked'" in said[1]
    with durably.Client(pg_url, schema=schema) as client:
        worker = Worker(pg_url, schema, effects, tmp_path / "worker.log")
        try:
            worker.expect("READY")
            assert client.handle(handle.id).result(timeout=DEADLINE) == "hello early bird"
            assert client.handle(ranked.id).result(timeout=DEADLINE) == "hello ranked bird"
            assert client.handle("second").result(timeout=DEADLINE) == "hello second"
            assert worker.stop() == 0
        finally:
            worker.kill()
    assert sorted(effects.read_text().splitlines()) == [
        "greet early bird",
        "greet ranked bird",
        "greet second",
    ]


# ------------------------------------------------------------------------ messages, events, streams


def test_send_recv_round_trip(world: World, client: durably.Client) -> None:
    topic = uid("topic")
    handle = client.enqueue("jobs", "wait_msg", topic)
    wait_parked(world, handle.id)
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    client.send(handle.id, {"n": [1, 2], "when": when}, topic=topic)
    # encoded by the workers' codec: the datetime is stored as its ISO text
    assert handle.result(timeout=DEADLINE) == ["got", {"n": [1, 2], "when": when.isoformat()}]
    kinds = [s.kind for s in client.list_steps(handle.id)]
    assert kinds == ["step", "recv"]


def test_get_event_and_get_all_events(world: World, client: durably.Client) -> None:
    handle = client.enqueue("jobs", "events")
    # set after this call starts waiting: woken by the notification
    assert client.get_event(handle.id, "stage", timeout=DEADLINE) == "started"
    wait_parked(world, handle.id)
    client.send(handle.id, {"go": True}, topic="go")
    assert handle.result(timeout=DEADLINE) == "done"
    assert client.get_event(handle.id, "stage", timeout=0) == "finished"
    assert client.get_all_events(handle.id) == {"stage": "finished", "go": {"go": True}}
    assert client.get_event(handle.id, "never_set", timeout=0.2) is None
    # An unknown workflow may yet be started: None after the timeout, as DESIGN.md settles.
    assert client.get_event(uid("no-such-workflow"), "stage", timeout=0.2) is None


def test_message_sent_while_the_receiver_parks_is_delivered(
    world: World, client: durably.Client
) -> None:
    """Send as soon as the receiver announced it is about to wait: the message may arrive
    while the worker parks the workflow, and must still wake it."""

    def one(i: int) -> durably.WorkflowHandle[Any]:
        handle = client.enqueue("jobs", "events")
        assert client.get_event(handle.id, "stage", timeout=DEADLINE) == "started"
        client.send(handle.id, i, topic="go")  # no wait_parked here: that is the point
        return handle

    handles = [one(i) for i in range(RACE_ROUNDS)]
    deadline = time.monotonic() + DEADLINE
    for handle in handles:
        left = max(0.0, deadline - time.monotonic())
        with contextlib.suppress(durably.ResultTimeout):
            handle.result(timeout=left)
    stranded = [
        (i.id, i.status)
        for i in client.list_workflows(ids=[h.id for h in handles])
        if i.status != "SUCCESS"
    ]
    # A stranded one stays parked with its message unconsumed until its recv timeout (60 s).
    assert stranded == [], f"{len(stranded)} of {len(handles)} receivers never woke: {stranded}"
    got = [client.get_event(h.id, "go", timeout=0) for h in handles]
    assert got == list(range(RACE_ROUNDS))


def test_read_stream_in_order_until_closed(world: World, client: durably.Client) -> None:
    handle = client.enqueue("jobs", "streamer", 4)
    values = client.read_stream(handle.id, "nums")
    assert next(values) == 0  # written before the workflow waits for "more"
    wait_parked(world, handle.id)
    client.send(handle.id, None, topic="more")
    assert list(values) == [{"i": 1}, {"i": 2}, {"i": 3}]  # ends at close_stream
    assert handle.result(timeout=DEADLINE) == 4
    assert list(client.read_stream(handle.id, "nums", offset=2)) == [{"i": 2}, {"i": 3}]


# ------------------------------------------------------------------------ outcomes and values


def test_failed_workflow_reraises_the_rebuilt_error(client: durably.Client) -> None:
    handle = client.enqueue("jobs", "fail", "bad input 42")
    with pytest.raises(ValueError, match="bad input 42") as caught:
        handle.result(timeout=DEADLINE)
    assert type(caught.value) is ValueError
    assert handle.status() == durably.Status.ERROR
    (info,) = client.list_workflows(ids=[handle.id])
    assert type(info.error) is ValueError and str(info.error) == "bad input 42"


def test_error_of_a_type_only_the_worker_knows(client: durably.Client) -> None:
    """The error type lives in the workers' code: the client gets a RecordedError naming
    it, and must not import the workers' module to rebuild it."""
    handle = client.enqueue("jobs", "fail_custom", "no thanks")
    try:
        with pytest.raises(durably.DurablyError) as caught:
            handle.result(timeout=DEADLINE)
        imported = worker_modules()
        assert imported == [], f"decoding {caught.value!r} imported the workers code: {imported}"
        assert isinstance(caught.value, durably.RecordedError)
        assert caught.value.type_name == "clientprocs.worker.Rejected"
        assert caught.value.message == "no thanks"
    finally:
        for name in worker_modules():  # keep the other tests' check meaningful
            del sys.modules[name]


@dataclass
class Point:
    x: int
    y: int


def test_dataclass_and_datetime_arguments_round_trip_as_plain_json(
    client: durably.Client,
) -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    handle = client.enqueue("jobs", "describe", Point(1, 2), at)
    # The worker rebuilt its typed arguments from the hints; the client, with no hints,
    # gets plain JSON types back.
    assert handle.result(timeout=DEADLINE) == {
        "types": ["Point", "datetime"],
        "point": {"x": 10, "y": 20},
        "later": "2024-05-06T08:08:09+00:00",
    }
    (info,) = client.list_workflows(ids=[handle.id])
    assert info.inputs == {"args": [{"x": 1, "y": 2}, at.isoformat()], "kwargs": {}}


# ------------------------------------------------------------------------ steering


def test_cancel_and_resume_from_the_client(world: World, client: durably.Client) -> None:
    topic = uid("topic")
    handle = client.enqueue("jobs", "wait_msg", topic)
    wait_parked(world, handle.id)
    client.cancel(handle.id)
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=DEADLINE)
    assert handle.status() == durably.Status.CANCELLED
    resumed = client.resume(handle.id)
    assert resumed.id == handle.id
    wait_parked(world, handle.id)
    client.send(handle.id, "welcome back", topic=topic)
    assert resumed.result(timeout=DEADLINE) == ["got", "welcome back"]
    assert handle.status() == durably.Status.SUCCESS
    assert [s.kind for s in client.list_steps(handle.id)] == ["step", "recv"]


def test_fork_reruns_from_the_given_step(client: durably.Client) -> None:
    original = client.enqueue("jobs", "slow_steps", 3)
    first = original.result(timeout=DEADLINE)
    assert [t.split("-")[0] for t in first] == ["1", "2", "3"]
    fork = client.fork(original.id, from_step=2)
    assert fork.id != original.id
    second = fork.result(timeout=DEADLINE)
    assert second[0] == first[0]  # step 1 copied, not re-run
    assert second[1] != first[1] and second[2] != first[2]  # steps 2 and 3 ran again
    assert [t.split("-")[0] for t in second] == ["1", "2", "3"]
    (info,) = client.list_workflows(ids=[fork.id])
    assert (info.name, info.forked_from, info.status) == ("slow_steps", original.id, "SUCCESS")
    assert [s.output for s in client.list_steps(fork.id)] == second


# ------------------------------------------------------------------------ bad input


def test_a_queue_no_worker_declared_waits_enqueued(world: World, client: durably.Client) -> None:
    wid = uid("nowhere")
    waiting = client.enqueue("no_such_queue", "greet", "x", id=wid)
    assert waiting.status() == durably.Status.ENQUEUED
    # work on a declared queue enqueued after it runs; it keeps waiting
    name = uid("behind")
    assert client.enqueue("jobs", "greet", name).result(timeout=DEADLINE) == f"hello {name}"
    (info,) = client.list_workflows(ids=[wid])
    assert (info.name, info.status) == ("greet", "ENQUEUED")
    client.cancel(wid)


def test_unstorable_arguments_are_refused_before_any_write(
    world: World, client: durably.Client
) -> None:
    topic = uid("topic")
    target = client.enqueue("jobs", "wait_msg", topic)
    wait_parked(world, target.id)
    before = world.workflow_ids()
    with socket.socket() as sock:
        with pytest.raises(durably.ValueEncodingError):
            client.enqueue("jobs", "greet", sock, id=uid("sock"))
        with pytest.raises(durably.ValueEncodingError):
            client.enqueue("jobs", "greet", name=sock)
        with pytest.raises(durably.ValueEncodingError):
            client.send(target.id, {"s": sock}, topic=topic)
    assert world.workflow_ids() == before
    assert world.messages(target.id) == []
    client.send(target.id, "fine", topic=topic)
    assert target.result(timeout=DEADLINE) == ["got", "fine"]


def test_options_are_checked_by_the_same_rules(world: World, client: durably.Client) -> None:
    before = world.workflow_ids()
    with pytest.raises(durably.InvalidArgument, match="priority"):
        client.enqueue("jobs", "greet", "x", priority=3)  # "jobs" has no priorities
    bad_priorities: list[Any] = [0, -1, 2**31, True, 1.5]
    for bad in bad_priorities:
        with pytest.raises(durably.InvalidArgument):
            client.enqueue("ranked", "greet", "x", priority=bad)
    bad_options: list[dict[str, Any]] = [
        {"timeout": 0},
        {"timeout": -1.0},
        {"id": ""},
        {"dedup_key": ""},
        {"partition_key": ""},
    ]
    for kwargs in bad_options:
        with pytest.raises(durably.InvalidArgument):
            client.enqueue("jobs", "greet", "x", **kwargs)
    with pytest.raises(durably.InvalidArgument):
        client.enqueue("jobs", "", "x")
    with pytest.raises(durably.InvalidArgument):
        client.enqueue("jobs", "greet", "x", delay=datetime(2030, 1, 1))  # naive datetime
    assert world.workflow_ids() == before


def test_unknown_workflow_id_is_workflow_not_found(client: durably.Client) -> None:
    missing = uid("missing")
    with pytest.raises(durably.WorkflowNotFound, match=missing):
        client.handle(missing)
    with pytest.raises(durably.WorkflowNotFound):
        asyncio.run(client.handle_async(missing))
    with pytest.raises(durably.WorkflowNotFound):
        client.list_steps(missing)
    with pytest.raises(durably.WorkflowNotFound):
        client.cancel(missing)
    with pytest.raises(durably.WorkflowNotFound):
        client.resume(missing)
    with pytest.raises(durably.WorkflowNotFound):
        client.fork(missing, from_step=1)


# ------------------------------------------------------------------------ async twins and URL


def test_async_twins(world: World, client: durably.Client) -> None:
    async def scenario() -> None:
        name = uid("async")
        greeting = await client.enqueue_async("jobs", "greet", name)
        assert await greeting.result_async(timeout=DEADLINE) == f"hello {name}"
        assert await greeting.status_async() == durably.Status.SUCCESS

        events = await client.enqueue_async("jobs", "events")
        assert await client.get_event_async(events.id, "stage", timeout=DEADLINE) == "started"
        await asyncio.to_thread(wait_parked, world, events.id)
        await client.send_async(events.id, 7, topic="go")
        assert await events.result_async(timeout=DEADLINE) == "done"
        assert await client.get_all_events_async(events.id) == {"stage": "finished", "go": 7}

        streamer = await client.enqueue_async("jobs", "streamer", 3)
        values = client.read_stream_async(streamer.id, "nums")
        assert await anext(values) == 0
        await asyncio.to_thread(wait_parked, world, streamer.id)
        await client.send_async(streamer.id, None, topic="more")
        assert [v async for v in values] == [{"i": 1}, {"i": 2}]
        assert await streamer.result_async(timeout=DEADLINE) == 3
        steps = await client.list_steps_async(streamer.id)
        assert [s.kind for s in steps] == [
            "write_stream",
            "recv",
            *["write_stream"] * 2,
            "close_stream",
        ]

    asyncio.run(scenario())


def test_client_without_url_uses_durably_database_url(
    world: World, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLY_DATABASE_URL", pg_url)
    monkeypatch.chdir(tmp_path)  # an embedded server would be started here
    name = uid("env")
    with durably.Client(schema=world.schema) as client:
        handle = client.enqueue("jobs", "greet", name)
        assert handle.result(timeout=DEADLINE) == f"hello {name}"
    assert list(tmp_path.iterdir()) == []
    assert world.effect_lines().count(f"greet {name}") == 1
