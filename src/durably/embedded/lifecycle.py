"""The servers this process uses: :func:`acquire`, :meth:`EmbeddedServer.release`,
:func:`stop`, their reference counts, and the release of them all at exit."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from pathlib import Path
from types import TracebackType

from durably.embedded.cluster import stop_server
from durably.embedded.layout import DEFAULT_DIR, PG_SUBDIR
from durably.embedded.lock import locked
from durably.embedded.server import ensure_running
from durably.embedded.users import register_user, unregister_user
from durably.errors import DatabaseUnavailable

_log = logging.getLogger("durably.embedded")


class EmbeddedServer:
    """A running embedded server that this process uses; see :func:`acquire`."""

    data_dir: Path
    """The data directory given to :func:`acquire`, made absolute."""
    url: str
    """libpq URL of the database ``durably`` over the server's unix socket."""

    def __init__(self, data_dir: Path, url: str) -> None:
        self.data_dir = data_dir
        self.url = url
        self._refs = 0
        self._owner_pid = os.getpid()

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL data directory (``data_dir / "pg"``)."""
        return self.data_dir / PG_SUBDIR

    def release(self) -> None:
        """Stop using the server; the last user's release stops it. Extra calls do nothing."""
        with _table_lock:
            if self._owner_pid != os.getpid() or self._refs <= 0:
                return
            self._refs -= 1
            if self._refs > 0:
                return
            if _table.get(self.data_dir) is self:
                del _table[self.data_dir]
            try:
                with locked(self.data_dir):
                    remaining = unregister_user(self.data_dir)
                    if remaining:
                        _log.debug("%s stays up for pids %s", self.data_dir, remaining)
                    else:
                        stop_server(self.data_dir)
            except (OSError, DatabaseUnavailable) as e:
                _log.warning("releasing the embedded server in %s failed: %s", self.data_dir, e)

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"EmbeddedServer(data_dir={str(self.data_dir)!r}, refs={self._refs})"


_table: dict[Path, EmbeddedServer] = {}
_table_lock = threading.RLock()
_atexit_registered = False


def _after_fork_in_child() -> None:
    global _table_lock
    _table.clear()
    _table_lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _release_all_at_exit() -> None:
    with _table_lock:
        servers = list(_table.values())
    for server in servers:
        with _table_lock:
            server._refs = min(server._refs, 1)
        server.release()


def acquire(data_dir: str | os.PathLike[str] = DEFAULT_DIR) -> EmbeddedServer:
    """Start (initialising if needed) or reuse the embedded server in ``data_dir``.

    Registers this process as a user of the server; call :meth:`EmbeddedServer.release`
    once per call when done. ``data_dir``'s parent must exist; ``data_dir`` is created.
    Raises :class:`~durably.errors.DatabaseUnavailable` if the server cannot be started.
    """
    global _atexit_registered
    path = _absolute(data_dir)
    with _table_lock:
        _prepare_data_dir(path)
        with locked(path):
            url = ensure_running(path)
            register_user(path)
        server = _table.get(path)
        if server is None:
            server = _table[path] = EmbeddedServer(path, url)
        else:
            server.url = url
        server._refs += 1
        if not _atexit_registered:
            atexit.register(_release_all_at_exit)
            _atexit_registered = True
        return server


def stop(data_dir: str | os.PathLike[str] = DEFAULT_DIR) -> bool:
    """Stop the server in ``data_dir`` now, whoever uses it. True if it was running.

    Users stay registered: a live user's later release (or the next acquire) behaves as
    usual, and the next :func:`acquire` starts the server again.
    """
    path = _absolute(data_dir)
    if not (path / PG_SUBDIR / "PG_VERSION").is_file():
        return False
    with _table_lock, locked(path):
        return stop_server(path)


def _absolute(data_dir: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(data_dir)).expanduser().resolve()


def _prepare_data_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise DatabaseUnavailable(
            f"cannot use {path} as the embedded database directory: it is not a directory"
        )
    if not path.parent.is_dir():
        raise DatabaseUnavailable(
            f"cannot create the embedded database directory {path}: "
            f"its parent {path.parent} does not exist"
        )
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise DatabaseUnavailable(
            f"cannot create the embedded database directory {path}: {e.strerror}"
        ) from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise DatabaseUnavailable(
            f"cannot use {path} as the embedded database directory: it is not writable"
        )
