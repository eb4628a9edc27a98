"""The cluster on disk and its server process: initdb, pg_ctl start and stop, pg.log."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

from durably.embedded.binaries import binary, run
from durably.embedded.layout import LOG_FILE, PG_SUBDIR, SUPERUSER
from durably.embedded.processes import await_dead_postmaster, running_postmaster
from durably.embedded.run_as import RunAs, chown, server_user
from durably.errors import DatabaseUnavailable

_log = logging.getLogger("durably.embedded")

START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections
_STOP_TIMEOUT = 60
_LOG_ROTATE_BYTES = 10 * 1024 * 1024

# The postmaster refuses to start while processes of a killed predecessor still exist;
# they go away on their own within moments, so these failures are worth retrying.
_TRANSIENT_START_FAILURES = ("pre-existing shared memory block", 'lock file "postmaster.pid"')


def initdb(path: Path, run_as: RunAs | None) -> None:
    """Make pg/ atomically: initdb into a scratch directory, then rename it into place."""
    pgdir = path / PG_SUBDIR
    scratch = path / f"{PG_SUBDIR}.initdb"
    if scratch.exists():
        shutil.rmtree(scratch)  # left by a crash; we hold the lock, nobody else uses it
    scratch.mkdir(mode=0o700)
    chown(scratch, run_as)
    args = [
        binary("initdb"),
        "-D",
        str(scratch),
        "--auth=trust",  # only the owner can open the 0700 unix socket; no TCP
        "--encoding=UTF8",
        "--no-locale",  # C collation: independent of the host's installed locales
        "-U",
        SUPERUSER,
    ]
    started = time.monotonic()
    done = run(args, run_as, scratch, timeout=300)
    if done.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise DatabaseUnavailable(
            f"initdb of the embedded database in {pgdir} failed:\n{done.stdout.strip()}"
        )
    os.rename(scratch, pgdir)
    _log.info("initialised %s in %.2fs", pgdir, time.monotonic() - started)


def _prepare_log(path: Path, run_as: RunAs | None) -> Path:
    log = path / LOG_FILE
    try:
        if log.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(log, path / f"{LOG_FILE}.1")
    except FileNotFoundError:
        pass
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.close(fd)
    chown(log, run_as)  # pg_ctl opens it as the server's user
    return log


def log_tail(path: Path, lines: int = 25, offset: int = 0) -> str:
    """The last ``lines`` lines of the log, from ``offset`` at the earliest."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(offset, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def start(path: Path, run_as: RunAs | None) -> None:
    """Start the server of ``path`` (the lock must be held), retrying transient failures."""
    pgdir = path / PG_SUBDIR
    log = _prepare_log(path, run_as)
    args = [binary("pg_ctl"), "-D", str(pgdir), "-l", str(log), "-w", "-t", str(START_TIMEOUT)]
    started = time.monotonic()
    deadline = started + START_TIMEOUT
    while True:
        await_dead_postmaster(pgdir, deadline)
        log_size = log.stat().st_size
        done = run([*args, "start"], run_as, pgdir, timeout=START_TIMEOUT + 30)
        if done.returncode == 0:
            break
        new_log = log_tail(log, offset=log_size)
        transient = any(s in new_log for s in _TRANSIENT_START_FAILURES)
        if not transient or time.monotonic() > deadline or running_postmaster(pgdir):
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {pgdir} did not start: {done.stdout.strip()}\n"
                f"last lines of {log}:\n{new_log.strip() or log_tail(log)}"
            )
        _log.info("retrying the start of %s: %s", pgdir, new_log.strip())
        time.sleep(0.2)
    _log.info("started the embedded PostgreSQL in %s in %.2fs", pgdir, time.monotonic() - started)


def stop_server(path: Path) -> bool:
    """Stop the server of ``path`` now (the lock must be held). True if it was running."""
    pgdir = path / PG_SUBDIR
    pm = running_postmaster(pgdir)
    if pm is None:
        return False
    run_as = server_user(pgdir)
    base = [binary("pg_ctl"), "-D", str(pgdir), "-w", "-t", str(_STOP_TIMEOUT), "-s"]
    done = run([*base, "-m", "fast", "stop"], run_as, pgdir, timeout=_STOP_TIMEOUT + 30)
    if done.returncode != 0 and running_postmaster(pgdir) is not None:
        _log.warning("fast shutdown of %s failed (%s); using immediate", pgdir, done.stdout)
        done = run([*base, "-m", "immediate", "stop"], run_as, pgdir, timeout=_STOP_TIMEOUT)
        if done.returncode != 0 and running_postmaster(pgdir) is not None:
            raise DatabaseUnavailable(
                f"cannot stop the embedded PostgreSQL in {pgdir}: {done.stdout.strip()}"
            )
    if pm.socket_dir is not None and pm.socket_dir != pgdir:
        with contextlib.suppress(OSError):
            pm.socket_dir.rmdir()  # our /tmp/durably-<hash>, if empty; made again at start
    _log.info("stopped the embedded PostgreSQL in %s", pgdir)
    return True
