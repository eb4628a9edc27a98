"""The schema's notifications: what their payloads mean, and one connection to wait on.

Channel names are defined by ``Statements.channel``; payloads are "<kind>:<subject>",
the kinds defined here once (the .sql files receive them as literals). Driver errors
leave as ``ConnectionLost``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql

from durably.errors import ConnectionLost
from durably.store.redaction import scrub

_CONNECT_TIMEOUT = 5
# How often a quiet connection asks its ``until`` whether to stop listening, in seconds.
_RECHECK = 1.0


class Kind(StrEnum):
    """What a notification says; its subject follows the colon."""

    QUEUED = "q"  # work is ready on the queue named by the subject
    DELAYED = "t"  # "<epoch seconds>:<queue>": delayed work of a queue comes due then
    MESSAGE = "m"  # a message was sent to the workflow
    EVENT = "e"  # the workflow set an event
    STREAM = "s"  # the workflow wrote to a stream
    FINISHED = "d"  # the workflow finished
    CANCELLED = "c"  # the workflow was cancelled
    RESUMED = "w"  # the workflow was resumed or forked: a new epoch owns it

    def key(self, subject: str) -> str:
        """The payload of this kind about ``subject`` (also the local waiters' key)."""
        return f"{self.value}:{subject}"

    def literal(self) -> str:
        """The payload's prefix, as SQL text for the .sql files."""
        return f"'{self.value}:'"


def channel_for(schema: str) -> str:
    """The notification channel of ``schema``: short and fixed-length whatever its name
    (``Statements.channel``; the SQL API functions of migration 0007 have it rendered in
    as ``{channel}``)."""
    return "durably_" + hashlib.sha256(schema.encode()).hexdigest()[:16]


def queue_channel(channel: str, queue: str) -> str:
    """The channel on which work put on ``queue`` is announced (the kinds QUEUED and
    DELAYED): only the processes serving the queue listen to it, so enqueues do not wake
    every listener of the schema. The statements name it with ``fragment_queue_channel``
    (store/queries.sql), which computes the same; tests/test_queue_channels.py holds the
    two to each other."""
    return f"{channel}_{hashlib.sha256(queue.encode()).hexdigest()[:16]}"


class Notifications:
    """``async with Notifications(url, channels) as n: async for payload in n: ...``

    The iteration ends when ``until()`` (asked about once a second) returns True: the
    caller then listens again on a new connection, which a multi-host URL takes to the
    primary of the moment (after a switchover, the old one may still be up, read-only,
    with this connection open on it and nothing more to say)."""

    def __init__(
        self, url: str, channels: Sequence[str], until: Callable[[], bool] | None = None
    ) -> None:
        self._url = url
        self._channels = tuple(channels)
        self._until = until
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> Notifications:
        try:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
            )
            listen = [sql.SQL("LISTEN {}").format(sql.Identifier(c)) for c in self._channels]
            await self._conn.execute(sql.SQL("; ").join(listen))
        except psycopg.OperationalError as exc:
            await self.__aexit__()
            raise ConnectionLost(
                f"cannot listen for notifications: {scrub(str(exc), self._url)}"
            ) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def __aiter__(self) -> AsyncIterator[str]:
        assert self._conn is not None, "use Notifications as an async context manager"
        until = self._until
        timeout = None if until is None else _RECHECK
        try:
            while until is None or not until():
                async for notice in self._conn.notifies(timeout=timeout):
                    yield notice.payload
        except psycopg.OperationalError as exc:
            raise ConnectionLost(
                f"the notification connection broke: {scrub(str(exc), self._url)}"
            ) from exc
