"""What an idle worker sends to the database, counted by ``pg_stat_statements``.

The issue: "An idle worker sends at most one query every few seconds (LISTEN carries
wake-ups)". Each test launches an app with the defaults (``lease`` 15 s,
``poll_interval`` 5 s) on a database of its own in a private PostgreSQL that preloads
``pg_stat_statements`` (``benchmarks.idle``, which also prints the per-statement
breakdown: ``python -m benchmarks.idle``), waits until the heartbeat has been renewed
once (start-up is over), resets that database's statistics and counts every statement
the app sends in a ``WINDOW``-second window, from another database (so the test's own
queries are not counted). The window is the measured quantity, so it is waited out on
the clock; the count is extrapolated to a minute.

The bound, ``MAX_PER_MINUTE`` = 24 (one statement every 2.5 s on average), includes the
heartbeat: renewing a 15 s lease four times a lease is 16 a minute, and each beat also
surveys what is due (parked workflows, deadlines, ready queues, expired executors,
schedule ticks), so an idle worker needs nothing else. A 30 s window holds 8 or 9 beats
depending on phase (16-18 a minute); the rest of the bound is room for one stray check.
Before the keeper was rebuilt around the survey, these cases sent about 94 and 42
statements a minute (a scan per ``poll_interval`` for each duty).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python -m pytest`` has it already; plain ``pytest`` not
    sys.path.insert(0, str(ROOT))

from benchmarks.idle import Traffic, measure, stats_cluster  # noqa: E402
from chaos.pg import Cluster  # noqa: E402

pytestmark = pytest.mark.timeout(150)

WINDOW = 30.0
MAX_PER_MINUTE = 24.0


class TooChatty(AssertionError):
    """The idle worker sent more than the bound allows."""


def check(traffic: Traffic) -> None:
    """The count is live (the heartbeat was seen), and within the bound."""
    assert traffic.calls.get("heartbeat", 0) >= 1, traffic.table()
    if traffic.per_minute() > MAX_PER_MINUTE:
        raise TooChatty(
            f"{traffic.per_minute():.1f} statements a minute > {MAX_PER_MINUTE:g}:\n"
            f"{traffic.table()}"
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A private server (per xdist worker) with pg_stat_statements; a short root keeps
    its unix socket path under the kernel's limit."""
    root = Path(tempfile.mkdtemp(prefix="di-", dir="/tmp"))
    try:
        with stats_cluster(root) as pg:
            yield pg
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_idle_worker_with_workflow_queue_and_schedule(cluster: Cluster) -> None:
    """A worker with a registered workflow, a declared queue and a cron schedule."""
    check(measure(cluster, "declared", WINDOW))


def test_idle_plain_app(cluster: Cluster) -> None:
    """An App with nothing declared: the heartbeat and the fleet-wide duties."""
    check(measure(cluster, "plain", WINDOW))


def test_the_bound_passes_a_quiet_worker_and_fails_a_chatty_one() -> None:
    """``check`` without a server: the beats (and a stray check) pass, a scan per poll fails, and
    a count without a heartbeat is no measurement at all."""
    check(Traffic(60.0, {"heartbeat": 16, "schedule_due": 2}))
    with pytest.raises(TooChatty):
        check(Traffic(30.0, {"heartbeat": 8, "wake_due": 7, "next_wake": 7}))
    with pytest.raises(AssertionError) as failed:
        check(Traffic(30.0, {}))
    assert not isinstance(failed.value, TooChatty)
