"""``python -m chaos selftest``: proof that every check can fail.

A short run without faults leaves a real dataset (real workers, a real cluster). Then,
one case at a time and inside a transaction that is rolled back, the data is broken on
purpose (a workflow left PENDING, an output changed, a message un-consumed, a body
inserted after its checkpoint, a ledger row doubled, ...) and the checks must report
exactly that: at least one new violation, all of the case's invariant. Violations the
clean run had already (engine bugs) are the baseline and are not counted against a case.
"""

# SQL here names the suite's schemas, module constants (never input).
# ruff: noqa: S608

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from chaos import shapes
from chaos.checks import check_all
from chaos.config import CHAOS_SCHEMA as C
from chaos.config import CRON_NAME, LIMITED_CONCURRENCY, LIMITED_QUEUE, RunConfig
from chaos.config import WF_SCHEMA as W
from chaos.run import Outcome, execute
from chaos.snapshot import Effect, LedgerRow, Snapshot, load
from chaos.violations import Stop

Conn = psycopg.Connection[Any]


class NoData(Exception):
    """The clean run left nothing this case can break."""


@dataclass
class Case:
    name: str
    invariant: str  # the invariant that must (alone) report it; "" for an excused overlap
    breaks: Callable[[Conn, Snapshot], str]  # breaks the data, says what it did
    extra_stops: Callable[[Snapshot], list[Stop]] | None = None


def _expected(snap: Snapshot, workflow: str, origin: str | None = None) -> list[str]:
    ids = [e.workflow_id for e in snap.expected.values() if e.workflow == workflow]
    ids = [i for i in ids if origin is None or snap.expected[i].origin == origin]
    ok = [i for i in sorted(ids) if i in snap.workflows and snap.workflows[i].status == "SUCCESS"]
    if not ok:
        raise NoData(f"no finished {workflow}")
    return ok


def _step_body(snap: Snapshot, limited: bool = False) -> tuple[Effect, float]:
    """A successful step body and its checkpoint time."""
    queue = {w.id: w.queue for w in snap.workflows.values()}
    for e in snap.effects:
        op = snap.op_at(e.workflow_id, e.step) if e.step is not None else None
        is_limited = queue.get(e.workflow_id) == LIMITED_QUEUE
        if op is not None and op.kind == "step" and is_limited == limited and "!" not in e.label:
            return e, op.completed_at
    raise NoData("no step body")


