"""Invariants on when bodies ran: no two bodies of one step at once, the limited queue's
limit, and fencing (checkpoints and bodies of a workflow follow its epochs).

A body whose process was SIGSTOPped while it ran is frozen, not running: an overlap (or
an excess over the queue limit) involving one is excused and reported separately.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from chaos.config import LIMITED_CONCURRENCY, LIMITED_QUEUE
from chaos.snapshot import Effect, Snapshot
from chaos.violations import Stop, Violation, effect_dict

Checked = tuple[list[Violation], list[Violation]]  # (violations, excused)


def was_stopped(e: Effect, stops: list[Stop]) -> bool:
    """Whether the body's process was SIGSTOPped while the body ran."""
    return any(
        s.pid == e.pid and s.t_start <= e.ended_at and s.t_end >= e.started_at for s in stops
    )


def check_overlaps(snap: Snapshot, stops: list[Stop]) -> Checked:
    found: list[Violation] = []
    excused: list[Violation] = []
    by_step: dict[tuple[str, int], list[Effect]] = defaultdict(list)
    for e in snap.effects:
        if e.step is not None:
            by_step[(e.workflow_id, e.step)].append(e)
    for (wf_id, step), bodies in by_step.items():
        bodies.sort(key=lambda e: (e.started_at, e.id))
        for i, first in enumerate(bodies):
            for second in bodies[i + 1 :]:
                if second.started_at >= first.ended_at:
                    break
                evidence = {"first": effect_dict(first), "second": effect_dict(second)}
                v = Violation("no_overlap", wf_id, f"two bodies of step {step} overlap", evidence)
                (excused if was_stopped(first, stops) else found).append(v)
    return found, excused


def check_queue_limit(snap: Snapshot, stops: list[Stop]) -> Checked:
    """Sweep the bodies of the limited queue's workflows in time order; each time more
    workflows than the limit have a body running, that is one violation."""
    limited = {w.id for w in snap.workflows.values() if w.queue == LIMITED_QUEUE}
    bodies = [e for e in snap.effects if e.workflow_id in limited]
    points = [(e.started_at, 1, i) for i, e in enumerate(bodies)]
    points += [(e.ended_at, 0, i) for i, e in enumerate(bodies)]  # ends sort before starts
    found: list[Violation] = []
    excused: list[Violation] = []
    active: set[int] = set()
    over = False
    for at, is_start, i in sorted(points):
        if is_start:
            active.add(i)
        else:
            active.discard(i)
        running = {bodies[j].workflow_id for j in active}
        if len(running) <= LIMITED_CONCURRENCY:
            over = False
        elif is_start and not over:
            over = True
            evidence = {
                "at": round(at, 4),
                "running": len(running),
                "bodies": [
                    {"workflow_id": bodies[j].workflow_id, **effect_dict(bodies[j])}
                    for j in sorted(active)
                ],
            }
            v = Violation("queue_limit", None, f"{len(running)} running at {at:.3f}", evidence)
            stopped = any(was_stopped(bodies[j], stops) for j in active)
            (excused if stopped else found).append(v)
    return found, excused


def check_fencing(snap: Snapshot) -> list[Violation]:
    """Per workflow, in commit order, checkpoint epochs never decrease; and no body of
    epoch E starts after a checkpoint of a later epoch was committed."""
    found = []
    for wf_id, ops in snap.ops.items():
        fenced = sorted(
            (o for o in ops if o.epoch is not None), key=lambda o: (o.completed_at, o.step)
        )
        top = None
        for op in fenced:
            assert op.epoch is not None
            if top is not None and top.epoch is not None and op.epoch < top.epoch:
                evidence: dict[str, Any] = {
                    "op": {"step": op.step, "epoch": op.epoch, "at": round(op.completed_at, 4)},
                    "after": {
                        "step": top.step,
                        "epoch": top.epoch,
                        "at": round(top.completed_at, 4),
                    },
                }
                summary = f"step {op.step} written by an older epoch"
                found.append(Violation("fencing", wf_id, summary, evidence))
            if top is None or top.epoch is None or op.epoch > top.epoch:
                top = op
    for e in snap.effects:
        if e.epoch is None:
            continue
        newer = [
            o
            for o in snap.ops.get(e.workflow_id, [])
            if o.epoch is not None and o.epoch > e.epoch and o.completed_at < e.started_at
        ]
        if newer:
            o = min(newer, key=lambda o: o.completed_at)
            evidence = {
                "body": effect_dict(e),
                "newer_op": {"step": o.step, "epoch": o.epoch, "at": round(o.completed_at, 4)},
            }
            summary = f"a body of epoch {e.epoch} started after epoch {o.epoch} wrote"
            found.append(Violation("fencing", e.workflow_id, summary, evidence))
    return found
