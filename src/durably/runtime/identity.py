"""Who this process is to other executors, and whether a holder of an executor ID is gone."""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import uuid
import weakref
from pathlib import Path
from typing import Protocol


class Incarnation(Protocol):
    """An engine of this process, as the ID check sees it."""

    @property
    def incarnation(self) -> str: ...

    @property
    def holds_its_id(self) -> bool:
        """Launched (or launching) and not shut down."""
        ...


_lock = threading.Lock()
_here: weakref.WeakValueDictionary[str, Incarnation] = weakref.WeakValueDictionary()


def new_incarnation() -> str:
    """A fresh token for one engine: the process that holds an executor ID now."""
    return uuid.uuid4().hex


def enlist(engine: Incarnation) -> None:
    """Remember an engine of this process by its incarnation (weakly)."""
    with _lock:
        _here[engine.incarnation] = engine


@functools.cache
def pid_space() -> str | None:
    """Where this process's PID means something: on Linux the kernel's boot and the PID
    namespace (a container has its own), on macOS the host. None where it cannot be told;
    a holder recorded elsewhere is never judged gone."""
    if sys.platform == "linux":
        try:
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            return None
        return f"linux:{boot}:{namespace}"
    if sys.platform == "darwin":
        return f"darwin:{socket.gethostname()}"
    return None


def holder_gone(pid_space_of_holder: str | None, pid: int | None, incarnation: str | None) -> bool:
    """Whether the process recorded as holding an executor ID is known not to run any
    more: recorded in this PID space, not a live engine of this process, and its PID is
    this process's own (the holder was an earlier process with the same PID) or not
    running. When in doubt (another machine or container), it is not gone."""
    mine = pid_space()
    if mine is None or pid_space_of_holder != mine or pid is None or incarnation is None:
        return False
    with _lock:
        engine = _here.get(incarnation)
    if engine is not None:
        return not engine.holds_its_id
    if pid == os.getpid():
        return True
    return not _running(pid)


def _running(pid: int) -> bool:
    """Whether a process with this PID runs here (a zombie does not)."""
    if sys.platform == "linux":
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        except OSError:
            return True
        # "pid (comm) state ...": comm may hold spaces and parentheses; the state follows
        # the last ")".
        state = stat.rpartition(")")[2].split()
        return not state or state[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
