"""The invariants of durably's contract, checked on a snapshot of the database after a run.

Each check returns the violations it found, each naming its workflow and carrying the
evidence (the rows that break it). This module holds the outcome checks and
``check_all``; ``checks_time`` the checks on when bodies ran (overlaps, the queue limit,
fencing), ``checks_comm`` those on messages and streams, and ``checks_ledger`` the
exactly-once of transaction steps. A check that cannot run
says why in ``Findings.notes``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from chaos.config import CRON_NAME, LIMITED_CONCURRENCY, LIMITED_QUEUE
from chaos.snapshot import FINAL, Snapshot
from chaos.violations import Stop, Violation, effect_dict

INVARIANTS = {
    "final": "every workflow reaches a final status (none stranded, none missing)",
    "outcome": "each outcome recorded once, equal to the expected value",
    "no_rerun": "a completed step is never run again",
    "as_step": "a step called inside a workflow runs as a recorded step, never as a plain call",
    "messages": "every message delivered exactly once",
    "streams": "no stream entry missing or duplicated; readers read what was written",
    "queue_limit": f"queue {LIMITED_QUEUE!r} never runs more than {LIMITED_CONCURRENCY} at once",
    "no_overlap": "no two bodies of one step run at the same time",
    "fencing": "every checkpoint written by the epoch that owned the workflow",
    "cron": "each cron tick fired at most once, with its own tick time",
    "ledger": "a transaction step's writes commit exactly once, with its checkpoint",
}


@dataclass
class Findings:
    violations: list[Violation] = field(default_factory=list)
    excused: list[Violation] = field(default_factory=list)  # overlaps explained by SIGSTOP
    notes: list[str] = field(default_factory=list)


def check_final(snap: Snapshot) -> list[Violation]:
    found = []
    for wf in snap.workflows.values():
        if wf.status in FINAL:
            continue
        ops = snap.ops.get(wf.id, [])
        last = None
        if ops:
            op = ops[-1]
            last = {"step": op.step, "kind": op.kind, "name": op.name,
                    "completed_at": round(op.completed_at, 3)}  # fmt: skip
        evidence = {
            "name": wf.name,
            "executor_id": wf.executor_id,
            "epoch": wf.epoch,
            "queue": wf.queue,
            "created_at": round(wf.created_at, 3),
            "last_op": last,
        }
        found.append(Violation("final", wf.id, f"left {wf.status}", evidence))
    for exp in snap.expected.values():
        if exp.workflow_id not in snap.workflows:
            evidence = {"shape": exp.shape, "origin": exp.origin}
            found.append(
                Violation("final", exp.workflow_id, "recorded start has no workflow", evidence)
            )
    return found


def check_outcomes(snap: Snapshot) -> list[Violation]:
    found = []
    for exp in snap.expected.values():
        wf = snap.workflows.get(exp.workflow_id)
        if wf is None or wf.status not in FINAL:
            continue  # reported by check_final
        if wf.status != "SUCCESS" or wf.output != exp.expected:
            evidence = {
                "shape": exp.shape,
                "expected": exp.expected,
                "output": wf.output,
                "error": None if wf.error is None else str(wf.error)[:1500],
            }
            found.append(
                Violation("outcome", wf.id, f"{wf.status}, not the expected result", evidence)
            )
    for wf in snap.workflows.values():
        if wf.completed_at is None:
            continue
        late = [op for op in snap.ops.get(wf.id, []) if op.completed_at > wf.completed_at]
        if late:
            evidence = {
                "completed_at": round(wf.completed_at, 4),
                "late_ops": [{"step": op.step, "kind": op.kind,
                              "completed_at": round(op.completed_at, 4)} for op in late],
            }  # fmt: skip
            found.append(
                Violation("outcome", wf.id, "operation recorded after the outcome", evidence)
            )
    return found


def check_no_rerun(snap: Snapshot) -> list[Violation]:
    found = []
    for e in snap.effects:
        if e.step is None:
            continue
        op = snap.op_at(e.workflow_id, e.step)
        if op is None or op.kind != "step" or e.started_at <= op.completed_at:
            continue
        evidence = {
            "body": effect_dict(e),
            "checkpoint_at": round(op.completed_at, 4),
            "late_by": round(e.started_at - op.completed_at, 4),
            "op_epoch": op.epoch,
        }
        summary = f"step {e.step} ran after its checkpoint"
        found.append(Violation("no_rerun", e.workflow_id, summary, evidence))
    return found


def check_as_step(snap: Snapshot) -> list[Violation]:
    """A body that ran inside a workflow but outside any step position ran as a plain
    call: unrecorded, without retries, and it will run again on replay."""
    found = []
    for e in snap.effects:
        if e.step is None and e.workflow_id in snap.workflows:
            summary = f"a {e.label} body ran as a plain call, not as a step"
            found.append(Violation("as_step", e.workflow_id, summary, {"body": effect_dict(e)}))
    return found


def _tick_of_id(workflow_id: str) -> datetime | None:
    """The tick time in a schedule's workflow ID, ``sched:<name>:<UTC time>``."""
    try:
        return datetime.fromisoformat(":".join(workflow_id.rsplit(":", 3)[-3:]))
    except ValueError:
        return None


def check_cron(snap: Snapshot) -> list[Violation]:
    found = []
    ticks: dict[str, list[str]] = defaultdict(list)
    for wf in snap.workflows.values():
        if wf.name != CRON_NAME:
            continue
        tick = str(((wf.inputs or {}).get("args") or [None])[0])
        ticks[tick].append(wf.id)
        try:
            same = _tick_of_id(wf.id) == datetime.fromisoformat(tick)
        except ValueError:
            same = False
        if not same:
            found.append(Violation("cron", wf.id, "tick ID and argument disagree", {"arg": tick}))
        if wf.status in FINAL and (wf.status != "SUCCESS" or wf.output != tick):
            evidence = {"status": wf.status, "output": wf.output, "tick": tick}
            found.append(Violation("cron", wf.id, "tick did not return its tick time", evidence))
    for tick, ids in ticks.items():
        if len(ids) > 1:
            summary = f"tick {tick} fired {len(ids)} times"
            found.append(Violation("cron", sorted(ids)[0], summary, {"workflows": sorted(ids)}))
    return found


def reruns(snap: Snapshot) -> int:
    """Steps whose body completed more than once (allowed: bodies are at-least-once)."""
    done: dict[tuple[str, int], int] = defaultdict(int)
    for e in snap.effects:
        if e.step is not None and not e.label.endswith("!fail"):
            done[(e.workflow_id, e.step)] += 1
    return sum(1 for n in done.values() if n > 1)


def check_all(snap: Snapshot, stops: list[Stop]) -> Findings:
    from chaos.checks_comm import check_messages, check_streams
    from chaos.checks_ledger import check_ledger
    from chaos.checks_time import check_fencing, check_overlaps, check_queue_limit

    findings = Findings()
    v = findings.violations
    v += check_final(snap)
    v += check_outcomes(snap)
    v += check_no_rerun(snap)
    v += check_as_step(snap)
    v += check_messages(snap)
    v += check_streams(snap)
    for check in (check_queue_limit, check_overlaps):
        bad, excused = check(snap, stops)
        v += bad
        findings.excused += excused
    if snap.has_op_epoch:
        v += check_fencing(snap)
    else:
        findings.notes.append("fencing: not available (operations has no epoch column)")
    v += check_cron(snap)
    v += check_ledger(snap)
    return findings
