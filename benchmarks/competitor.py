"""A competitor measured beside durably in the same run (``--with-dbos``,
``--with-procrastinate``): its venv of the benchmark's own and its side script.

A competitor is never a dependency of durably: it is installed, once, into a virtual
environment under ``benchmarks/`` (git-ignored), and its side script
(``benchmarks/<name>_side.py``, built on ``benchmarks/sidekit.py``) runs there as a
subprocess, one per benchmark, against the server being measured, in a fresh schema of
its own that is dropped afterwards. It prints its samples as JSON under the same keys as
durably's figures, and the runner puts them beside durably's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from benchmarks.core import Context, Measurement

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Competitor:
    """One library measured side by side: ``key`` names its ``--with-KEY`` flag, its
    samples in the results JSON and its venv (``benchmarks/.venv-KEY``); ``label`` heads
    its columns; ``title`` (name and version) goes into the run's header."""

    key: str
    label: str
    title: str
    requirements: tuple[str, ...]
    # The benchmarks its side script implements (the others have no counterpart).
    counterparts: frozenset[str]

    @property
    def venv(self) -> Path:
        return HERE / f".venv-{self.key}"

    @property
    def side(self) -> Path:
        return HERE / f"{self.key}_side.py"

    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def ensure_venv(self) -> Path:
        """The venv's interpreter, creating the venv (and installing the requirements into
        it) the first time, and again when the requirements change."""
        python = self.python()
        marker = self.venv / ".installed"
        wanted = " ".join(self.requirements)
        if python.exists() and marker.exists() and marker.read_text().strip() == wanted:
            return python
        print(f"creating {self.venv} with {wanted} (once)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *self.requirements],
            check=True,
        )  # fmt: skip
        marker.write_text(wanted + "\n")
        return python

    def argv(self, kind: str, *args: str) -> list[str]:
        """The side script as ``kind`` (a benchmark or a helper process) in the venv."""
        return [str(self.python()), "-P", str(self.side), kind, *args]

    def run_side(self, ctx: Context, name: str) -> list[Measurement]:
        """Run the counterpart of benchmark ``name``; its figures, keyed like durably's."""
        schema = f"{self.key}_bench_{uuid.uuid4().hex[:8]}"
        argv = self.argv(
            name, "--url", ctx.url, "--schema", schema, "--repeats", str(ctx.repeats),
            *(["--quick"] if ctx.quick else []),
        )  # fmt: skip
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        try:
            done = subprocess.run(
                argv, stdout=subprocess.PIPE, text=True, env=env, timeout=3600, check=False
            )
        finally:
            with ctx.connect() as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
        lines = [line for line in done.stdout.splitlines() if line.startswith('{"measurements"')]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"{self.side.name} {name} failed (exit {done.returncode})")
        return [Measurement.from_json(m) for m in json.loads(lines[-1])["measurements"]]
