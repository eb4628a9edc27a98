"""Whether a process lives: any pid (through ``/proc``), and a data directory's postmaster."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

_HAVE_PROC = os.path.exists("/proc/self/stat")


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name: the state comes first."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return raw[raw.rindex(b")") + 2 :].split()


def process_info(pid: int) -> tuple[bool, str | None]:
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
        fields = _stat_fields(pid)
    except FileNotFoundError:
        return False, None
    except OSError:
        return True, None
    if fields[0] in (b"Z", b"X"):  # zombie (killed, not yet reaped) or dead
        return False, None
    return True, fields[19].decode()  # field 22 of stat(5): starttime


def _is_zombie(pid: int) -> bool:
    try:
        return _stat_fields(pid)[:1] == [b"Z"]
    except OSError:
        return False


@dataclass(frozen=True)
class Postmaster:
    pid: int
    socket_dir: Path | None
    status: str


def _read_pid_file(pgdir: Path) -> tuple[int, list[str]] | None:
    """The pid and the lines of ``pgdir``'s postmaster.pid; None if missing or malformed."""
    try:
        lines = (pgdir / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), lines
    except (OSError, ValueError, IndexError):
        return None


def running_postmaster(pgdir: Path) -> Postmaster | None:
    """The postmaster of ``pgdir`` if postmaster.pid names a live postgres process."""
    found = _read_pid_file(pgdir)
    if found is None:
        return None
    pid, lines = found
    if not process_info(pid)[0]:
        return None
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return None  # the pid was reused by something else: the file is stale
    except OSError:
        pass  # no /proc: trust the pid
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return Postmaster(pid, socket_dir, status)


def await_dead_postmaster(pgdir: Path, deadline: float) -> None:
    """Wait while postmaster.pid names a zombie: a killed postmaster its new parent has not
    reaped yet. The postmaster counts a zombie as alive and would refuse to start. If the
    zombie is our child (we are pid 1 or a subreaper), reap it ourselves."""
    found = _read_pid_file(pgdir)
    if found is None:
        return
    pid = found[0]
    while _is_zombie(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
