"""examples/background_job: a batch job killed mid-run finishes on new code, each batch once."""

from __future__ import annotations

from typing import Any

import durably
from examples_harness import counted, lines, wait_for_lines

JOB_ID = "export-2026-12-04"
BATCHES = 20
KEYS = [f"2026-12-04/batch-{n:02d}" for n in range(1, BATCHES + 1)]
# The example's made-up records are (i * 37) % 101 for i in 0..199.
TOTAL = sum((i * 37) % 101 for i in range(200))


def test_job_killed_mid_run_resumes_on_v2_and_does_each_batch_once(
    example: Any, pg_url: str, schema: str
) -> None:
    ex = example("background_job")
    output, runs = ex.workdir / "batches.log", ex.workdir / "runs.log"
    checks = ex.workdir / "validated.log"

    first = ex.start("main.py", log="v1")
    wait_for_lines(output, 4)
    ex.kill(first)

    # What v1 had recorded before the kill: its batches, in order, and no patch marker.
    client = durably.Client(pg_url, schema=schema)
    before = [s for s in client.list_steps(JOB_ID) if s.name == "process_batch"]
    done_by_v1 = len(before)
    assert 3 <= done_by_v1 < BATCHES, before
    assert not [s for s in client.list_steps(JOB_ID) if s.kind == "patch"]
    assert f"started {JOB_ID} with code v1" in ex.output("v1")

    # The deploy: the same command with the new release's code.
    out = ex.run("main.py", "--v2", log="v2")
    assert f"resumed {JOB_ID}, started by v1, code v2" in out, out
    assert f'"total": {TOTAL}' in out, out
    result = client.handle(JOB_ID).result(timeout=5)
    assert result["total"] == TOTAL and result["batches"] == BATCHES

    # Every batch written once, with the sum of its records; the total adds up.
    written = {line.split()[0]: line for line in lines(output)}
    assert sorted(written) == KEYS and set(counted(output).values()) == {1}
    assert sum(int(line.split("sum=")[1].split()[0]) for line in written.values()) == TOTAL
    # The batches v1 recorded are not run again; v2 did the rest. Only the batch the kill
    # cut short (the first one v1 had not recorded) may have started twice: a step's body
    # is at least once, and the warehouse's key kept its output to one line.
    started = counted_keys(runs)
    assert sorted(started) == KEYS, started
    twice = [key for key, n in started.items() if n > 1]
    assert twice in ([], [KEYS[done_by_v1]]), started
    for n, key in enumerate(KEYS, start=1):
        by = written[key].split("by=")[1]
        if n <= done_by_v1:
            assert by == "v1", written[key]
        elif n > done_by_v1 + 1:
            assert by == "v2", written[key]

    # The patched branch ran exactly where it should: for every batch v2 started, and for
    # none that v1 had recorded; its marker sits right after the last batch v1 recorded.
    assert lines(checks) and sorted(counted_keys(checks)) == KEYS[done_by_v1:]
    assert set(counted_keys(checks).values()) == {1}
    steps = client.list_steps(JOB_ID)
    markers = [s for s in steps if s.kind == "patch"]
    assert [m.name for m in markers] == ["validate-batches"], markers
    last_v1 = before[-1].step
    after_v1 = [s for s in steps if s.step > last_v1 and s.kind != "set_event"]
    assert after_v1[0].kind == "patch", after_v1[:3]
    assert [s.name for s in after_v1[1:3]] == ["validate_batch", "process_batch"]
    assert sum(s.name == "process_batch" for s in steps) == BATCHES
    assert sum(s.name == "validate_batch" for s in steps) == BATCHES - done_by_v1


def counted_keys(path: Any) -> dict[str, int]:
    """How many lines of a ledger name each key (its first word)."""
    counts: dict[str, int] = {}
    for line in lines(path):
        key = line.split()[0]
        counts[key] = counts.get(key, 0) + 1
    return counts
