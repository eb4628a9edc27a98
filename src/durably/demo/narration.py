"""What the demo prints: its commentary, and the closing table of what ran where."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TextIO

import durably
from durably.demo.children import DemoFailed, Worker
from durably.demo.workflows import STEPS


class Narrator:
    """Prints the demo's own lines, marked ``[demo]``, to ``out``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str = "") -> None:
        print(f"[demo] {text}" if text else "", file=self.out, flush=True)


def workflow_status(app: durably.App, workflow_id: str) -> str:
    return str(app.handle(workflow_id).status())


def summarize(
    app: durably.App,
    workflow_id: str,
    first: Worker,
    second: Worker,
    done_before: int,
    say: Callable[[str], None],
) -> int:
    """Print the table of what ran where; return 0 if it is what durability promises."""
    infos = app.list_workflows(ids=[workflow_id])
    if not infos:
        raise DemoFailed(f"workflow {workflow_id} is missing from the database")
    info = infos[0]
    steps = app.list_steps(workflow_id)
    worker_of = {first.pid: "worker 1", second.pid: "worker 2"}

    rows = [("step", "name", "pid", "ran in", "recorded output")]
    recorded_pids: dict[int, int | None] = {}
    for step in steps:
        output = step.output if isinstance(step.output, dict) else {}
        pid = output.get("pid")
        recorded_pids[step.step] = pid if isinstance(pid, int) else None
        shown = {k: v for k, v in output.items() if k != "pid"} if output else step.output
        rows.append(
            (
                str(step.step),
                step.name.rsplit(".", 1)[-1],
                str(pid) if pid is not None else "-",
                worker_of.get(pid, "?") if isinstance(pid, int) else "-",
                json.dumps(shown) if step.error is None else f"error: {step.error}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]

    say("")
    say(f"workflow {workflow_id}: {info.status}")
    say("")
    for i, row in enumerate(rows):
        cells = [cell.ljust(widths[j]) for j, cell in enumerate(row[:4])]
        say("  " + "  ".join([*cells, row[4]]))
        if i == 0:
            say("  " + "  ".join(["-" * w for w in widths] + ["-" * 15]))
    say("")
    say(f"result: {json.dumps(info.output, sort_keys=True)}")

    problems: list[str] = []
    if info.status != durably.Status.SUCCESS:
        problems.append(f"the workflow ended {info.status}, not SUCCESS")
    if [s.name.rsplit(".", 1)[-1] for s in steps] != list(STEPS):
        problems.append(f"recorded steps are {[s.name for s in steps]}, expected {list(STEPS)}")
    rerun = sorted(set(second.started_steps) & set(range(1, done_before + 1)))
    if rerun:
        problems.append(f"worker 2 ran recorded step(s) {rerun} again")
    for number, pid in recorded_pids.items():
        expected = first.pid if number <= done_before else second.pid
        if pid != expected:
            problems.append(f"step {number} was recorded by pid {pid}, expected {expected}")
    if problems:
        for problem in problems:
            print(f"durably demo failed: {problem}", file=sys.stderr)
        return 1

    interrupted = [n for n in first.started_steps if n > done_before]
    say(
        f"steps 1-{done_before} ran once, in worker 1 (pid {first.pid}); they were not re-run: "
        f"worker 2 (pid {second.pid}) replayed their recorded outputs."
    )
    if interrupted:
        say(
            f"step {interrupted[0]} was interrupted by the kill before its checkpoint committed, "
            f"so worker 2 ran it again (a step is at-least-once; its record is exactly-once)."
        )
    say(f"steps {done_before + 1}-{len(STEPS)} ran in worker 2 (pid {second.pid}).")
    return 0
