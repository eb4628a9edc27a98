"""The other databases this process's transaction steps write to, opened on first use.

Each gets one thread-safe pool (``store.app_database.AppDatabase``, which also creates
durably's checkpoint table there) and, per event loop, one async pool; all are closed
when the engine shuts down.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

from durably.store.app_database import AppDatabase, AppStatements, app_statements
from durably.store.database import AsyncDatabase


class OtherDatabases:
    """Connections to the databases named by ``@app.transaction(database=...)``."""

    def __init__(self, schema: str) -> None:
        self._schema = schema
        self._lock = threading.Lock()
        self._statements: dict[str, AppStatements] = {}
        self._sync: dict[str, AppDatabase] = {}
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, AsyncDatabase]
        ] = weakref.WeakKeyDictionary()

    def statements(self, url: str) -> AppStatements:
        found = self._statements.get(url)
        if found is None:
            found = self._statements[url] = app_statements(url, self._schema)
        return found

    def sync(self, url: str) -> AppDatabase:
        """The pool of ``url`` (its checkpoint table created on first use)."""
        with self._lock:
            db = self._sync.get(url)
            if db is None:
                db = self._sync[url] = AppDatabase(url, self._schema)
            return db

    async def for_loop(self, url: str) -> AsyncDatabase:
        """The async pool of ``url`` for the running event loop."""
        # The table must exist first: the sync pool creates it (once, in a thread).
        sync = self._sync.get(url)
        if sync is None:
            sync = await asyncio.to_thread(self.sync, url)
        pools = self._async.setdefault(asyncio.get_running_loop(), {})
        adb = pools.get(url)
        if adb is None:
            adb = pools[url] = AsyncDatabase(url, self._schema, outage=sync.outage)
            await adb.open()
        return adb

    async def close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the async pools of ``loop`` (run on that loop)."""
        for adb in self._async.pop(loop, {}).values():
            await adb.close()

    def close(self) -> None:
        with self._lock:
            pools, self._sync = list(self._sync.values()), {}
        for db in pools:
            db.close()
