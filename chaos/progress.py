"""Time from each fault to progress, from the checkpoints in the database.

For a fault that ended at ``t_end`` (server back, process killed or resumed, link cut,
lost-reply window closed): the time to the first checkpoint committed after it (any
workflow), and, for each workflow that was running at the fault's start, the time from
``t_end`` to its next checkpoint (an operation or its outcome) after the fault began
(0 when it progressed before the fault ended; "never" when it never did).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from typing import Any

from chaos.inject import FaultRecord
from chaos.snapshot import Snapshot

# A checkpoint's time is taken when its statement runs, a little before it commits: a
# workflow seen running at the fault's start may have its last checkpoint stamped up to
# this long before that start.
COMMIT_SLACK = 1.0


def stats(values: list[float]) -> dict[str, Any]:
    """n, median, p90 and worst of ``values`` (seconds, rounded)."""
    if not values:
        return {"n": 0, "median": None, "p90": None, "worst": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)

    return {"n": len(ordered), "median": at(0.5), "p90": at(0.9), "worst": round(ordered[-1], 3)}


def checkpoint_times(snap: Snapshot) -> tuple[list[float], dict[str, list[tuple[float, str]]]]:
    """All checkpoint times, and each workflow's (time, what), sorted."""
    per: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for wf_id, ops in snap.ops.items():
        per[wf_id].extend((op.completed_at, f"step {op.step} {op.kind} {op.name}") for op in ops)
    for wf in snap.workflows.values():
        if wf.completed_at is not None:
            per[wf.id].append((wf.completed_at, f"outcome {wf.status}"))
    everything = sorted(t for times in per.values() for t, _ in times)
    for times in per.values():
        times.sort()
    return everything, per


def _previous(times: list[tuple[float, str]], j: int, t_start: float) -> dict[str, Any] | None:
    if j == 0:
        return None
    at, what = times[j - 1]
    return {"what": what, "before_fault": round(t_start - at, 3)}


def measure(snap: Snapshot, records: list[FaultRecord]) -> dict[str, Any]:
    everything, per = checkpoint_times(snap)
    faults = []
    by_kind: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    never: dict[str, int] = defaultdict(int)
    for r in records:
        i = bisect.bisect_right(everything, r.t_end)
        first = round(everything[i] - r.t_end, 3) if i < len(everything) else None
        delays = []
        stuck = []
        slow: list[dict[str, Any]] = []
        for wf_id in r.inflight:
            times = per.get(wf_id, [])
            j = bisect.bisect_right(times, (r.t_start, "~"))
            if j == len(times) and times and times[-1][0] > r.t_start - COMMIT_SLACK:
                j -= 1  # stamped just before the fault, committed after it (see above)
            if j < len(times):
                delay = max(0.0, times[j][0] - r.t_end)
                delays.append(delay)
                wf = snap.workflows.get(wf_id)
                slow.append({"workflow_id": wf_id, "name": wf.name if wf else None,
                             "delay": round(delay, 3), "next": times[j][1],
                             "previous": _previous(times, j, r.t_start)})  # fmt: skip
            else:
                stuck.append(wf_id)
        slow.sort(key=lambda x: -float(x["delay"]))
        if first is not None:
            by_kind[r.kind]["first"].append(first)
        by_kind[r.kind]["inflight"].extend(delays)
        never[r.kind] += len(stuck)
        faults.append({
            "kind": r.kind, "target": r.target, "t_start": round(r.t_start, 3),
            "t_end": round(r.t_end, 3), "first_checkpoint_after": first,
            "inflight": len(r.inflight), "inflight_progress": stats(delays),
            "never_progressed": stuck[:20], "slowest": slow[:5], "detail": r.detail,
        })  # fmt: skip
    summary = {
        kind: {"faults": sum(1 for r in records if r.kind == kind),
               "first_checkpoint": stats(v["first"]),
               "inflight_next_checkpoint": stats(v["inflight"]),
               "inflight_never": never[kind]}
        for kind, v in sorted(by_kind.items())
    }  # fmt: skip
    return {"by_kind": summary, "faults": faults}
