"""Run a program of ``examples/`` as real processes on a test's schema: start it, wait
for what it printed or recorded, kill it with SIGKILL, start it again, and read its output."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from support import DEADLINE, ROOT, wait_until

EXAMPLES = ROOT / "examples"


@dataclass
class Example:
    """One example directory run against the test server, in its own working directory.

    Every process gets ``DURABLY_DATABASE_URL`` and ``DURABLY_SCHEMA`` (so the example's
    ``durably.App()`` uses the test's schema instead of the embedded PostgreSQL) and runs
    with ``workdir`` as its current directory, where examples keep their ledgers."""

    slug: str
    pg_url: str
    schema: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    _procs: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return EXAMPLES / self.slug

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DURABLY_DATABASE_URL=self.pg_url,
            DURABLY_SCHEMA=self.schema,
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(
                p for p in (str(self.directory), env.get("PYTHONPATH", "")) if p
            ),
        )
        env.update(self.extra_env)
        return env

    def start(self, *argv: str, log: str = "run") -> subprocess.Popen[bytes]:
        """``python ARGV`` (a script path relative to the example, or ``-m ...``) in the
        background; its stdout and stderr go to ``workdir/<log>.log``."""
        args = [str(self.directory / a) if a.endswith(".py") else a for a in argv]
        path = self.workdir / f"{log}.log"
        out = path.open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=self.workdir,
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self._procs.append((proc, path))
        return proc

    def output(self, log: str = "run") -> str:
        path = self.workdir / f"{log}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_output(self, text: str, log: str = "run", timeout: float = DEADLINE) -> None:
        """Wait until ``text`` appears in the log (a deadline, never a sleep)."""
        wait_until(lambda: text in self.output(log), timeout, f"{text!r} in {log}.log")

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and everything it started (its session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEADLINE)

    def finish(self, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> str:
        """Wait for the process to exit 0 and return its log; on a failure or the
        deadline, AssertionError with the log."""
        log = next(path for p, path in self._procs if p is proc)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            raise AssertionError(
                f"{self.slug} did not finish in {timeout} s:\n{log.read_text(errors='replace')}"
            ) from None
        text = log.read_text(errors="replace")
        assert code == 0, f"{self.slug} exited {code}:\n{text}"
        return text

    def run(self, *argv: str, log: str = "run", timeout: float = 90.0) -> str:
        """Run to completion and return the log."""
        return self.finish(self.start(*argv, log=log), timeout)

    def close(self) -> None:
        """Kill whatever is still running (a failed test's processes)."""
        for proc, _ in self._procs:
            if proc.poll() is None:
                self.kill(proc)


def lines(path: Path) -> list[str]:
    """The non-empty lines of a ledger file (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


def counted(path: Path) -> dict[str, int]:
    """How many times each line occurs in a ledger: the test's proof of once."""
    counts: dict[str, int] = {}
    for line in lines(path):
        counts[line] = counts.get(line, 0) + 1
    return counts


def wait_for_lines(path: Path, at_least: int, timeout: float = DEADLINE) -> list[str]:
    """Wait until the ledger has ``at_least`` lines; return them."""
    return wait_until(
        lambda: len(found) >= at_least and found if (found := lines(path)) else None,
        timeout,
        f"{at_least} lines in {path.name}",
    )


def rows(pg_url: str, schema: str, query: str) -> list[tuple[Any, ...]]:
    """The rows of ``query`` run with ``schema`` first on the search path."""
    with psycopg.connect(pg_url) as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
        return [tuple(row) for row in conn.execute(query).fetchall()]


__all__: Sequence[str] = ("Example", "counted", "lines", "rows", "wait_for_lines")
