"""Making sure a data directory's server runs and has the database, and reaching it over its
unix socket."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from pathlib import Path
from urllib.parse import quote

from durably.embedded.binaries import make_install_usable
from durably.embedded.cluster import START_TIMEOUT, initdb, log_tail, start, stop_server
from durably.embedded.layout import DATABASE, LOG_FILE, PG_SUBDIR, SUPERUSER
from durably.embedded.processes import running_postmaster
from durably.embedded.run_as import RunAs, chown, make_traversable, server_user
from durably.embedded.settings import write_config
from durably.embedded.users import live_users
from durably.errors import DatabaseUnavailable
from durably.store.admin import ensure_database, reachable

_SOCKET_NAME = ".s.PGSQL.5432"  # the server's default port names the socket file
_MAX_SOCKET_PATH = 107  # sizeof(sun_path) is 108 on Linux, one byte for the NUL


def _socket_dir(path: Path) -> Path:
    """pg/ itself when the socket path fits in AF_UNIX, else a short dir named by a hash."""
    pgdir = path / PG_SUBDIR
    if len(os.fsencode(pgdir / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
        return pgdir
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    # /tmp, not $TMPDIR, which can itself be too long; made 0700 and checked below.
    return Path("/tmp") / f"durably-{digest}"  # noqa: S108


def _prepare_socket_dir(socket_dir: Path, pgdir: Path, run_as: RunAs | None) -> None:
    if socket_dir == pgdir:
        return
    with contextlib.suppress(FileExistsError):
        os.mkdir(socket_dir, 0o700)
    st = os.lstat(socket_dir)
    uid = run_as.uid if run_as is not None else os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        raise DatabaseUnavailable(f"socket directory {socket_dir} exists and is not a directory")
    if st.st_uid != uid:
        if st.st_uid == os.geteuid() == 0 and run_as is not None:
            chown(socket_dir, run_as)
        else:
            raise DatabaseUnavailable(
                f"socket directory {socket_dir} belongs to uid {st.st_uid}, not to the "
                f"server's user (uid {uid}); remove it"
            )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(socket_dir, 0o700)


def _url(socket_dir: Path, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(socket_dir), safe='')}"


def _wait_until_connectable(path: Path, socket_dir: Path) -> bool:
    """Wait for a live postmaster to accept connections. False if it went away."""
    pgdir = path / PG_SUBDIR
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if reachable(_url(socket_dir, "postgres")):
            return True
        if running_postmaster(pgdir) is None:
            return False
        if time.monotonic() > deadline:
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {pgdir} runs but has not accepted connections "
                f"for {START_TIMEOUT}s; last lines of {path / LOG_FILE}:\n"
                f"{log_tail(path / LOG_FILE)}"
            )
        time.sleep(0.05)


def ensure_running(path: Path) -> str:
    """Make sure the server of ``path`` runs and has the database; returns its URL.

    The caller holds the lock.
    """
    pgdir = path / PG_SUBDIR
    initialised = (pgdir / "PG_VERSION").is_file()
    if initialised:
        # Fast path: already running and reachable.
        pm = running_postmaster(pgdir)
        if pm is not None and pm.socket_dir is not None and pm.status == "ready":
            url = _url(pm.socket_dir)
            if reachable(url):
                return url

    run_as = server_user(pgdir)
    if run_as is not None:
        make_install_usable(run_as)
        make_traversable(path, run_as)
    if not initialised:
        if pgdir.is_dir() and not any(pgdir.iterdir()):
            pgdir.rmdir()
        elif pgdir.exists():
            raise DatabaseUnavailable(
                f"{pgdir} exists but is not a PostgreSQL data directory; move it away"
            )
        initdb(path, run_as)

    started_here = False
    pm = running_postmaster(pgdir)
    socket_dir = pm.socket_dir if pm is not None else None
    if socket_dir is None or not _wait_until_connectable(path, socket_dir):
        socket_dir = _socket_dir(path)
        _prepare_socket_dir(socket_dir, pgdir, run_as)
        write_config(pgdir, socket_dir, run_as)
        start(path, run_as)
        started_here = True
        pm = running_postmaster(pgdir)
        if pm is not None and pm.socket_dir is not None:
            socket_dir = pm.socket_dir
    try:
        ensure_database(_url(socket_dir, "postgres"), DATABASE)
    except DatabaseUnavailable as e:
        if started_here and not live_users(path):
            stop_server(path)
        raise DatabaseUnavailable(f"{e} (the embedded PostgreSQL in {pgdir})") from e
    return _url(socket_dir)
