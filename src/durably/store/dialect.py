"""The dialect seam: everything durably relies on that is particular to PostgreSQL.

The store speaks SQL through one ``Dialect``. PostgreSQL is its one implementation; a
PostgreSQL-compatible database (CockroachDB, say) would be one new subclass: its own
versions of the statements that differ (``overrides``), its own way to deliver
notifications when it has no LISTEN, and its own reading of driver errors. What such a
port needs is written down in docs/dialects.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

import psycopg

from durably.errors import ConfigurationError
from durably.store.notifications import Notifications
from durably.store.redaction import scrub

# SQLSTATEs that mean "run the transaction again" (serialization failure, deadlock).
_RETRYABLE = frozenset({"40001", "40P01"})
# The SQLSTATE class of "program limit exceeded" (an index row or a jsonb document too
# large, too many columns...): the input is at fault, and running it again cannot help.
_LIMIT_CLASS = "54"
# read_only_sql_transaction: the server no longer takes writes (a primary demoted or
# fenced read-only in a switchover, a standby reached without target_session_attrs).
_READ_ONLY = "25006"


class Dialect:
    """What differs between PostgreSQL-like databases, in one place."""

    name: ClassVar[str]
    # URL schemes this dialect serves.
    schemes: ClassVar[frozenset[str]]
    # Keyword arguments of every pooled connection.
    connect_kwargs: ClassVar[Mapping[str, Any]]
    # Named statements (as in the .sql files) this dialect writes differently.
    overrides: ClassVar[Mapping[str, str]] = {}
    # Features the engine may rely on: FOR UPDATE SKIP LOCKED claims, LISTEN/NOTIFY wake-ups,
    # transaction-scoped advisory locks (the migration lock, serialised queues).
    skip_locked: ClassVar[bool]
    listen_notify: ClassVar[bool]
    advisory_locks: ClassVar[bool]

    def listen(
        self, url: str, channels: Sequence[str], until: Callable[[], bool] | None = None
    ) -> AbstractAsyncContextManager[AsyncIterable[str]]:
        """A connection that yields the payloads sent on ``channels`` while it is open,
        until ``until()`` returns True (asked about once a second)."""
        raise NotImplementedError

    def connection_lost(self, exc: BaseException) -> bool:
        """Whether a driver error means the link broke (the outcome may be unknown), or
        that the server it reaches takes no writes: an outage either way, ridden out on
        fresh connections, which a multi-host URL with ``target_session_attrs=read-write``
        takes to whichever server is the primary now. A server limit exceeded is neither."""
        if self.limit_exceeded(exc):
            return False
        return isinstance(exc, psycopg.OperationalError) or self.read_only(exc)

    def limit_exceeded(self, exc: BaseException) -> bool:
        """Whether a driver error means the statement went past a limit of the server: bad
        input, rolled back, never an outage (psycopg files it as an OperationalError)."""
        return isinstance(exc, psycopg.Error) and (exc.sqlstate or "")[:2] == _LIMIT_CLASS

    def read_only(self, exc: BaseException) -> bool:
        """Whether a driver error means the server takes no writes (nothing committed)."""
        return isinstance(exc, psycopg.Error) and exc.sqlstate == _READ_ONLY

    def retryable(self, exc: BaseException) -> bool:
        """Whether a driver error means "run the same transaction again"."""
        return isinstance(exc, psycopg.Error) and exc.sqlstate in _RETRYABLE


class PostgreSQL(Dialect):
    """PostgreSQL 14 and later (the embedded server is PostgreSQL 18)."""

    name = "postgresql"
    schemes = frozenset({"postgresql", "postgres"})
    # Statements are rendered per schema and not prepared: a pooled connection serves
    # many schemas, and a prepared plan would outlive a migration.
    connect_kwargs: ClassVar[Mapping[str, Any]] = {"autocommit": True, "prepare_threshold": 0}
    skip_locked = True
    listen_notify = True
    advisory_locks = True

    def listen(
        self, url: str, channels: Sequence[str], until: Callable[[], bool] | None = None
    ) -> Notifications:
        return Notifications(url, channels, until)


DIALECTS: tuple[Dialect, ...] = (PostgreSQL(),)


def dialect_for(url: str) -> Dialect:
    """The dialect that serves ``url`` (a libpq URL or a key=value connection string);
    ConfigurationError, never showing the password, for a URL that is not one."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(
            "the database URL is empty; pass postgresql://user:password@host:port/database "
            "(or leave it out for the embedded PostgreSQL)"
        )
    scheme = url.partition("://")[0].lower() if "://" in url else "postgresql"
    for dialect in DIALECTS:
        if scheme in dialect.schemes:
            break
    else:
        raise ConfigurationError(
            f"durably runs on PostgreSQL; a database URL starting {scheme}:// is not "
            f"supported (use postgresql://user:password@host:port/database)"
        )
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        # The driver's message may quote the whole URL, password and all.
        raise ConfigurationError(
            f"the database URL is malformed: {scrub(str(exc).strip(), url)} "
            f"(expected postgresql://user:password@host:port/database; percent-encode "
            f"special characters in the user name and password)"
        ) from None
    return dialect
