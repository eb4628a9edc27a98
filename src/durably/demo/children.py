"""The demo's worker processes as its parent sees them: started, relayed, awaited, killed."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

from durably.demo.workflows import STARTED

T = TypeVar("T")


class DemoFailed(Exception):
    """The demo could not do what it shows; the message says what went wrong."""


@dataclass
class Worker:
    """A worker child process whose output is relayed, prefixed, to ours."""

    number: int
    proc: subprocess.Popen[str]
    out: TextIO
    started_steps: list[int] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @classmethod
    def spawn(
        cls, number: int, command: Sequence[str], env: Mapping[str, str], out: TextIO
    ) -> Worker:
        """Start worker ``number`` and relay its output to ``out``."""
        proc = subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            # Our own Ctrl-C reaches only us; the demo stops the worker itself.
            start_new_session=True,
        )
        worker = cls(number, proc, out)
        worker.start_relay()
        return worker

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def prefix(self) -> str:
        return f"[worker {self.number} pid {self.pid}]"

    def start_relay(self) -> None:
        self._reader = threading.Thread(
            target=self._relay, daemon=True, name=f"durably-demo-relay-{self.number}"
        )
        self._reader.start()

    def _relay(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            match = STARTED.match(line)
            if match:
                self.started_steps.append(int(match.group(1)))
            print(f"{self.prefix} {line}", file=self.out, flush=True)

    def finish_relay(self, timeout: float = 5.0) -> None:
        if self._reader is not None:
            self._reader.join(timeout)

    def stop(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.finish_relay()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def poll(check: Callable[[], T | None], worker: Worker, *, deadline: float, waiting_for: str) -> T:
    """Call ``check`` until it returns a value; fail if ``worker`` exits or time runs out."""
    delay = 0.005
    while True:
        value = check()
        if value is not None:
            return value
        if worker.proc.poll() is not None:
            worker.finish_relay()
            raise DemoFailed(
                f"worker {worker.number} exited with status {worker.proc.returncode} while "
                f"waiting for {waiting_for}"
            )
        if time.monotonic() >= deadline:
            raise DemoFailed(f"timed out waiting for {waiting_for}")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
