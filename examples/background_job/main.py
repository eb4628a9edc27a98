"""A long batch job in small durable steps that survives a kill and a deploy of new code.

python main.py                # run (or resume) the job with the code of release v1
python main.py --v2           # ... with release v2, which validates every batch first
python main.py status         # in another terminal: how far it got
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import warehouse

import durably

RECORDS, BATCH = 200, 10
BATCHES = RECORDS // BATCH
WORK = 0.25  # seconds of "work" per batch: think minutes, in a real job
# The release this process runs. In real life v2 is the next deploy of this file; here a
# flag switches the new code on, so one file shows both.
VERSION = "v2" if "--v2" in sys.argv[1:] else "v1"

# A release name as the app's version: the workflow records the release that started
# it, and v2 says it can replay v1's executions (their differences are patched below).
# The fixed executor ID lets a restarted process take its own unfinished work back at
# once, instead of waiting for the dead process's lease to run out.
app = durably.App(
    executor_id="background-job-example",
    app_version=VERSION,
    recover_versions=["v1"] if VERSION == "v2" else None,
)


def record(i: int) -> int:
    """Record ``i`` of the day's data (made up, and the same in every run)."""
    return (i * 37) % 101


@app.step(retries=3, interval=0.5)
def process_batch(day: str, batch: int) -> int:
    key = f"{day}/batch-{batch:02d}"  # the batch's own key, whichever step number it has
    warehouse.note(warehouse.RUNS, key, f"{os.getpid()} {VERSION}")
    first, last = (batch - 1) * BATCH, batch * BATCH - 1
    time.sleep(WORK)
    total = sum(record(i) for i in range(first, last + 1))
    warehouse.write_once(warehouse.OUTPUT, key, f"records={first}-{last} sum={total} by={VERSION}")
    print(f"batch {batch:2d}/{BATCHES}: records {first}-{last}, sum {total} ({VERSION})")
    return total


@app.step(retries=3, interval=0.5)
def validate_batch(day: str, batch: int) -> int:
    """New in v2: check a batch's records before processing it."""
    key = f"{day}/batch-{batch:02d}"
    records = range((batch - 1) * BATCH, batch * BATCH)
    bad = [i for i in records if not 0 <= record(i) <= 100]
    if bad:
        raise ValueError(f"{key}: records out of range: {bad}")
    warehouse.write_once(warehouse.CHECKS, key, str(os.getpid()))
    return BATCH


@app.workflow()  # no timeout: it runs for as long as the work takes
def nightly_export(day: str) -> dict[str, Any]:
    total = 0
    validating = False
    for batch in range(1, BATCHES + 1):
        # v2 validates each batch before processing it: a new step, so a change of the
        # operations the workflow calls. `patched` answers False where an execution
        # recorded the old code's next step (the batches v1 did, replayed as they were)
        # and True, with a marker recorded, at the first batch run live by v2. The answer
        # is kept: from there on this execution validates every batch.
        if VERSION == "v2" and not validating:
            validating = durably.patched("validate-batches")
        if validating:
            validate_batch(day, batch)
        total += process_batch(day, batch)
        durably.set_event("progress", {"batches": batch, "of": BATCHES, "total": total})
    return {"day": day, "batches": BATCHES, "records": RECORDS, "total": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "status"])
    parser.add_argument("--day", default="2026-12-04", help="which day's data to export")
    parser.add_argument("--v2", action="store_true", help="run the new release's code")
    args = parser.parse_args()
    job_id = f"export-{args.day}"  # from the input: a second run resumes, it starts nothing
    if args.command == "status":
        with durably.Client() as client:
            progress = client.get_event(job_id, "progress", timeout=0)
        print(json.dumps(progress) if progress else f"{job_id}: no batch done yet")
        return
    with app:
        before = app.list_workflows(ids=[job_id])
        handle = nightly_export.options(id=job_id).start(args.day)
        if before:
            print(f"resumed {job_id}, started by {before[0].app_version}, code {VERSION}")
        else:
            print(f"started {job_id} with code {VERSION}")
        result = handle.result()
    print(f"result: {json.dumps(result)}")


if __name__ == "__main__":
    main()
