"""The invariant of transaction steps (``ledger``): what a transaction step writes commits
exactly once, together with its checkpoint.

Evidence comes from ``chaos.ledger`` (one row per committed transaction, no unique key),
durably's operations (each transaction step's checkpoint, holding the token its row
carries) and the shared counter that the counting steps increment. A row without its
checkpoint is a commit the workflow does not know of; a checkpoint without its row is
a lost commit; two rows of one step are a double commit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from chaos import shapes
from chaos.snapshot import LedgerRow, Op, Snapshot
from chaos.violations import Violation

KIND = "transaction"
LEDGER_WORKFLOWS = frozenset({shapes.LEDGER, shapes.LEDGER_ASYNC})


def row_dict(r: LedgerRow) -> dict[str, Any]:
    """A ledger row as evidence."""
    return {"row": r.id, "step": r.step, "epoch": r.epoch, "name": r.name, "token": r.token,
            "pid": r.pid, "at": round(r.at, 4)}  # fmt: skip


def op_dict(op: Op) -> dict[str, Any]:
    return {"step": op.step, "kind": op.kind, "name": op.name, "output": op.output,
            "epoch": op.epoch, "completed_at": round(op.completed_at, 4)}  # fmt: skip


def _token(op: Op) -> str | None:
    """The token a transaction's recorded output holds (None: it recorded an error)."""
    out = op.output
    return str(out["token"]) if isinstance(out, dict) and "token" in out else None


def _ledger_ops(snap: Snapshot) -> list[Op]:
    """The recorded transaction steps of the ledger workload."""
    return [
        op for ops in snap.ops.values() for op in ops
        if op.kind == KIND and op.name in shapes.LEDGER_STEPS
    ]  # fmt: skip


def check_ledger(snap: Snapshot) -> list[Violation]:
    found: list[Violation] = []

    def bad(wf_id: str | None, summary: str, **evidence: Any) -> None:
        found.append(Violation("ledger", wf_id, summary, evidence))

    rows: dict[tuple[str, int | None], list[LedgerRow]] = defaultdict(list)
    for r in snap.ledger:
        rows[(r.workflow_id, r.step)].append(r)
    for (wf_id, step), here in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] or -1)):
        evidence = [row_dict(r) for r in here]
        if len(here) > 1:
            bad(wf_id, f"step {step} committed {len(here)} times", rows=evidence)
        op = snap.op_at(wf_id, step) if step is not None else None
        if op is None:
            bad(wf_id, f"a row of step {step} committed without its checkpoint", rows=evidence)
            continue
        if op.kind != KIND or op.name != here[0].name:
            bad(wf_id, f"a row of step {step} committed, but the step is recorded as "
                f"{op.kind} {op.name}", rows=evidence, op=op_dict(op))  # fmt: skip
            continue
        token = _token(op)
        for r in here:
            if r.token != token:
                bad(wf_id, f"step {step}'s recorded output is not what its row committed",
                    row=row_dict(r), op=op_dict(op))  # fmt: skip
            elif snap.has_op_epoch and r.epoch != op.epoch:
                bad(wf_id, f"step {step}'s row was written by epoch {r.epoch}, its checkpoint "
                    f"by epoch {op.epoch}", row=row_dict(r), op=op_dict(op))  # fmt: skip
    recorded: dict[str, int] = Counter()
    for op in _ledger_ops(snap):
        recorded[op.workflow_id] += 1
        if _token(op) is not None and not rows.get((op.workflow_id, op.step)):
            bad(op.workflow_id, f"step {op.step}'s checkpoint was recorded, its row never "
                "committed", op=op_dict(op))  # fmt: skip
    for exp in snap.expected.values():
        wf = snap.workflows.get(exp.workflow_id)
        if exp.workflow not in LEDGER_WORKFLOWS or wf is None or wf.status != "SUCCESS":
            continue
        want = int(exp.meta.get("transactions", 0))
        steps = sorted({op.step for op in snap.ops.get(wf.id, []) if op.kind == KIND})
        with_rows = [s for s in steps if len(rows.get((wf.id, s), [])) == 1]
        if recorded[wf.id] != want or with_rows != steps:
            summary = f"finished with {len(with_rows)} of its {want} transactions committed once"
            bad(wf.id, summary, transaction_steps=steps, steps_with_one_row=with_rows)
    found += _check_counter(snap)
    return found


def _check_counter(snap: Snapshot) -> list[Violation]:
    """The counter equals the number of committed increments, and the counts they
    recorded are exactly 1..counter: none lost, none doubled, none beyond."""
    n = snap.ledger_counter
    counts = [
        op.output["count"] for op in _ledger_ops(snap)
        if op.name in shapes.COUNTING_STEPS and _token(op) is not None
    ]  # fmt: skip
    counting_rows = sum(1 for r in snap.ledger if r.name in shapes.COUNTING_STEPS)
    if n is None:
        return [Violation("ledger", None, "the ledger's counter row is missing")]
    if sorted(counts) == list(range(1, n + 1)) and counting_rows == n:
        return []
    seen = Counter(counts)
    evidence = {
        "counter": n,
        "recorded_increments": len(counts),
        "committed_rows": counting_rows,
        "recorded_twice": sorted(c for c, k in seen.items() if k > 1)[:20],
        "missing": [c for c in range(1, n + 1) if c not in seen][:20],
        "beyond_counter": sorted(c for c in seen if not 1 <= c <= n)[:20],
    }
    summary = f"the counter is {n} after {len(counts)} recorded increments ({counting_rows} rows)"
    return [Violation("ledger", None, summary, evidence)]


def figures(snap: Snapshot) -> dict[str, Any]:
    """How the transaction steps fared: commits, bodies that ran to their end (their
    effect rows; a killed body leaves none), those that raised, and how many more ran than
    committed (conflicts, cut connections, lost ownership)."""
    bodies = [e for e in snap.effects if e.label.removesuffix("!fail").startswith("ledger_")]
    return {
        "commits": len(snap.ledger),
        "bodies": len(bodies),
        "bodies_failed": sum(1 for e in bodies if e.label.endswith("!fail")),
        "bodies_not_committed": max(0, len(bodies) - len(snap.ledger)),
        "counter": snap.ledger_counter,
    }
