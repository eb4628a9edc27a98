"""Settings of a chaos run: what the command line chooses and the fixed choices of the suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The durably schema of the workers, and the suite's own schema (expected outcomes,
# side effects, stream reads).
WF_SCHEMA = "chaos_wf"
CHAOS_SCHEMA = "chaos"

# Every fault kind; a run without --faults injects the defaults. ``failover`` runs the
# database as a primary with a synchronous standby (chaos.replica) and is asked for by name.
FAULTS = ("sigkill", "pg_restart", "terminate", "sigstop", "lost_reply", "failover")
DEFAULT_FAULTS = ("sigkill", "pg_restart", "terminate", "sigstop", "lost_reply")

# Worker settings: a short lease so takeovers happen within a run, park_after short
# enough that the longer sleeps and waits park, a quick fallback poll.
LEASE = 4.0
PARK_AFTER = 1.0
POLL_INTERVAL = 1.0

# Queues of the workload.
LIMITED_QUEUE = "limited"
LIMITED_CONCURRENCY = 2
UNLIMITED_QUEUE = "unlimited"

# The cron schedule fires every second (6 fields: the first is seconds).
CRON_NAME = "chaos.tick"
CRON_EXPR = "* * * * * *"

# How long the drain may take, and how long any single database access of the driver
# or of a step body may keep retrying.
DRAIN_DEADLINE = 120.0
DB_DEADLINE = 60.0


@dataclass
class RunConfig:
    """One run: ``duration`` seconds of load and faults, then a drain and the checks."""

    duration: float = 60.0
    seed: int = 7
    faults: tuple[str, ...] = DEFAULT_FAULTS
    workers: int = 3
    out: Path | None = None  # run directory (logs, report); a temp dir by default
    rate: float = 4.0  # driver starts per second (a start may be a group of workflows)
    worker_rate: float = 1.0  # each worker's own starts per second
    lost_reply_p: float = 0.03  # chance to drop the reply of a write while enabled
    drain_deadline: float = DRAIN_DEADLINE
    extra: dict[str, object] = field(default_factory=dict)

    def check(self) -> None:
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; choose among {', '.join(FAULTS)}")
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if self.duration <= 0:
            raise ValueError("--duration must be positive")
        if not 0 <= self.lost_reply_p <= 1:
            raise ValueError("the lost-reply probability must be within 0..1")
