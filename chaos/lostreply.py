"""Lost replies, in the workers: a hook for ``durably.store.faults`` that, while the driver
has the switch on, drops the reply of a committed write with a seeded probability.

Write statements are told from reads by their SQL (an INSERT, UPDATE, DELETE or
pg_notify in the named block of durably's .sql files), so new statements are covered
without a list to maintain. A statement kind that has not lost a reply yet in this process
loses its next reply, so that every kind the workload runs is hit over a run. Each drop
is appended to ``lost-<name>.jsonl``; the counts of writes seen, to ``seen-<name>-<n>.json``
(the name of a worker is its slot; the driver, whose Client enqueues and sends, is
``driver``).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from chaos.control import Reader

FRESH_P = 1.0  # a kind that has not lost a reply yet in this process loses its next one
_MIGRATION = {"migrate_lock", "create_schema", "create_migrations", "record_migration"}
_LOCKING = re.compile(r"\bFOR\s+(NO\s+KEY\s+)?(UPDATE|SHARE)\b", re.IGNORECASE)
_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE)\b|pg_notify", re.IGNORECASE)


@functools.cache
def write_names() -> frozenset[str]:
    """The names of durably's statements that write."""
    from durably.store import sqlfile

    names = set()
    for name, text in sqlfile._blocks().items():
        code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
        if name not in _MIGRATION and _WRITE.search(_LOCKING.sub("", code)):
            names.add(name)
    return frozenset(names)


class LostReplies:
    """The hook (callable): True means "drop this reply"."""

    def __init__(
        self, rundir: Path, name: str, incarnation: int, seed: int, p: float, switches: Reader
    ) -> None:
        self.p = p
        self.switches = switches
        self.rng = random.Random(f"{seed}:{name}:{incarnation}:lost")
        self.seen: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.writes = write_names()
        self.counts_path = rundir / f"seen-{name}-{incarnation}.json"
        self.log = open(rundir / f"lost-{name}.jsonl", "a", buffering=1)  # noqa: SIM115

    def __call__(self, names: Sequence[str]) -> bool:
        writes = sorted({n for n in names if n in self.writes})
        if not writes:
            return False
        with self.lock:
            self.seen.update(writes)
            if not self.switches.get("lost_reply"):
                return False
            fresh = any(self.dropped[n] == 0 for n in writes)
            if self.rng.random() >= (max(self.p, FRESH_P) if fresh else self.p):
                return False
            self.dropped.update(writes)
            line = {"t": time.time(), "pid": os.getpid(), "names": list(names)}
            self.log.write(json.dumps(line) + "\n")
        return True

    def dump(self) -> None:
        """Write the counts of writes seen and replies dropped (atomically)."""
        with self.lock:
            data = {"seen": dict(self.seen), "dropped": dict(self.dropped)}
        tmp = self.counts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.counts_path)


def gather(rundir: Path) -> dict[str, dict[str, int]]:
    """Per statement name over the whole run: writes seen and replies dropped."""
    seen: collections.Counter[str] = collections.Counter()
    dropped: collections.Counter[str] = collections.Counter()
    for path in rundir.glob("seen-*.json"):
        try:
            seen.update(json.loads(path.read_text())["seen"])
        except (OSError, ValueError, KeyError):
            continue
    for path in rundir.glob("lost-*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                dropped.update(set(json.loads(line)["names"]) & write_names())
            except (ValueError, KeyError):
                continue
    names = sorted(set(seen) | set(dropped))
    return {n: {"seen": seen[n], "dropped": dropped[n]} for n in names}


def drop_times(rundir: Path) -> list[float]:
    """When each reply was dropped (worker clock, seconds since the epoch)."""
    times = []
    for path in rundir.glob("lost-*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                times.append(float(json.loads(line)["t"]))
            except (ValueError, KeyError):
                continue
    return sorted(times)
