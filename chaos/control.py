"""The driver's switches for its workers, as one small JSON file in the run directory:
``lost_reply`` (drop replies now), ``starts`` (workers start workflows of their own),
``cron`` (the schedule runs). The driver rewrites it atomically; workers poll it."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

FILE = "control.json"
DEFAULTS: dict[str, bool] = {"lost_reply": False, "starts": True, "cron": True}


class Switches:
    """The driver's side: set switches (each change rewrites the file)."""

    def __init__(self, rundir: Path) -> None:
        self.path = rundir / FILE
        self.state = dict(DEFAULTS)
        self._write()

    def set(self, **changes: bool) -> None:
        self.state.update(changes)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.path)


class Reader:
    """A worker's side: the switches as last read (a thread re-reads on change)."""

    def __init__(self, rundir: Path, period: float = 0.1) -> None:
        self.path = rundir / FILE
        self.period = period
        self.state: dict[str, Any] = dict(DEFAULTS)
        self._mtime = 0
        self._stop = threading.Event()
        self.read()
        threading.Thread(target=self._poll, name="chaos-control", daemon=True).start()

    def read(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime != self._mtime:
                self.state = {**DEFAULTS, **json.loads(self.path.read_text())}
                self._mtime = mtime
        except (OSError, ValueError):
            pass  # missing or being replaced: keep the last state

    def _poll(self) -> None:
        while not self._stop.wait(self.period):
            self.read()

    def get(self, name: str) -> bool:
        return bool(self.state.get(name, DEFAULTS.get(name, False)))

    def close(self) -> None:
        self._stop.set()
