"""DBOS Transact on the same PostgreSQL in the same run (``--with-dbos``).

DBOS is never a dependency of durably: it is installed, once, into a virtual environment
of the benchmark's own, ``benchmarks/.venv-dbos`` (git-ignored), together with matplotlib
for the chart. ``benchmarks/dbos_side.py`` runs there as a subprocess, one per benchmark,
against the server being measured, in a schema of its own that is dropped afterwards; it
prints its samples as JSON under the same keys as durably's figures (the mechanism is
``benchmarks.competitor``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.competitor import HERE, Competitor

DBOS_VERSION = "3.4.0"
DBOS = Competitor(
    key="dbos",
    label="DBOS",
    title=f"DBOS Transact {DBOS_VERSION}",
    requirements=(f"dbos=={DBOS_VERSION}", "matplotlib"),
    counterparts=frozenset({
        "sequential-sync", "sequential-async", "transaction-step", "throughput-sync",
        "throughput-async",
        "queue-throughput", "enqueue-latency", "client-enqueue", "sleeping", "recovery",
    }),
)  # fmt: skip


def draw_chart(results_json: Path, png: Path) -> bool:
    """Draw the chart with DBOS's venv's matplotlib; False when there is no venv."""
    python = DBOS.python()
    if not python.exists():
        return False
    done = subprocess.run(
        [str(python), "-P", str(HERE / "chart.py"), str(results_json), str(png)], check=False
    )
    return done.returncode == 0
