"""A workflow's steps laid out in time: where each bar starts and how long it is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from durably.info import StepInfo

# Kinds that wait rather than work: drawn as waits, not as work.
WAITS = frozenset({"sleep", "recv", "get_event"})
WIDTH = 1000  # the drawing's width in SVG units; the page scales it


@dataclass(frozen=True, slots=True)
class Bar:
    """One step on the timeline."""

    step: StepInfo
    offset: float  # seconds from the workflow's start to the step's start
    seconds: float  # the step's duration
    x: float  # SVG units from the left
    width: float
    look: str  # "work", "wait", "child", "failed": how it is drawn


def lay_out(steps: list[StepInfo], start: datetime, end: datetime) -> list[Bar]:
    """Bars for ``steps`` on a span from ``start`` to ``end`` (the workflow's creation to
    its completion, or now); a bar is at least a sliver wide so that every step shows."""
    first = min([start, *(s.started_at for s in steps)])
    last = max([end, *(s.completed_at for s in steps)])
    span = max((last - first).total_seconds(), 1e-3)
    bars = []
    for step in steps:
        offset = (step.started_at - first).total_seconds()
        seconds = max((step.completed_at - step.started_at).total_seconds(), 0.0)
        x = offset / span * WIDTH
        width = max(seconds / span * WIDTH, 2.0)
        bars.append(Bar(step, offset, seconds, min(x, WIDTH - 2.0), width, _look(step)))
    return bars


def _look(step: StepInfo) -> str:
    if step.error is not None:
        return "failed"
    if step.kind in WAITS:
        return "wait"
    if step.child_id is not None:
        return "child"
    return "work"
