"""The schema's notifications: what their payloads mean, and one connection to wait on.

Channel names are defined by ``Statements.channel``; payloads are "<kind>:<subject>",
the kinds defined here once (the .sql files receive them as literals). Driver errors
leave as ``ConnectionLost``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql

from durably.errors import ConnectionLost
from durably.store.redaction import scrub

_CONNECT_TIMEOUT = 5


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


class Notifications:
    """``async with Notifications(url, channel) as n: async for payload in n: ...``"""

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = channel
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> Notifications:
        try:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
            )
            await self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
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
        try:
            async for notice in self._conn.notifies():
                yield notice.payload
        except psycopg.OperationalError as exc:
            raise ConnectionLost(
                f"the notification connection broke: {scrub(str(exc), self._url)}"
            ) from exc
