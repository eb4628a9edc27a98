"""What the invariant checks report: a violation with its evidence, and the SIGSTOPs that
excuse an overlap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chaos.snapshot import Effect


@dataclass(frozen=True)
class Stop:
    """A SIGSTOP of a worker process, from t_start to t_end (SIGCONT)."""

    pid: int
    t_start: float
    t_end: float


@dataclass
class Violation:
    invariant: str
    workflow_id: str | None
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, str | None, str]:
        return (self.invariant, self.workflow_id, self.summary)

    def as_dict(self) -> dict[str, Any]:
        return {
            "invariant": self.invariant,
            "workflow_id": self.workflow_id,
            "summary": self.summary,
            "evidence": self.evidence,
        }


def effect_dict(e: Effect) -> dict[str, Any]:
    """A body as evidence."""
    return {
        "step": e.step,
        "epoch": e.epoch,
        "pid": e.pid,
        "started_at": round(e.started_at, 4),
        "ended_at": round(e.ended_at, 4),
        "label": e.label,
    }
