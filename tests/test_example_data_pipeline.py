"""examples/data_pipeline: the pipeline killed with SIGKILL mid-way and run again loads
every chunk into the warehouse once, sums them right, reports 40/40, and the CLI sees
every chunk workflow finished."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from typing import Any

from examples_harness import lines, wait_for_lines

CHUNKS = 40
PIPELINE = "pipeline-sales-2026"
# The warehouse loses its reply to the first load of these (by a checksum of their key).
LOST_REPLIES = {"chunk-05", "chunk-14", "chunk-22", "chunk-26"}


def expected_total() -> int:
    """The sum of every generated record, computed here without the example's code."""
    total = 0
    for index in range(CHUNKS):
        rng = random.Random(index)
        total += sum(rng.randrange(100, 10_000) for _ in range(500))
    return total


def test_data_pipeline_survives_sigkill_and_counts_each_chunk_once(example: Any) -> None:
    ex = example("data_pipeline")
    loads = ex.workdir / "loads.ledger"

    first = ex.start("main.py", log="first")
    wait_for_lines(loads, 8)
    ex.kill(first)
    before = len(lines(loads))
    assert before < CHUNKS, "the pipeline finished before the kill: nothing was interrupted"

    # Another process reads the progress the killed run published.
    assert "pipeline-sales-2026: PENDING, done " in ex.run("main.py", "progress", log="peek")

    out = ex.run("main.py", log="second")
    assert f"aggregate: {CHUNKS * 500} records, sum {expected_total()}" in out
    assert "correct" in out

    # Each chunk loaded exactly once, whatever ran twice: a step body is at least once
    # (LOST_REPLIES' steps ran again after the warehouse's lost reply; a body cut by the
    # kill may have too), and the warehouse ignored every repeated key.
    chunk_ids = Counter(line.split()[1] for line in lines(loads))
    assert chunk_ids == {f"chunk-{i:02d}": 1 for i in range(CHUNKS)}
    assert sum(int(line.split()[3]) for line in lines(loads)) == expected_total()
    attempts = Counter(line.split()[0] for line in lines(ex.workdir / "attempts.ledger"))
    assert set(attempts) == set(chunk_ids)
    assert {c for c, n in attempts.items() if n > 1} >= LOST_REPLIES
    assert "(already loaded" in ex.output("first") + out

    assert "pipeline-sales-2026: SUCCESS, done 40/40" in ex.run("main.py", "progress", log="end")

    command = ["workflows", "list", "--json", "--name", "chunk", "--limit", "100"]
    listed = subprocess.run(
        [sys.executable, "-m", "durably.cli", *command],
        env=ex.env(),
        cwd=ex.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    workflows = json.loads(listed.stdout)
    assert sorted(w["id"] for w in workflows) == [
        f"{PIPELINE}-chunk-{i:02d}" for i in range(CHUNKS)
    ]
    assert {w["status"] for w in workflows} == {"SUCCESS"}
    assert {w["parent_id"] for w in workflows} == {PIPELINE}
