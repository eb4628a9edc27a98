"""``durably demo``: the worker is killed after step 2 and a new one finishes the workflow."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import durably


def durably_command() -> list[str]:
    script = Path(sys.executable).parent / "durably"
    if script.exists():
        return [str(script)]
    found = shutil.which("durably")
    return [found] if found else [sys.executable, "-m", "durably.cli"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*durably_command(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_demo_resumes_in_a_new_process(pg_url: str, schema: str, tmp_path: Path) -> None:
    done = run_cli("demo", "--database-url", pg_url, "--schema", schema, cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr

    # Which steps each worker process started, from its prefixed output.
    started: dict[int, list[int]] = {}
    for pid, step in re.findall(r"^\[worker \d+ pid (\d+)\] step (\d)/4 \w+: started", out, re.M):
        started.setdefault(int(pid), []).append(int(step))
    assert len(started) == 2, out
    first, second = started  # in order of appearance
    assert started[first][:2] == [1, 2]
    assert 1 not in started[second] and 2 not in started[second]
    assert started[second][-2:] == [3, 4]

    # The summary table: who recorded each step.
    table = re.findall(r"^\[demo\]\s+(\d)\s+(\w+)\s+(\d+)\s+worker (\d)\s", out, re.M)
    assert [(int(n), name, int(pid)) for n, name, pid, _ in table] == [
        (1, "reserve_inventory", first),
        (2, "charge_payment", first),
        (3, "create_shipment", second),
        (4, "send_confirmation", second),
    ], out
    assert "steps 1-2 ran once" in out and "not re-run" in out

    match = re.search(r"^\[demo\] workflow (order-\S+): SUCCESS$", out, re.M)
    assert match, out
    workflow_id = match.group(1)
    assert f'"order": "{workflow_id}"' in out  # the final result is shown

    with psycopg.connect(pg_url, autocommit=True) as conn:
        row: Any = conn.execute(
            sql.SQL("SELECT status, output FROM {}.workflows WHERE id = %s").format(
                sql.Identifier(schema)
            ),
            (workflow_id,),
        ).fetchone()
        steps = conn.execute(
            sql.SQL(
                "SELECT step, output->>'pid' FROM {}.operations WHERE workflow_id = %s "
                "ORDER BY step"
            ).format(sql.Identifier(schema)),
            (workflow_id,),
        ).fetchall()
    assert row is not None and row[0] == "SUCCESS"
    assert row[1]["status"] == "confirmed"
    assert steps == [(1, str(first)), (2, str(first)), (3, str(second)), (4, str(second))]
    # With a database URL nothing is written to the working directory.
    assert not (tmp_path / ".durably").exists()

    # A second run in a row works too, with its own workflow.
    again = run_cli("demo", "--database-url", pg_url, "--schema", schema, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    second_id = re.search(r"^\[demo\] workflow (order-\S+): SUCCESS$", again.stdout, re.M)
    assert second_id and second_id.group(1) != workflow_id


def test_demo_reports_an_unreachable_database(tmp_path: Path) -> None:
    done = run_cli(
        "demo",
        "--database-url",
        "postgresql://nobody@127.0.0.1:1/none",
        "--schema",
        "durably_demo_unreachable",
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "durably demo failed" in done.stderr
    assert "Traceback" not in done.stderr


def test_version(tmp_path: Path) -> None:
    done = run_cli("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"durably {durably.__version__}"


def test_no_command_prints_help(tmp_path: Path) -> None:
    done = run_cli(cwd=tmp_path)
    assert done.returncode == 2
    assert "demo" in done.stderr
