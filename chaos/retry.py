"""Database access that survives outages: every call is retried until it succeeds or its
deadline passes (then :class:`GaveUp` says what could not be done and why)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from chaos.config import DB_DEADLINE
from durably.errors import DatabaseUnavailable

T = TypeVar("T")

# Errors that mean "the database is unreachable or restarting", worth another try.
TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    DatabaseUnavailable,
)


class GaveUp(RuntimeError):
    """A retried call did not succeed before its deadline."""


def retry(
    fn: Callable[[], T],
    what: str,
    deadline: float | None = None,
    transient: tuple[type[BaseException], ...] = TRANSIENT,
    stop: Callable[[], bool] | None = None,
) -> T:
    """Call ``fn`` until it returns; ``deadline`` is a ``time.monotonic()`` instant
    (default: DB_DEADLINE from now). ``stop`` may end the retries early."""
    end = deadline if deadline is not None else time.monotonic() + DB_DEADLINE
    pause = 0.05
    while True:
        try:
            return fn()
        except transient as exc:
            if time.monotonic() + pause > end or (stop is not None and stop()):
                raise GaveUp(f"{what}: gave up after retries ({exc})") from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


class Conn:
    """One autocommit connection, reconnected as needed; ``query`` and ``execute`` retry
    through outages. Not shared between threads."""

    def __init__(self, url: str, application_name: str) -> None:
        self.url = url
        self.application_name = application_name
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = None
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=3,
                application_name=self.application_name,
            )
            self._conn = conn
        return conn

    def _run(self, sql: str, params: Sequence[Any] | dict[str, Any] | None) -> Any:
        try:
            cur = self._connection().execute(sql, params)
            return cur.fetchall() if cur.description is not None else cur.rowcount
        except TRANSIENT:
            self.close()
            raise

    def query(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> list[Any]:
        """Rows of a read (retried)."""
        rows: list[Any] = retry(lambda: self._run(sql, params), sql[:60], deadline)
        return rows

    def execute(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> Any:
        """Run an idempotent write (retried: it may run again after an unknown outcome)."""
        return retry(lambda: self._run(sql, params), sql[:60], deadline)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                conn.close()
