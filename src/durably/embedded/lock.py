"""The data directory's lock file: an flock(2) that serialises initdb, start, stop and
users.json across processes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from durably.embedded.layout import LOCK_FILE
from durably.errors import DatabaseUnavailable

_LOCK_TIMEOUT = 180.0  # longer than the slowest holder: initdb plus a start


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the data directory's flock; blocks other processes' init/start/stop."""
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise DatabaseUnavailable(f"cannot open the lock file {lock_path}: {e.strerror}") from e
    try:
        give_to_dir_owner(fd, path)
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


def give_to_dir_owner(fd: int, directory: Path) -> None:
    """Under root, make our bookkeeping files belong to the data directory's owner, so a
    normal user sharing the directory (root used it through sudo, say) can still use them."""
    if os.geteuid() != 0:
        return
    st = os.stat(directory)
    if st.st_uid != 0 and os.fstat(fd).st_uid != st.st_uid:
        os.fchown(fd, st.st_uid, st.st_gid)
