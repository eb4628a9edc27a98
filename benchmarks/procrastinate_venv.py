"""Procrastinate on the same PostgreSQL in the same run (``--with-procrastinate``).

Procrastinate (a PostgreSQL job queue for Python) is never a dependency of durably: it is
installed, once, into a virtual environment of the benchmark's own,
``benchmarks/.venv-procrastinate`` (git-ignored), with psycopg's C implementation at the
version durably is measured with (its psycopg 3 connector runs on it).
``benchmarks/procrastinate_side.py`` runs there as a subprocess, one per queue benchmark,
against the server being measured: it creates Procrastinate's schema in a fresh
PostgreSQL schema of the same database (through ``search_path``), dropped afterwards, and
prints its samples as JSON under the same keys as durably's figures (the mechanism is
``benchmarks.competitor``). ``benchmarks.sustained --engine procrastinate`` uses the same
venv.
"""

from __future__ import annotations

import psycopg

from benchmarks.competitor import Competitor

PROCRASTINATE_VERSION = "3.10.0"
PROCRASTINATE = Competitor(
    key="procrastinate",
    label="Procrastinate",
    title=f"Procrastinate {PROCRASTINATE_VERSION}",
    requirements=(
        f"procrastinate=={PROCRASTINATE_VERSION}",
        f"psycopg[binary,pool]=={psycopg.__version__}",
    ),
    counterparts=frozenset({"queue-throughput", "enqueue-latency", "client-enqueue"}),
)
