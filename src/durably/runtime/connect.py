"""Where the database is: an explicit URL, ``$DURABLY_DATABASE_URL``, or the embedded
PostgreSQL of a local data directory (started on first use, shared by local processes)."""

from __future__ import annotations

import os
from collections.abc import Callable

from durably.store.database import Database


def open_database(
    url: str | None,
    data_dir: str | os.PathLike[str] | None,
    schema: str,
    migrate: bool = True,
) -> tuple[Database, Callable[[], None] | None]:
    """Connect to (and migrate, unless told not to) the app's schema; also returns how to
    release an embedded server when this process is done with it."""
    url = url or os.environ.get("DURABLY_DATABASE_URL") or None
    release: Callable[[], None] | None = None
    if url is None:
        from durably import embedded

        server = embedded.acquire(data_dir or embedded.DEFAULT_DIR)
        url, release = server.url, server.release
    try:
        return Database(url, schema, migrate=migrate), release
    except BaseException:
        if release is not None:
            release()
        raise
