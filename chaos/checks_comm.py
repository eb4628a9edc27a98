"""Invariants of communication: messages delivered exactly once, streams complete and read
back as written. Evidence comes from durably's messages, operations and streams tables,
compared with what the suite planned (``chaos.expected``) and read (``chaos.stream_reads``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from chaos import shapes
from chaos.snapshot import FINAL, Message, Snapshot
from chaos.violations import Violation


def _message_id(value: Any) -> str | None:
    return str(value["id"]) if isinstance(value, dict) and "id" in value else None


def _msg(m: Message) -> dict[str, Any]:
    return {"row": m.id, "value": m.value, "key": m.key, "consumed_step": m.consumed_step,
            "consumed_at": None if m.consumed_at is None else round(m.consumed_at, 4)}  # fmt: skip


def check_messages(snap: Snapshot) -> list[Violation]:
    found: list[Violation] = []
    by_workflow: dict[str, list[Message]] = defaultdict(list)
    for m in snap.messages:
        by_workflow[m.workflow_id].append(m)
    receivers = set(by_workflow) | {
        e.workflow_id for e in snap.expected.values() if e.workflow == shapes.RECEIVER
    }
    for wf_id in sorted(receivers):
        found += _check_receiver(snap, wf_id, by_workflow.get(wf_id, []))
    return found


def _check_receiver(snap: Snapshot, wf_id: str, messages: list[Message]) -> list[Violation]:
    found: list[Violation] = []

    def bad(summary: str, **evidence: Any) -> None:
        found.append(Violation("messages", wf_id, summary, evidence))

    recvs = {op.step: op for op in snap.ops.get(wf_id, []) if op.kind == "recv"}
    received: dict[int, str | None] = {}
    for step, op in recvs.items():
        output = op.output if isinstance(op.output, dict) else {}
        if "message" in output:
            received[step] = _message_id(output["message"])
    for mid, n in Counter(received.values()).items():
        if n > 1:
            steps = sorted(s for s, r in received.items() if r == mid)
            bad(f"message {mid} received {n} times", steps=steps)
    consumed = {}
    for m in messages:
        if m.consumed_at is None:
            continue
        consumed[m.id] = m
        got = received.get(m.consumed_step) if m.consumed_step is not None else None
        if got != _message_id(m.value):
            bad(f"message {_message_id(m.value)} consumed at step {m.consumed_step} but not "
                "received there", message=_msg(m), received_there=got)  # fmt: skip
    for step, mid in received.items():
        matches = [m for m in consumed.values() if m.consumed_step == step]
        if not any(_message_id(m.value) == mid for m in matches):
            bad(f"step {step} received message {mid} that no consumed row holds",
                consumed_at_step=[_msg(m) for m in matches])  # fmt: skip
    exp = snap.expected.get(wf_id)
    if exp is None or exp.workflow != shapes.RECEIVER:
        return found
    stored = Counter(_message_id(m.value) for m in messages)
    for mid in exp.meta.get("messages", []):
        sender = snap.workflows.get(mid.rsplit("/", 1)[0])
        if stored[mid] == 0 and sender is not None and sender.status not in FINAL:
            continue  # its sender never finished: reported by check_final
        if stored[mid] == 0:
            bad(f"message {mid} was never stored (lost when sent)")
        elif stored[mid] > 1:
            bad(f"message {mid} stored {stored[mid]} times",
                rows=[_msg(m) for m in messages if _message_id(m.value) == mid])  # fmt: skip
    wf = snap.workflows.get(wf_id)
    if wf is not None and wf.status in FINAL:
        for m in messages:
            if m.consumed_at is None:
                bad(f"message {_message_id(m.value)} never delivered", message=_msg(m),
                    receiver_status=wf.status, receiver_output=wf.output)  # fmt: skip
    return found


def check_streams(snap: Snapshot) -> list[Violation]:
    found: list[Violation] = []
    for exp in snap.expected.values():
        if exp.workflow != shapes.WRITER:
            continue
        wf_id, want = exp.workflow_id, list(exp.meta.get("stream", []))

        def bad(summary: str, wf_id: str = wf_id, **evidence: Any) -> None:
            found.append(Violation("streams", wf_id, summary, evidence))

        wf = snap.workflows.get(wf_id)
        if wf is None or wf.status not in FINAL:
            continue  # reported by check_final
        entries = snap.streams.get(f"{wf_id}/{shapes.STREAM_KEY}", [])
        values = [v for _, v, closed in entries if not closed]
        closes = [step for step, _, closed in entries if closed]
        if wf.status == "SUCCESS":
            if values != want:
                missing = [v for v in want if v not in values]
                doubled = [v for v, n in Counter(values).items() if n > 1]
                bad("stream entries differ from what was written", written=want,
                    stored=values, missing=missing, duplicated=doubled)  # fmt: skip
            if len(closes) != 1 or (entries and not entries[-1][2]):
                bad("stream not closed exactly once, at its end", closes=closes)
        read = snap.stream_reads.get(wf_id)
        if read is None:
            if exp.origin == "driver":
                bad("the driver's read of this stream was not recorded")
            continue
        got, complete, note = read
        if got != want:
            bad("the reader read something else than was written", written=want, read=got,
                complete=complete, note=note)  # fmt: skip
    return found
