"""The scheduled workflow shared, under the same name, by the tests and the workers.

Its body appends one line ``"<tick in UTC, ISO 8601> <pid>"`` to the effects file
(opened with O_APPEND, so lines from several processes never mix): a test counts how
often each tick really ran, and in which process.
"""

from __future__ import annotations

import os
from datetime import datetime

import durably

SCHEDULE = "every_second"


def effect(effects: str | os.PathLike[str], line: str) -> None:
    """Append one line to the effects file in one write (O_APPEND)."""
    fd = os.open(effects, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def declare(app: durably.App, effects: str | os.PathLike[str]) -> durably.Workflow[..., str]:
    """Declare the every-second schedule on ``app``."""

    @app.scheduled("* * * * * *", name=SCHEDULE)
    def every_second(scheduled_at: datetime) -> str:
        effect(effects, f"{scheduled_at.isoformat()} {os.getpid()}")
        return scheduled_at.isoformat()

    return every_second
