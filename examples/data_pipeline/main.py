"""An observable data pipeline: a parent workflow fans 40 chunk workflows out on a limited
queue, fans their aggregates back in, and publishes its progress as an event.

    python main.py                  run (or resume) the pipeline and print its progress
    python main.py progress [ID]    from another shell: read the progress event
"""

from __future__ import annotations

import argparse
import sys

import records
import warehouse

import durably

# A fixed executor ID: a run restarted after a crash takes its own unfinished workflows
# back at once instead of waiting for their lease to expire.
app = durably.App(executor_id="data-pipeline")

# Both limits hold in the database, across every worker process on every machine.
chunks_queue = app.queue("chunks", concurrency=4, rate_limit=(10, 1.0))


def say(line: str) -> None:
    sys.stdout.write(line + "\n")  # one write per line: chunks run in threads side by side


@app.step(retries=3, interval=0.2)
def aggregate_chunk(index: int) -> dict[str, int]:
    """Read one chunk, sum it, and load the sum into the warehouse.

    The body may run twice if the worker dies before its checkpoint commits, so the load
    carries ``durably.step_key()``: the warehouse keeps the first and ignores the rest."""
    amounts = records.read_chunk(index)
    total = sum(amounts)
    name = f"chunk-{index:02d}"
    fresh = warehouse.load(durably.step_key(), name, len(amounts), total)
    note = "" if fresh else " (already loaded: the warehouse ignored the repeat)"
    say(f"  {name}: {len(amounts)} records, sum {total}{note}")
    return {"records": len(amounts), "total": total}


@app.workflow(name="chunk")
def chunk(index: int) -> dict[str, int]:
    """One chunk of the input: a workflow of its own, so the queue's limits apply to it."""
    return aggregate_chunk(index)


@app.workflow(name="pipeline")
def pipeline(chunks: int) -> dict[str, int]:
    """Fan out ``chunks`` chunk workflows (IDs derived from this one's), then fan in."""
    me = durably.workflow_id()
    handles = chunks_queue.enqueue_many(
        chunk, [(i,) for i in range(chunks)], ids=[f"{me}-chunk-{i:02d}" for i in range(chunks)]
    )
    count, total = 0, 0
    durably.set_event("progress", f"done 0/{chunks}")
    for done, handle in enumerate(handles, start=1):
        part = handle.result()  # a finished child's recorded result: the same on replay
        count += part["records"]
        total += part["total"]
        durably.set_event("progress", f"done {done}/{chunks}")
    return {"chunks": chunks, "records": count, "total": total}


def run(dataset: str, chunks: int) -> None:
    """Start the pipeline, or attach to the one already recorded under this ID."""
    with app:
        handle = pipeline.options(id=f"pipeline-{dataset}").start(chunks)
        say(f"pipeline {handle.id}: {chunks} chunks on queue 'chunks' (4 at once, 10/s)")
        shown = None
        while True:
            try:
                result = handle.result(timeout=0.5)
                break
            except durably.ResultTimeout:
                progress = app.get_event(handle.id, "progress", timeout=0)
                if progress != shown:
                    say(f"progress: {progress}")
                    shown = progress
        say(f"progress: {app.get_event(handle.id, 'progress', timeout=0)}")
        expected = records.expected_total(chunks)
        say(f"aggregate: {result['records']} records, sum {result['total']}")
        say("correct" if result["total"] == expected else f"WRONG: expected {expected}")


def show_progress(workflow_id: str) -> None:
    """What another process sees: the Client reads the event by ID, without the code."""
    with durably.Client() as client:
        try:
            status = client.handle(workflow_id).status().value
        except durably.WorkflowNotFound:
            status = "not started"
        progress = client.get_event(workflow_id, "progress", timeout=0)
        say(f"{workflow_id}: {status}, {progress or 'no progress yet'}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "progress"])
    parser.add_argument("workflow_id", nargs="?", default="pipeline-sales-2026")
    parser.add_argument("--dataset", default="sales-2026")
    parser.add_argument("--chunks", type=int, default=40)
    args = parser.parse_args(argv)
    if args.command == "progress":
        show_progress(args.workflow_id)
    else:
        run(args.dataset, args.chunks)


if __name__ == "__main__":
    main(sys.argv[1:])
