"""The workload's shapes as data: which workflows to start, with which IDs and arguments,
and what each must return. Pure functions of a seeded ``random.Random``: the driver and
the workers plan with them, the checks compare against what they planned."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from chaos.config import LIMITED_QUEUE, UNLIMITED_QUEUE

# Workflow names (registered by chaos.workload).
RETRY = "chaos.retry"
PARENT = "chaos.parent"
CHILD = "chaos.child"
SLEEPER = "chaos.sleeper"
RECEIVER = "chaos.receiver"
SENDER = "chaos.sender"
SETTER = "chaos.setter"
GETTER = "chaos.getter"
WRITER = "chaos.writer"
LIMITED = "chaos.limited"
ASYNC_PAIR = "chaos.async_pair"
LEDGER = "chaos.ledger"
LEDGER_ASYNC = "chaos.ledger_async"

# The transaction steps of the ledger workflows (chaos.ledger); the counting ones
# increment the shared counter, once per commit.
LEDGER_COUNT = "chaos.ledger_count"
LEDGER_RC = "chaos.ledger_rc"
LEDGER_PIPE = "chaos.ledger_pipe"
LEDGER_COUNT_ASYNC = "chaos.ledger_count_async"
LEDGER_PIPE_ASYNC = "chaos.ledger_pipe_async"
LEDGER_STEPS = frozenset(
    {LEDGER_COUNT, LEDGER_RC, LEDGER_PIPE, LEDGER_COUNT_ASYNC, LEDGER_PIPE_ASYNC}
)
COUNTING_STEPS = frozenset({LEDGER_COUNT, LEDGER_COUNT_ASYNC})

TOPIC = "mail"
EVENT_KEY = "ready"
STREAM_KEY = "s"
# Waits of the workload (recv, get_event) end after this long: a lost message shows as a
# wrong result within the drain instead of a workflow that never ends.
WAIT_TIMEOUT = 45.0

# Shapes and how often each is picked, for the driver (queued starts) and the workers
# (top-level starts).
DRIVER_WEIGHTS = {
    "retry": 2, "children": 2, "sleep_short": 1, "sleep_long": 1, "mailbox": 2,
    "events": 1, "stream": 1, "limited": 3, "async": 1, "ledger": 2, "ledger_async": 1,
}  # fmt: skip
WORKER_WEIGHTS = {
    "retry": 2, "children": 2, "sleep_short": 1, "sleep_long": 1, "events": 1, "async": 1,
    "ledger": 2, "ledger_async": 1,
}  # fmt: skip


@dataclass(frozen=True)
class Start:
    """One workflow to start, and the outcome it must record."""

    workflow_id: str
    shape: str
    workflow: str
    args: list[Any]
    expected: Any
    queue: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Send:
    """A message the driver sends from outside any workflow, with an idempotency key."""

    target: str
    message: dict[str, Any]
    key: str


@dataclass
class Group:
    """What one pick of a shape starts, sends and reads (in that order)."""

    shape: str
    starts: list[Start] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    reads: list[tuple[str, list[int]]] = field(default_factory=list)  # (writer, values)


def pick(rng: random.Random, weights: dict[str, int]) -> str:
    names = sorted(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def stream_values(k: int) -> list[int]:
    return [i * 3 + 1 for i in range(k)]


def plan(shape: str, rng: random.Random, base: str, queued: bool) -> Group:
    """The group of ``shape`` whose workflow IDs start with ``base``; ``queued`` puts the
    starts on the workload's queues (the driver), else they are top-level starts."""
    queue = UNLIMITED_QUEUE if queued else None
    group = Group(shape)
    add = group.starts.append
    if shape == "retry":
        values = [rng.randint(1, 100) for _ in range(rng.randint(1, 3))]
        add(Start(base, shape, RETRY, [values], sum(2 * v for v in values), queue))
    elif shape == "children":
        first, n = rng.randint(1, 1000), rng.randint(2, 3)
        expected = sum(2 * (first + i) + 1 for i in range(n))
        add(Start(base, shape, PARENT, [first, n], expected, queue))
    elif shape in ("sleep_short", "sleep_long"):
        seconds = round(
            rng.uniform(0.1, 0.5) if shape == "sleep_short" else rng.uniform(1.5, 3.0), 2
        )
        v = rng.randint(1, 100)
        add(Start(base, shape, SLEEPER, [seconds, v], (v + 1) * 2, queue))
    elif shape == "events":
        value = f"{base}:{rng.randint(1, 10**6)}"
        setter_id = f"{base}-set"
        add(Start(f"{base}-get", shape, GETTER, [setter_id, WAIT_TIMEOUT], value, queue))
        add(Start(setter_id, shape, SETTER, [value], value, queue))
    elif shape == "async":
        a, b = rng.randint(1, 100), rng.randint(1, 100)
        add(Start(base, shape, ASYNC_PAIR, [a, b], a + b + 2, queue))
    elif shape == "ledger":
        # count (v+1, holding count_ms between its read and write), then read committed
        # (2a, holding hold_ms), then pipelined (b+3): three transaction steps.
        v, count_ms, hold_ms = rng.randint(1, 100), rng.randint(10, 60), rng.randint(50, 250)
        add(Start(base, shape, LEDGER, [v, count_ms, hold_ms], 2 * v + 5, queue,
                  {"transactions": 3}))  # fmt: skip
    elif shape == "ledger_async":
        # count (v+1) and pipelined (v+3) at once, under asyncio.gather.
        v, count_ms = rng.randint(1, 100), rng.randint(10, 60)
        add(Start(base, shape, LEDGER_ASYNC, [v, count_ms], 2 * v + 4, queue,
                  {"transactions": 2}))  # fmt: skip
    elif shape == "mailbox":
        _mailbox(group, rng, base, queue)
    elif shape == "stream":
        k = rng.randint(3, 6)
        values = stream_values(k)
        add(Start(base, shape, WRITER, [k], k, queue, {"stream": values}))
        group.reads.append((base, values))
    elif shape == "limited":
        i, ms = rng.randint(1, 1000), rng.randint(150, 400)
        add(Start(base, shape, LIMITED, [i, ms], 2 * i, LIMITED_QUEUE if queued else None))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return group


def _mailbox(group: Group, rng: random.Random, base: str, queue: str | None) -> None:
    """A receiver summing 4 messages: 2 sent by a sender workflow, 2 by the driver."""
    receiver_id, sender_id = f"{base}-recv", f"{base}-send"
    items: list[dict[str, Any]] = [
        {"id": f"{sender_id}/{i}", "v": rng.randint(1, 1000)} for i in range(2)
    ]
    direct: list[dict[str, Any]] = [
        {"id": f"{receiver_id}/d{i}", "v": rng.randint(1, 1000)} for i in range(2)
    ]
    everything = items + direct
    expected = {"sum": sum(m["v"] for m in everything), "count": len(everything)}
    meta = {"messages": sorted(str(m["id"]) for m in everything)}
    group.starts.append(
        Start(
            receiver_id, "mailbox", RECEIVER, [len(everything), WAIT_TIMEOUT], expected, queue, meta
        )
    )
    group.starts.append(
        Start(sender_id, "mailbox", SENDER, [receiver_id, items], len(items), queue)
    )
    group.sends.extend(Send(receiver_id, m, str(m["id"])) for m in direct)
