"""Values as people read them on a terminal or a page: durations (12ms, 2m05s, 3d04h)."""

from __future__ import annotations

from datetime import timedelta


def duration(span: timedelta | float | None) -> str:
    """A duration for people: 12ms, 3.4s, 2m05s, 1h02m, 3d04h (``-`` for none)."""
    if span is None:
        return "-"
    total = span.total_seconds() if isinstance(span, timedelta) else float(span)
    if total < 1:
        return f"{total * 1000:.0f}ms"
    if total < 60:
        return f"{total:.1f}s"
    minutes, secs = divmod(int(total), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
