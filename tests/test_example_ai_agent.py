"""examples/ai_agent: an agent killed mid-run resumes without paying again for a call."""

from __future__ import annotations

from typing import Any

import durably
from examples_harness import counted, lines, wait_for_lines

AGENT_ID = "trip-agent-1"
# Six model calls and five tool calls: the whole run, each billed once.
PAID_CALLS = 11


def test_agent_killed_mid_run_resumes_pays_each_call_once_and_books_after_approval(
    example: Any, pg_url: str, schema: str
) -> None:
    ex = example("ai_agent")
    paid, requests = ex.workdir / "paid_calls.log", ex.workdir / "requests.log"

    tail = ex.start("main.py", "tail", log="tail")  # a second process follows the stream
    first = ex.start("main.py", log="first")
    ex.wait_for_output(f"started agent {AGENT_ID}", log="first")
    wait_for_lines(paid, 3)
    ex.kill(first)

    # What the dead run had recorded: these calls must never be made again.
    client = durably.Client(pg_url, schema=schema)
    recorded = {
        f"{AGENT_ID}:{s.step}"
        for s in client.list_steps(AGENT_ID)
        if s.name in ("ask_model", "run_tool")
    }
    billed_before = len(lines(paid))
    # Killed mid-run: some calls were paid, and the booking (after the approval) was not.
    assert 3 <= billed_before < PAID_CALLS - 1, lines(paid)
    assert all(key in {line.split()[0] for line in lines(paid)} for key in recorded)

    second = ex.start("main.py", log="second")
    ex.wait_for_output(f"resumed agent {AGENT_ID}", log="second")
    ex.wait_for_output("waiting for a human to approve book_trip", log="tail")
    assert "approved" in ex.run("main.py", "approve", log="approve")
    out = ex.finish(second)
    streamed = ex.finish(tail)

    # Each paid call once: the ledger of billed calls has every key exactly once.
    billed = counted(paid)
    assert len(billed) == PAID_CALLS and set(billed.values()) == {1}, billed
    # And not because the service forgave a repeat: the resumed process sent no request
    # for a call recorded before the kill.
    resent = [
        line for line in lines(requests) if line.split()[0] == str(second.pid)
        and line.split()[1] in recorded
    ]  # fmt: skip
    assert not resent, resent
    # The service was unreliable, and the steps retried through it.
    outcomes = {line.split()[3] for line in lines(requests)}
    assert {"503", "ok"} <= outcomes, outcomes

    # The stream, read live by another process across the kill, had the whole story.
    for text in (
        "model wants search_flights",
        "waiting for a human to approve book_trip",
        "book_trip approved",
        '"confirmation": "BK-7Q2X"',
        "[11 calls, 53c] done",
    ):
        assert text in streamed, streamed
    assert '"answer": "Booked TP 540' in out and '"calls": 11' in out, out
    assert client.handle(AGENT_ID).result(timeout=5)["cents"] == 53
