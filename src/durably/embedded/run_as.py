"""Whom the server runs as, and the permissions that user is given when durably runs as root.

PostgreSQL refuses to run as root, so under root the server runs as :data:`SERVER_USER`
(created if missing), or as the owner of an existing cluster.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from durably.errors import DatabaseUnavailable

_log = logging.getLogger("durably.embedded")

SERVER_USER = "durably"
"""The system user the server runs as when durably runs as root."""


@dataclass(frozen=True)
class RunAs:
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


def server_user(pgdir: Path) -> RunAs | None:
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
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)


def add_permission(path: Path, run_as: RunAs, read: bool, search: bool) -> None:
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


def make_traversable(path: Path, run_as: RunAs) -> None:
    """Give ``run_as`` search (x) permission on ``path`` and every directory above it."""
    for p in (path, *path.parents):
        add_permission(p, run_as, read=False, search=True)


def chown(path: Path, run_as: RunAs | None) -> None:
    """Give ``path`` to the server's user (nothing to do when that is this process's)."""
    if run_as is not None:
        os.chown(path, run_as.uid, run_as.gid)
