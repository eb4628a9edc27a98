"""users.json: the processes using the server, pruned of those that no longer exist.

Callers hold the data directory's lock (:func:`durably.embedded.lock.locked`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from durably.embedded.layout import USERS_FILE
from durably.embedded.lock import give_to_dir_owner
from durably.embedded.processes import process_info

_log = logging.getLogger("durably.embedded")


def _user_alive(entry: Mapping[str, Any]) -> bool:
    pid = entry.get("pid")
    if not isinstance(pid, int):
        return False
    alive, started = process_info(pid)
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


def _other_live_users(path: Path) -> list[dict[str, Any]]:
    me = os.getpid()
    return [u for u in _read_users(path) if u.get("pid") != me and _user_alive(u)]


def _write_users(path: Path, users: list[dict[str, Any]]) -> None:
    users_path = path / USERS_FILE
    tmp = users_path.with_name(f"{USERS_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    give_to_dir_owner(fd, path)
    with open(fd, "w") as f:
        json.dump(users, f)
    os.replace(tmp, users_path)  # atomic: readers see the old list or the new one


def register_user(path: Path) -> None:
    """Add this process to the registry (and drop dead ones)."""
    me = os.getpid()
    users = _other_live_users(path)
    users.append({"pid": me, "started": process_info(me)[1]})
    _write_users(path, users)


def unregister_user(path: Path) -> list[int]:
    """Remove this process and dead ones from the registry; returns the live pids left."""
    users = _other_live_users(path)
    _write_users(path, users)
    return [int(u["pid"]) for u in users]


def live_users(path: Path) -> list[int]:
    """The pids of the registered processes that still live, this one included."""
    return [int(u["pid"]) for u in _read_users(path) if _user_alive(u)]
