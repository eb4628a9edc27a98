"""DBOS Transact on the same PostgreSQL in the same run (``--with-dbos``).

DBOS is never a dependency of durably: it is installed, once, into a virtual environment
of the benchmark's own, ``benchmarks/.venv-dbos`` (git-ignored), together with matplotlib
for the chart. ``benchmarks/dbos_side.py`` runs there as a subprocess, one per benchmark,
against the server being measured, in a schema of its own that is dropped afterwards; it
prints its samples as JSON under the same keys as durably's figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from psycopg import sql

from benchmarks.core import Context, Measurement

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-dbos"
SIDE = HERE / "dbos_side.py"
DBOS_VERSION = "3.4.0"
REQUIREMENTS = (f"dbos=={DBOS_VERSION}", "matplotlib")
# The benchmarks dbos_side.py implements (the others have no DBOS counterpart).
COUNTERPARTS = frozenset({
    "sequential-sync", "sequential-async", "transaction-step", "throughput-sync",
    "throughput-async",
    "queue-throughput", "enqueue-latency", "client-enqueue", "sleeping", "recovery",
})  # fmt: skip


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """The benchmark venv's interpreter, creating the venv (and installing DBOS and
    matplotlib into it) the first time."""
    python = venv_python()
    marker = VENV / ".installed"
    wanted = " ".join(REQUIREMENTS)
    if python.exists() and marker.exists() and marker.read_text().strip() == wanted:
        return python
    print(f"creating {VENV} with {wanted} (once)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *REQUIREMENTS],
        check=True,
    )  # fmt: skip
    marker.write_text(wanted + "\n")
    return python


def run_side(ctx: Context, name: str) -> list[Measurement]:
    """Run DBOS's counterpart of benchmark ``name``; its figures, keyed like durably's."""
    schema = f"dbos_bench_{uuid.uuid4().hex[:8]}"
    argv = [
        str(venv_python()), "-P", str(SIDE), name, "--url", ctx.url, "--schema", schema,
        "--repeats", str(ctx.repeats),
    ]  # fmt: skip
    if ctx.quick:
        argv.append("--quick")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, text=True, env=env, timeout=3600, check=False
        )
    finally:
        with ctx.connect() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"measurements"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"dbos_side.py {name} failed (exit {done.returncode})")
    return [Measurement.from_json(m) for m in json.loads(lines[-1])["measurements"]]


def draw_chart(results_json: Path, png: Path) -> bool:
    """Draw the chart with the benchmark venv's matplotlib; False when there is no venv."""
    python = venv_python()
    if not python.exists():
        return False
    done = subprocess.run(
        [str(python), "-P", str(HERE / "chart.py"), str(results_json), str(png)], check=False
    )
    return done.returncode == 0
