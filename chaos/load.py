"""The driver's load: at a steady seeded rate it records and enqueues groups of workflows
through a ``durably.Client``, sends the driver's messages (with idempotency keys) and
reads the streams it started, recording what it read. Every call retries through
outages; what still fails is kept as a finding (``errors``)."""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import random
import threading
import time
from typing import Any

import durably
from chaos import shapes, tables
from chaos.config import RunConfig
from chaos.retry import TRANSIENT, Conn, GaveUp, retry

log = logging.getLogger("chaos.load")
CALL_DEADLINE = 60.0
READ_IDLE = 5.0  # a stream read stops after this long without a new entry, then resumes


class Load:
    def __init__(self, cfg: RunConfig, client: durably.Client, url: str) -> None:
        self.cfg = cfg
        self.client = client
        self.url = url
        self.rng = random.Random(f"{cfg.seed}:load")
        self.conn = Conn(url, "chaos-driver")
        self.groups: collections.Counter[str] = collections.Counter()
        self.errors: list[dict[str, Any]] = []
        self.unsent: list[shapes.Send] = []
        self.read_deadline = time.monotonic() + cfg.duration + cfg.drain_deadline + 60
        self._readers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="chaos-read")
        self._reads: list[concurrent.futures.Future[None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    # ------------------------------------------------------------------ pacing

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        began = time.monotonic()
        tick = 0
        k = 0
        while not self._stop.is_set():
            due = began + tick / self.cfg.rate
            if self._stop.wait(max(0.0, due - time.monotonic())):
                break
            # After a stall (a call waited out an outage) carry on from now: no burst.
            tick = max(tick + 1, int((time.monotonic() - began) * self.cfg.rate))
            k += 1
            shape = shapes.pick(self.rng, shapes.DRIVER_WEIGHTS)
            group = shapes.plan(shape, self.rng, f"d{k:05d}", True)
            try:
                self.submit(group)
            except Exception as exc:
                self._error("submit", group.shape, exc)

    # ------------------------------------------------------------------ calls

    def _error(self, what: str, target: str, exc: BaseException) -> None:
        log.warning("%s %s failed: %r", what, target, exc)
        self.errors.append({"what": what, "target": target, "error": repr(exc), "at": time.time()})

    def submit(self, group: shapes.Group) -> None:
        self.groups[group.shape] += 1
        for start in group.starts:
            tables.record_expected(self.conn, start, "driver")
            self.enqueue(start)
        for send in group.sends:
            self.send(send)
        for writer, values in group.reads:
            self._reads.append(self._readers.submit(self.read_stream, writer, values))

    def enqueue(self, start: shapes.Start) -> None:
        queue = start.queue
        assert queue is not None
        try:
            retry(
                lambda: self.client.enqueue(
                    queue, start.workflow, *start.args, id=start.workflow_id
                ),
                f"enqueue {start.workflow_id}",
                time.monotonic() + CALL_DEADLINE,
            )
        except Exception as exc:
            self._error("enqueue", start.workflow_id, exc)

    def send(self, send: shapes.Send) -> None:
        try:
            retry(
                lambda: self.client.send(
                    send.target, send.message, topic=shapes.TOPIC, idempotency_key=send.key
                ),
                f"send {send.key}",
                time.monotonic() + CALL_DEADLINE,
            )
        except Exception as exc:
            self.unsent.append(send)
            self._error("send", send.key, exc)

    def resubmit(self) -> int:
        """At the drain: enqueue again recorded starts whose workflow does not exist, and
        send again what could not be sent (same IDs and keys: nothing doubles)."""
        missing = tables.unstarted(self.conn, "driver")
        for start in missing:
            self.enqueue(start)
        unsent, self.unsent = self.unsent, []
        for send in unsent:
            self.send(send)
        return len(missing) + len(unsent)

    # ------------------------------------------------------------------ streams

    def read_stream(self, writer: str, values: list[int]) -> None:
        got: list[Any] = []
        note = None
        while time.monotonic() < self.read_deadline and len(got) < len(values):
            before = len(got)
            try:
                for value in self.client.read_stream(
                    writer, shapes.STREAM_KEY, offset=len(got), timeout=READ_IDLE
                ):
                    got.append(value)
            except durably.StreamTimeout:
                pass  # quiet for READ_IDLE s, still open: read on from where we are
            except TRANSIENT as exc:
                note = f"retried after {exc!r}"
            except Exception as exc:
                note = f"error {exc!r}"
            if len(got) == before:
                time.sleep(0.2)
        conn = Conn(self.url, "chaos-driver")
        try:
            tables.record_stream_read(conn, writer, got, len(got) >= len(values), note)
        except GaveUp as exc:
            self._error("record stream read", writer, exc)
        finally:
            conn.close()

    def await_reads(self, deadline: float) -> bool:
        """Wait for every stream read to end; False if some did not by ``deadline``."""
        self.read_deadline = min(self.read_deadline, deadline)
        _, pending = concurrent.futures.wait(
            self._reads, timeout=max(0.0, deadline - time.monotonic())
        )
        return not pending

    def close(self) -> None:
        self.read_deadline = 0.0
        self._readers.shutdown(wait=False, cancel_futures=True)
        self.conn.close()
