"""Helpers shared by the tests and their worker processes (``tests/`` is on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from psycopg import sql

T = TypeVar("T")

DEADLINE = 30.0
ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], T], timeout: float = DEADLINE, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy and return that value;
    AssertionError naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(delay)
        delay = min(0.05, delay * 1.5)


@dataclass
class Cli:
    """The ``durably`` command run as a real process on one test schema."""

    pg_url: str
    schema: str

    def run(
        self, *args: str, database: bool = True, path: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """``durably ARGS`` (with this schema's database options unless ``database`` is
        False), ``path`` put first on its PYTHONPATH."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (*path, str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
        )
        env.pop("DURABLY_DATABASE_URL", None)
        env.pop("DURABLY_DASHBOARD_TOKEN", None)
        # A table is as wide as the terminal; without one, a fixed width (pytest-xdist's
        # workers would otherwise pass on whatever COLUMNS the parent had).
        env["COLUMNS"] = "200"
        where = ["--database-url", self.pg_url, "--schema", self.schema] if database else []
        return subprocess.run(
            [sys.executable, "-m", "durably.cli", *args, *where],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def refused(self, *args: str, code: int = 1, database: bool = True) -> str:
        """Run a command that must fail: its one line of stderr."""
        done = self.run(*args, database=database)
        assert done.returncode == code, (done.stdout, done.stderr)
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        return done.stderr.strip()


def contents(db: Any) -> dict[str, list[Any]]:
    """Every row of the tables a refused call could write (not the executors' heartbeats):
    equal before and after, the call changed nothing."""
    found = {}
    for table in ("workflows", "operations", "messages", "events", "streams", "schedules"):
        query = sql.SQL("SELECT to_jsonb(t)::text FROM {} t ORDER BY 1").format(
            sql.Identifier(table)
        )
        found[table] = [row[0] for row in db.execute(query)]
    return found
