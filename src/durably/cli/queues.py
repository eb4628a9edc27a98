"""``durably queues``: depth, running work and throughput of every queue."""

from __future__ import annotations

from typing import Any

import click

from durably.cli.common import (
    Where,
    connected,
    console,
    database_options,
    iso,
    json_option,
    print_json,
)
from durably.humane import duration
from durably.queue_stats import MAX_MINUTES, QueueStats

# Characters of a sparkline, lowest to highest.
_BARS = "▁▂▃▄▅▆▇█"


def queue_json(stats: QueueStats) -> dict[str, Any]:
    """One queue's figures as ``--json`` prints them."""
    return {
        "queue": stats.queue,
        "depth": stats.depth,
        "delayed": stats.delayed,
        "running": stats.running,
        "started_last_minute": stats.started_last_minute,
        "started_per_minute": list(stats.started_per_minute),
        "oldest_enqueued_at": iso(stats.oldest_enqueued_at),
        "oldest_wait_seconds": (
            stats.oldest_wait.total_seconds() if stats.oldest_wait is not None else None
        ),
        "concurrency": stats.concurrency,
        "workers": stats.workers,
    }


def sparkline(counts: tuple[int, ...]) -> str:
    """Counts as a row of bars, scaled to the largest (all lowest when none)."""
    top = max(counts, default=0)
    if top == 0:
        return _BARS[0] * len(counts)
    return "".join(_BARS[round(n / top * (len(_BARS) - 1))] for n in counts)


@click.command("queues")
@click.option(
    "--minutes",
    type=click.IntRange(min=1, max=MAX_MINUTES),
    default=15,
    show_default=True,
    help="how many minutes of starts the sparkline covers",
)
@json_option
@database_options
def queues_command(
    minutes: int, as_json: bool, database_url: str | None, data_dir: str | None, schema: str
) -> int:
    """Every queue: work waiting (depth, delayed), running, starts per minute, oldest wait."""
    with connected(Where(database_url, data_dir, schema)) as client:
        found = client.queue_stats(minutes=minutes)
    if as_json:
        print_json([queue_json(stats) for stats in found])
        return 0
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("QUEUE", "DEPTH", "DELAYED", "RUNNING", "LIMIT", "WORKERS", "STARTED/MIN"):
        table.add_column(column, no_wrap=True, justify="left" if column == "QUEUE" else "right")
    table.add_column("OLDEST WAIT", no_wrap=True, justify="right")
    table.add_column(f"STARTS, LAST {minutes} MIN", no_wrap=True)
    for stats in found:
        wait = stats.oldest_wait
        table.add_row(
            *map(
                Text,
                (
                    stats.queue,
                    str(stats.depth),
                    str(stats.delayed),
                    str(stats.running),
                    "-" if stats.concurrency is None else str(stats.concurrency),
                    str(stats.workers),
                    str(stats.started_last_minute),
                    "-" if wait is None else duration(wait),
                    sparkline(stats.started_per_minute),
                ),
            )
        )
    out = console()
    if found:
        out.print(table)
    out.print(f"{len(found)} queue(s)", highlight=False)
    return 0
