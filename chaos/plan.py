"""The fault plan of a run, drawn from its seed before the run starts: when each fault
happens and its parameters (victim, downtime, how long a stop lasts, whether a kill or
stop is aimed at an open transaction step, ...).

Faults other than lost replies come one after another with pauses between them; lost
replies are windows (switched on, then off) that may overlap the others; within each window
the cron schedule is paused and resumed, and every other window on average a worker is
restarted gracefully, so that the statements of schedule changes, launch and shutdown
lose replies too.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass, field
from typing import Any

from chaos.config import LEASE

WARMUP = 3.0  # seconds of load before the first fault
QUIET_END = 2.0  # no fault starts this close to the end of the load


@dataclass(frozen=True)
class Action:
    at: float  # seconds after the load started
    kind: str  # a fault name, or "lost_reply_on" / "lost_reply_off"
    params: dict[str, Any] = field(default_factory=dict)


def make_plan(seed: int, duration: float, faults: tuple[str, ...], workers: int) -> list[Action]:
    rng = random.Random(f"{seed}:faults")
    actions: list[Action] = []
    kinds = sorted(f for f in faults if f != "lost_reply")
    t = WARMUP
    # Every other fault of each kind (the first, the third, ...) is aimed: it waits
    # (briefly) until a worker it hits has a transaction step open, so that it lands
    # inside one.
    seen: collections.Counter[str] = collections.Counter()
    while kinds and t < duration - QUIET_END:
        kind = rng.choice(kinds)
        params: dict[str, Any] = {}
        busy = 0.0
        if kind == "sigkill":
            params = {"victim": rng.randrange(workers), "same_id": rng.random() < 0.5}
        elif kind == "sigstop":
            params = {"victim": rng.randrange(workers), "hold": round(LEASE + rng.uniform(1, 3), 2)}
            busy = params["hold"]
        elif kind == "pg_restart":
            params = {"downtime": round(rng.uniform(0.5, 3.0), 2)}
            busy = params["downtime"]
        elif kind == "failover":
            busy = 3.0  # the old primary is rebuilt as the new standby meanwhile
        elif kind == "terminate":
            params = {"fraction": round(rng.uniform(0.2, 0.6), 2), "listen": rng.random() < 0.6,
                      "pick": rng.random()}  # fmt: skip
        params["aim"] = seen[kind] % 2 == 0
        seen[kind] += 1
        actions.append(Action(round(t, 2), kind, params))
        t += busy + rng.uniform(2.0, 5.0)
    if "lost_reply" in faults:
        t = rng.uniform(1.0, 3.0)
        while t < duration - QUIET_END:
            length = rng.uniform(4.0, 10.0)
            end = min(t + length, duration)
            actions.append(Action(round(t, 2), "lost_reply_on"))
            actions.append(Action(round(t + 1.0, 2), "lost_reply_extra", {"what": "cron_off"}))
            if rng.random() < 0.5:
                params = {"what": "restart", "victim": rng.randrange(workers)}
                actions.append(Action(round(t + 2.0, 2), "lost_reply_extra", params))
            actions.append(Action(round(t + 3.0, 2), "lost_reply_extra", {"what": "cron_on"}))
            actions.append(Action(round(end, 2), "lost_reply_off"))
            t += length + rng.uniform(2.0, 6.0)
    return sorted(actions, key=lambda a: a.at)