def _copy_effect(conn: Conn, e: Effect, started: float, ended: float, **changes: Any) -> None:
    row = {"workflow_id": e.workflow_id, "step": e.step, "epoch": e.epoch, "pid": e.pid,
           "label": e.label, **changes}  # fmt: skip
    conn.execute(
        f"""INSERT INTO {C}.effects (token, workflow_id, step, epoch, pid, started_at, ended_at,
            label) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (uuid.uuid4().hex, row["workflow_id"], row["step"], row["epoch"], row["pid"], started,
         ended, row["label"]),
    )  # fmt: skip


def leave_pending(conn: Conn, snap: Snapshot) -> str:
    wf = _expected(snap, shapes.RETRY)[0]
    conn.execute(f"UPDATE {W}.workflows SET status = 'PENDING', output = NULL, "
                 f"completed_at = NULL WHERE id = %s", (wf,))  # fmt: skip
    return f"{wf} set back to PENDING"


def delete_workflow(conn: Conn, snap: Snapshot) -> str:
    wf = _expected(snap, shapes.SLEEPER)[0]
    conn.execute(f"DELETE FROM {W}.workflows WHERE id = %s", (wf,))
    return f"{wf} deleted"


def change_output(conn: Conn, snap: Snapshot) -> str:
    wf = _expected(snap, shapes.RETRY)[-1]
    conn.execute(f"UPDATE {W}.workflows SET output = '-1'::jsonb WHERE id = %s", (wf,))
    return f"{wf}'s output changed to -1"


def op_after_outcome(conn: Conn, snap: Snapshot) -> str:
    wf = _expected(snap, shapes.SLEEPER)[-1]
    last = snap.ops[wf][-1].step
    conn.execute(f"""UPDATE {W}.operations SET completed_at = completed_at + interval '1 hour'
                     WHERE workflow_id = %s AND step = %s""", (wf, last))  # fmt: skip
    return f"{wf} step {last} moved after the outcome"


def body_after_checkpoint(conn: Conn, snap: Snapshot) -> str:
    e, checkpoint = _step_body(snap)
    _copy_effect(conn, e, checkpoint + 0.5, checkpoint + 0.52)
    return f"a body of {e.workflow_id} step {e.step} 0.5 s after its checkpoint"


def plain_call(conn: Conn, snap: Snapshot) -> str:
    e, _ = _step_body(snap)
    _copy_effect(conn, e, e.started_at, e.ended_at, step=None)
    return f"a body of {e.workflow_id} recorded without its step position"


def overlapping_body(conn: Conn, snap: Snapshot) -> str:
    e, _ = _step_body(snap)
    _copy_effect(conn, e, e.started_at, e.ended_at, pid=e.pid + 1)
    return f"a second body of {e.workflow_id} step {e.step} at the same time"


def stop_of_first_body(snap: Snapshot) -> list[Stop]:
    e, _ = _step_body(snap)
    return [Stop(e.pid, e.started_at, e.ended_at)]


def over_the_limit(conn: Conn, snap: Snapshot) -> str:
    first, _ = _step_body(snap, limited=True)
    later = sorted({e.workflow_id: e for e in snap.effects
                    if e.started_at >= first.ended_at and e.workflow_id != first.workflow_id
                    and snap.workflows[e.workflow_id].queue == LIMITED_QUEUE}.values(),
                   key=lambda e: e.started_at)  # fmt: skip
    if len(later) < LIMITED_CONCURRENCY:
        raise NoData("too few limited workflows")
    for e in later[:LIMITED_CONCURRENCY]:
        _copy_effect(conn, e, first.started_at, first.ended_at)
    return f"two limited bodies copied into {first.workflow_id}'s interval"


def _receiver(snap: Snapshot) -> str:
    return _expected(snap, shapes.RECEIVER)[0]


def unconsume(conn: Conn, snap: Snapshot) -> str:
    wf = _receiver(snap)
    conn.execute(f"""UPDATE {W}.messages SET consumed_at = NULL, consumed_step = NULL
                     WHERE id = (SELECT min(id) FROM {W}.messages WHERE workflow_id = %s)""",
                 (wf,))  # fmt: skip
    return f"a message of {wf} marked unconsumed"


def delete_message(conn: Conn, snap: Snapshot) -> str:
    wf = _receiver(snap)
    conn.execute(f"""DELETE FROM {W}.messages
                     WHERE id = (SELECT max(id) FROM {W}.messages WHERE workflow_id = %s)""",
                 (wf,))  # fmt: skip
    return f"a message of {wf} deleted"


def receive_twice(conn: Conn, snap: Snapshot) -> str:
    wf = _receiver(snap)
    recvs = [op for op in snap.ops[wf] if op.kind == "recv"]
    conn.execute(f"UPDATE {W}.operations SET output = %s WHERE workflow_id = %s AND step = %s",
                 (Jsonb(recvs[0].output), wf, recvs[1].step))  # fmt: skip
    return f"{wf} step {recvs[1].step} holds the message of step {recvs[0].step}"


def _writer(snap: Snapshot) -> str:
    return _expected(snap, shapes.WRITER, "driver")[0]


def delete_entry(conn: Conn, snap: Snapshot) -> str:
    wf = _writer(snap)
    conn.execute(f"""DELETE FROM {W}.streams WHERE workflow_id = %s AND NOT closed
                     AND step = (SELECT min(step) FROM {W}.streams WHERE workflow_id = %s)""",
                 (wf, wf))  # fmt: skip
    return f"the first entry of {wf}'s stream deleted"


def duplicate_entry(conn: Conn, snap: Snapshot) -> str:
    wf = _writer(snap)
    conn.execute(f"""INSERT INTO {W}.streams (workflow_id, key, step, value, closed)
                     SELECT workflow_id, key, 10000, value, false FROM {W}.streams
                     WHERE workflow_id = %s AND NOT closed ORDER BY step LIMIT 1""",
                 (wf,))  # fmt: skip
    return f"the first entry of {wf}'s stream written twice"


def misread(conn: Conn, snap: Snapshot) -> str:
    wf = _writer(snap)
    conn.execute(f"UPDATE {C}.stream_reads SET got = got - 0 WHERE workflow_id = %s", (wf,))
    return f"the driver's read of {wf} lost its first value"


def _fenced_workflow(snap: Snapshot) -> str:
    if not snap.has_op_epoch:
        raise NoData("operations has no epoch column")
    for wf_id, ops in sorted(snap.ops.items()):
        wf = snap.workflows.get(wf_id)
        if wf and wf.queue and wf.queue != LIMITED_QUEUE and len(ops) >= 2 and ops[0].epoch:
            return wf_id
    raise NoData("no queued workflow with two operations")


def older_epoch(conn: Conn, snap: Snapshot) -> str:
    wf = _fenced_workflow(snap)
    by_time = sorted(snap.ops[wf], key=lambda op: op.completed_at)  # concurrent steps: not by step
    first, last = by_time[0], by_time[-1]
    assert first.epoch is not None
    conn.execute(f"UPDATE {W}.operations SET epoch = %s WHERE workflow_id = %s AND step = %s",
                 (first.epoch - 1, wf, last.step))  # fmt: skip
    return f"{wf} step {last.step} given epoch {first.epoch - 1}, older than step {first.step}'s"


def stale_body(conn: Conn, snap: Snapshot) -> str:
    wf = _fenced_workflow(snap)
    op = snap.ops[wf][0]
    assert op.epoch is not None
    body = Effect(0, wf, 999, op.epoch - 1, 1, 0.0, 0.0, "stale")
    _copy_effect(conn, body, op.completed_at + 0.1, op.completed_at + 0.12)
    return f"a body of {wf} with epoch {op.epoch - 1} after step {op.step} of epoch {op.epoch}"


def _tick(snap: Snapshot) -> str:
    ticks = sorted(w.id for w in snap.workflows.values() if w.name == CRON_NAME)
    if not ticks:
        raise NoData("no cron tick")
    return ticks[0]


def tick_twice(conn: Conn, snap: Snapshot) -> str:
    wf = _tick(snap)
    twin = wf[:-1] + ".000Z"  # the same instant, written differently
    conn.execute(f"""INSERT INTO {W}.workflows (id, name, status, inputs, output,
                         max_recovery_attempts, created_at, completed_at)
                     SELECT %s, name, status, inputs, output, max_recovery_attempts,
                            created_at, completed_at FROM {W}.workflows WHERE id = %s""",
                 (twin, wf))  # fmt: skip
    return f"{wf} started a second time as {twin}"


def wrong_tick(conn: Conn, snap: Snapshot) -> str:
    wf = _tick(snap)
    conn.execute(f"UPDATE {W}.workflows SET output = '\"2000-01-01\"' WHERE id = %s", (wf,))
    return f"{wf} returns another time"


def _ledger_row(snap: Snapshot, name: str = shapes.LEDGER_RC) -> LedgerRow:
    """The row of a finished ledger workflow's transaction step ``name``."""
    done = set(_expected(snap, shapes.LEDGER))
    for r in snap.ledger:
        if r.workflow_id in done and r.name == name:
            return r
    raise NoData(f"no ledger row of {name}")


def _insert_ledger(conn: Conn, r: LedgerRow, **changes: Any) -> None:
    row = {"workflow_id": r.workflow_id, "step": r.step, "epoch": r.epoch, "name": r.name,
           "token": r.token, "pid": r.pid, **changes}  # fmt: skip
    conn.execute(
        f"""INSERT INTO {C}.ledger (workflow_id, step, epoch, name, token, pid)
            VALUES (%s, %s, %s, %s, %s, %s)""",
        (row["workflow_id"], row["step"], row["epoch"], row["name"], row["token"], row["pid"]),
    )


def double_commit(conn: Conn, snap: Snapshot) -> str:
    r = _ledger_row(snap)
    _insert_ledger(conn, r)
    return f"{r.workflow_id} step {r.step}'s ledger row committed a second time"


def commit_without_checkpoint(conn: Conn, snap: Snapshot) -> str:
    r = _ledger_row(snap, shapes.LEDGER_PIPE)
    step = max(op.step for op in snap.ops[r.workflow_id]) + 1
    _insert_ledger(conn, r, step=step, token=uuid.uuid4().hex)
    return f"a ledger row of {r.workflow_id} at step {step}, which recorded nothing"


def lost_commit(conn: Conn, snap: Snapshot) -> str:
    r = _ledger_row(snap)
    conn.execute(f"DELETE FROM {C}.ledger WHERE id = %s", (r.id,))
    return f"{r.workflow_id} step {r.step}'s ledger row deleted"


def other_output(conn: Conn, snap: Snapshot) -> str:
    r = _ledger_row(snap)
    conn.execute(
        f"""UPDATE {W}.operations SET output = jsonb_set(output, '{{token}}', '"other"')
            WHERE workflow_id = %s AND step = %s""",
        (r.workflow_id, r.step),
    )
    return f"{r.workflow_id} step {r.step}'s recorded token changed"


def counter_off(conn: Conn, snap: Snapshot) -> str:
    _ledger_row(snap, shapes.LEDGER_COUNT)
    conn.execute(f"UPDATE {C}.ledger_counter SET n = n + 1 WHERE id = 1")
    return "the ledger's counter incremented without a transaction step"


CASES = [
    Case("workflow left PENDING", "final", leave_pending),
    Case("recorded start without its workflow", "final", delete_workflow),
    Case("output changed", "outcome", change_output),
    Case("operation after the outcome", "outcome", op_after_outcome),
    Case("body after its checkpoint", "no_rerun", body_after_checkpoint),
    Case("step body run as a plain call", "as_step", plain_call),
    Case("two bodies at once", "no_overlap", overlapping_body),
    Case("two bodies at once, first one SIGSTOPped", "", overlapping_body, stop_of_first_body),
    Case("queue limit exceeded", "queue_limit", over_the_limit),
    Case("message consumption removed", "messages", unconsume),
    Case("message lost", "messages", delete_message),
    Case("message received twice", "messages", receive_twice),
    Case("stream entry missing", "streams", delete_entry),
    Case("stream entry duplicated", "streams", duplicate_entry),
    Case("stream read wrong", "streams", misread),
    Case("checkpoint of an older epoch", "fencing", older_epoch),
    Case("body of an older epoch after a newer checkpoint", "fencing", stale_body),
    Case("cron tick fired twice", "cron", tick_twice),
    Case("cron tick with another time", "cron", wrong_tick),
    Case("transaction committed twice", "ledger", double_commit),
    Case("transaction committed without its checkpoint", "ledger", commit_without_checkpoint),
    Case("transaction's commit lost", "ledger", lost_commit),
    Case("transaction's recorded output not its row's", "ledger", other_output),
    Case("counter incremented outside a transaction step", "ledger", counter_off),
]


def run_case(
    conn: Conn, case: Case, stops: list[Stop], baseline: set[Any], excused: int
) -> dict[str, Any]:
    result: dict[str, Any] = {"case": case.name, "invariant": case.invariant or "(excused)"}
    with conn.transaction(force_rollback=True):
        try:
            snap = load(conn)
            result["broke"] = case.breaks(conn, snap)
            extra = case.extra_stops(snap) if case.extra_stops else []
        except NoData as exc:
            result.update(ok=False, why=f"no data to break: {exc}")
            return result
        findings = check_all(load(conn), stops + extra)
    new = [v for v in findings.violations if v.key() not in baseline]
    result["reported"] = [f"[{v.invariant}] {v.workflow_id}: {v.summary}" for v in new]
    if case.invariant:
        result["ok"] = bool(new) and all(v.invariant == case.invariant for v in new)
    else:
        result["ok"] = not new and len(findings.excused) > excused
    return result


def selftest(out: Path | None = None, seed: int = 7) -> dict[str, Any]:
    rundir = out or Path(tempfile.mkdtemp(prefix="chaos-selftest-"))
    cfg = RunConfig(duration=20, seed=seed, faults=(), workers=2, out=rundir, drain_deadline=60)
    results: list[dict[str, Any]] = []
    baseline_list: list[str] = []

    def keep(outcome: Outcome) -> None:
        with psycopg.connect(outcome.url, autocommit=True) as conn:
            findings = check_all(load(conn), outcome.stops)
            baseline = {v.key() for v in findings.violations}
            baseline_list.extend(
                f"[{v.invariant}] {v.workflow_id}: {v.summary}" for v in findings.violations
            )
            for case in CASES:
                results.append(run_case(conn, case, outcome.stops, baseline, len(findings.excused)))

    execute(cfg, keep)
    ok = bool(results) and all(r["ok"] for r in results)
    lines = [f"chaos selftest (clean run in {rundir}): {'ok' if ok else 'FAILED'}"]
    if baseline_list:
        lines.append(f"  the clean run itself had {len(baseline_list)} violation(s) (baseline):")
        lines += [f"    {b}" for b in baseline_list[:10]]
    for r in results:
        mark = "ok  " if r["ok"] else "FAIL"
        lines.append(
            f"  {mark} {r['case']}: expects {r['invariant']}; {r.get('broke') or r.get('why')}"
        )
        lines += [f"         reported {x}" for x in r.get("reported", [])[:4]]
    return {"ok": ok, "cases": results, "baseline": baseline_list, "text": "\n".join(lines)}
