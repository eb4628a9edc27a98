"""Fault injection at the client boundary: the reply to a committed statement is lost.

Off unless a test or the chaos suite installs a hook. It reproduces the hardest outcome
a database client meets: the statement committed, then the connection broke before its
answer arrived, so the caller cannot tell whether it happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

# Given the names of the statements that just committed together, say whether to
# drop their reply.
Hook = Callable[[Sequence[str]], bool]

_hook: Hook | None = None


class SimulatedLostReply(psycopg.OperationalError):
    """The connection was closed on purpose after a commit, before its reply was read."""


def install(hook: Hook | None) -> None:
    """Install (or with None, remove) the process-wide lost-reply hook."""
    global _hook
    _hook = hook


def _lost(names: Sequence[str]) -> SimulatedLostReply | None:
    """The error to raise, once the connection is closed, if the hook drops this reply."""
    hook = _hook
    if hook is None or not hook(names):
        return None
    return SimulatedLostReply(f"simulated lost reply after {', '.join(names)} committed")


def after_commit(conn: psycopg.Connection[Any], names: Sequence[str]) -> None:
    """Called once statements committed: drop the reply if the hook says so."""
    if (lost := _lost(names)) is not None:
        conn.close()
        raise lost


async def after_commit_async(conn: psycopg.AsyncConnection[Any], names: Sequence[str]) -> None:
    """Async twin of after_commit."""
    if (lost := _lost(names)) is not None:
        await conn.close()
        raise lost
