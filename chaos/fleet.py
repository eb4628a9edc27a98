"""The worker processes of a run: start, kill, stop, continue, restart and shut down.

Each worker slot runs one process at a time (an incarnation); a restart keeps the slot's
executor ID or takes a new one. Workers die with the driver (``PR_SET_PDEATHSIG``), so
an interrupted run leaves no process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent  # the repository: workers run from there
READY_DEADLINE = 120.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class WorkerFailed(RuntimeError):
    """A worker did not come up."""


@dataclass
class Slot:
    index: int
    incarnation: int = 0
    executor_id: str = ""
    proc: subprocess.Popen[bytes] | None = None
    stopped_since: float | None = None  # SIGSTOPped at this time.time(), not yet continued
    expected_exit: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Fleet:
    def __init__(self, cfg: RunConfig, url: str, rundir: Path) -> None:
        self.cfg = cfg
        self.url = url
        self.rundir = rundir
        self.slots = [Slot(i, executor_id=f"chaos-w{i}-0") for i in range(cfg.workers)]
        self.crashes: list[dict[str, Any]] = []  # exits nobody asked for

    def _spawn(self, slot: Slot) -> None:
        config = {
            "url": self.url, "rundir": str(self.rundir), "slot": slot.index,
            "incarnation": slot.incarnation, "executor_id": slot.executor_id,
            "seed": self.cfg.seed, "worker_rate": self.cfg.worker_rate,
            "lost_reply_p": self.cfg.lost_reply_p,
        }  # fmt: skip
        env = dict(os.environ)
        env["PGAPPNAME"] = f"chaos-worker-{slot.index}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(self.rundir / f"worker-{slot.index}.log", "ab") as out:
            slot.proc = subprocess.Popen(
                [sys.executable, "-m", "chaos.worker", json.dumps(config)],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                preexec_fn=_die_with_parent,  # only a prctl call
            )  # fmt: skip
        slot.stopped_since = None
        slot.expected_exit = False
        slot.history.append(
            {"incarnation": slot.incarnation, "pid": slot.pid, "executor_id": slot.executor_id}
        )

    def _await_ready(self, slot: Slot) -> None:
        ready = self.rundir / f"ready-{slot.index}-{slot.incarnation}"
        deadline = time.monotonic() + READY_DEADLINE
        while not ready.exists():
            if not slot.alive():
                raise WorkerFailed(f"worker {slot.index} exited: {self.log_tail(slot.index)}")
            if time.monotonic() > deadline:
                raise WorkerFailed(f"worker {slot.index} not ready: {self.log_tail(slot.index)}")
            time.sleep(0.05)

    def start_all(self) -> None:
        for slot in self.slots:
            self._spawn(slot)
        for slot in self.slots:
            self._await_ready(slot)

    def kill(self, index: int) -> float:
        """SIGKILL; returns when the process is gone (its time)."""
        slot = self.slots[index]
        assert slot.proc is not None
        slot.expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(slot.proc.pid, signal.SIGKILL)
        slot.proc.wait(timeout=30)
        slot.stopped_since = None
        return time.time()

    def restart(self, index: int, same_id: bool, wait: bool = True) -> None:
        slot = self.slots[index]
        slot.incarnation += 1
        if not same_id:
            slot.executor_id = f"chaos-w{index}-{slot.incarnation}"
        self._spawn(slot)
        if wait:
            self._await_ready(slot)

    def restart_graceful(self, index: int, grace: float = 15.0) -> None:
        """SIGTERM (the worker shuts its App down), then start it again, same ID."""
        slot = self.slots[index]
        if slot.proc is not None and slot.alive():
            slot.expected_exit = True
            os.kill(slot.proc.pid, signal.SIGTERM)
            try:
                slot.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait(timeout=10)
        self.restart(index, same_id=True)

    def stop(self, index: int) -> float:
        slot = self.slots[index]
        assert slot.proc is not None
        os.kill(slot.proc.pid, signal.SIGSTOP)
        slot.stopped_since = time.time()
        return slot.stopped_since

    def cont(self, index: int) -> float:
        slot = self.slots[index]
        if slot.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.proc.pid, signal.SIGCONT)
        slot.stopped_since = None
        return time.time()

    def running(self) -> list[int]:
        """Slots whose process runs and is not stopped."""
        return [s.index for s in self.slots if s.alive() and s.stopped_since is None]

    def revive(self) -> list[int]:
        """Continue stopped workers; restart (same ID) any that exited unasked. Returns
        the slots restarted."""
        restarted = []
        for slot in self.slots:
            if slot.stopped_since is not None:
                self.cont(slot.index)
            if not slot.alive():
                if slot.proc is not None and not slot.expected_exit:
                    self.crashes.append(
                        {"slot": slot.index, "pid": slot.pid, "returncode": slot.proc.returncode,
                         "at": time.time(), "log": self.log_tail(slot.index, 1500)}
                    )  # fmt: skip
                self.restart(slot.index, same_id=True, wait=False)
                restarted.append(slot.index)
        for index in restarted:
            self._await_ready(self.slots[index])
        return restarted

    def shutdown(self, grace: float = 15.0) -> None:
        """SIGCONT and SIGTERM everything; SIGKILL what is left after ``grace``."""
        for slot in self.slots:
            if slot.alive():
                slot.expected_exit = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
                    os.kill(slot.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + grace
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.kill()
                slot.proc.wait(timeout=10)

    def pids(self) -> dict[int, int]:
        """Every pid any incarnation had, by slot."""
        return {h["pid"]: s.index for s in self.slots for h in s.history}

    def log_tail(self, index: int, size: int = 3000) -> str:
        try:
            return (self.rundir / f"worker-{index}.log").read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"
