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


def _lose(names: Sequence[str]) -> bool:
    hook = _hook
    return hook is not None and hook(names)


def after_commit(conn: psycopg.Connection[Any], names: Sequence[str]) -> None:
    """Called once statements committed: drop the reply if the hook says so."""
    if _lose(names):
        conn.close()
        raise SimulatedLostReply(f"simulated lost reply after {', '.join(names)} committed")


async def after_commit_async(conn: psycopg.AsyncConnection[Any], names: Sequence[str]) -> None:
    """Async twin of after_commit."""
    if _lose(names):
        await conn.close()
        raise SimulatedLostReply(f"simulated lost reply after {', '.join(names)} committed")
