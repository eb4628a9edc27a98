"""Running worker processes and waiting for events without sleeping blindly."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

WORKER = Path(__file__).resolve().parent / "worker.py"
ROOT = WORKER.parent.parent.parent  # the repository: workers run from there
DEADLINE = 20.0


def effect_lines(path: Path) -> list[tuple[str, int]]:
    """The (label, pid) lines the step bodies appended to the effects file."""
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        label, pid = line.split()
        lines.append((label, int(pid)))
    return lines


def effect_counts(path: Path) -> collections.Counter[str]:
    """How many times each label ran, over all processes."""
    return collections.Counter(label for label, _ in effect_lines(path))


class Worker:
    """One worker process (tests/procs/worker.py); its stdout is read by a thread."""

    def __init__(self, config: dict[str, Any], log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    self.events.put({"event": "garbage", "line": line})
        self.events.put(None)  # end of output: the process exited

    def stderr(self) -> str:
        """The worker's log so far (for failure messages)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def expect(self, event: str, timeout: float = DEADLINE, **match: Any) -> dict[str, Any]:
        """Wait for the next output line of kind ``event`` whose fields equal ``match``."""
        deadline = time.monotonic() + timeout
        for old in self.seen:
            if old.get("event") == event and all(old.get(k) == v for k, v in match.items()):
                self.seen.remove(old)
                return old
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if item is None:
                self.events.put(None)
                raise AssertionError(
                    f"worker {self.pid} exited (code {self.proc.wait()}) before printing "
                    f"{event} {match}; log:\n{self.stderr()}"
                )
            if item.get("event") == event and all(item.get(k) == v for k, v in match.items()):
                return item
            self.seen.append(item)
        raise AssertionError(
            f"worker {self.pid} printed no {event} {match} within {timeout} s "
            f"(other output: {self.seen}); log:\n{self.stderr()}"
        )

    def ready_or_exit(self, timeout: float = DEADLINE) -> bool:
        """Wait until the worker launched (True) or exited before that (False)."""
        try:
            self.expect("ready", timeout)
        except AssertionError:
            if self.proc.poll() is None:
                raise
            return False
        return True

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and reap it."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.pid} still running after {timeout} s; log:\n{self.stderr()}"
            ) from None

    def close(self) -> None:
        """Make sure the process is gone (resumed first if it was stopped)."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=DEADLINE)
        finally:
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            self._log.close()


class Workers:
    """Starts workers for one test and kills every one still running at the end."""

    def __init__(self, url: str, schema: str, tmp: Path) -> None:
        self.url = url
        self.schema = schema
        self.tmp = tmp
        self.effects = tmp / "effects.txt"
        self.gates = tmp / "gates"
        self.gates.mkdir(exist_ok=True)
        self.started: list[Worker] = []

    def spawn(
        self,
        executor_id: str,
        *,
        lease: float = 1.0,
        hold: Iterable[str] = (),
        max_recovery_attempts: int = 2,
        ready: bool = True,
    ) -> Worker:
        """Start a worker; with ``ready``, wait until it launched (recovery done)."""
        config = {
            "url": self.url,
            "schema": self.schema,
            "executor_id": executor_id,
            "lease": lease,
            "effects": str(self.effects),
            "gate_dir": str(self.gates),
            "hold": sorted(hold),
            "max_recovery_attempts": max_recovery_attempts,
        }
        worker = Worker(config, self.tmp / f"worker-{len(self.started)}.log")
        self.started.append(worker)
        if ready:
            worker.expect("ready")
        return worker

    def open_gate(self, label: str) -> None:
        (self.gates / label).touch()

    def lines(self) -> list[tuple[str, int]]:
        return effect_lines(self.effects)

    def counts(self) -> collections.Counter[str]:
        return effect_counts(self.effects)

    def close(self) -> None:
        errors = []
        for worker in self.started:
            try:
                worker.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
