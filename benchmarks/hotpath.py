"""Profile the sequential per-step hot path: N sequential sync workflows of K no-op steps.

    python -m benchmarks.hotpath                    # time it: ms per workflow, per step
    python -m benchmarks.hotpath --cprofile         # and print cProfile's top functions
    py-spy record --idle --format raw -o /tmp/prof.txt -- python -m benchmarks.hotpath
    python -m benchmarks.hotpath --summarise /tmp/prof.txt

``--summarise`` reads py-spy's raw (collapsed-stack) output and prints, for the samples
taken inside the measured loop only, each function's share of the time: self (the
function itself was running or blocked) and inclusive (it was on the stack). ``--idle``
matters: without it py-spy drops the samples where the thread waits for Postgres.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.core import DEFAULT_DATA_DIR, Context, database
from benchmarks.workflows import declare

LOOP_FUNCTION = "_measured_loop"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def _measured_loop(wf: object, workflows: int, steps: int) -> None:
    for _ in range(workflows):
        wf(steps)  # type: ignore[operator]


def run(url: str, workflows: int, steps: int, profile: cProfile.Profile | None) -> float:
    """Run the loop once on a fresh schema; return seconds per step."""
    ctx = Context(url=url, repeats=1, quick=False)
    with ctx.app() as app:
        wf = declare(app).sync_steps
        for _ in range(50):
            wf(steps)  # warm up
        start, cpu_start = time.perf_counter(), time.process_time()
        if profile is not None:
            profile.enable()
        _measured_loop(wf, workflows, steps)
        if profile is not None:
            profile.disable()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    per_wf = elapsed / workflows
    ops = workflows * (steps + 2)  # the start, each step and the finish are one write each
    print(
        f"{workflows} sequential sync workflows x {steps} no-op steps: {elapsed:.2f} s, "
        f"{per_wf * 1000:.3f} ms per workflow, {per_wf / max(steps, 1) * 1000:.3f} ms per step "
        f"(all-in: start and finish included)\n"
        f"per write ({steps + 2} per workflow): {elapsed / ops * 1e6:.0f} us wall, "
        f"{cpu / ops * 1e6:.0f} us CPU in this process ({100 * cpu / elapsed:.0f}% of wall; "
        f"the rest is waiting for Postgres)"
    )
    return per_wf / max(steps, 1)


def summarise(path: Path, top: int) -> None:
    """Shares of time inside the measured loop, from py-spy's raw output."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        names = [_name(f) for f in frames]
        try:
            start = next(i for i, n in enumerate(names) if n.startswith(LOOP_FUNCTION + " "))
        except StopIteration:
            continue  # not in the measured loop (warm-up, other threads, set-up)
        inside = names[start + 1 :]
        count = int(count_text)
        total += count
        self_counts[inside[-1] if inside else names[start]] += count
        for name in set(inside):
            incl_counts[name] += count
    if not total:
        sys.exit(f"no samples inside {LOOP_FUNCTION} in {path}")
    print(f"{total} samples inside the measured loop\n")
    areas: Counter[str] = Counter()
    for name, count in self_counts.items():
        areas[_area(name)] += count
    print("self time by area:")
    for area, count in areas.most_common():
        print(f"  {100 * count / total:5.1f}%  {area}")
    print()
    for title, counts in (("self", self_counts), ("inclusive", incl_counts)):
        print(f"top {top} by {title} time:")
        for name, count in counts.most_common(top):
            print(f"  {100 * count / total:5.1f}%  {name}")
        print()


# Leaf functions that stand for time spent outside Python, named for what they wait on.
_SPECIAL_AREAS = {
    "Connection.wait (psycopg/connection.py)": "waiting for Postgres (socket wait in psycopg)",
    "BaseCursor._send_query_prepared (psycopg/_cursor_base.py)": "libpq send (C call)",
}


def _area(name: str) -> str:
    """The package (or special wait) a leaf function belongs to."""
    if name in _SPECIAL_AREAS:
        return _SPECIAL_AREAS[name]
    file = name.rpartition(" (")[2].rstrip(")")
    top = file.split("/", 1)[0] if "/" in file else ""
    if top in ("durably", "psycopg", "psycopg_pool", "benchmarks"):
        return f"{top} (Python)"
    return "stdlib and generated code (Python)"


def _name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``: lines merged, paths shortened."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "src/", "lib/python3."):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker == "lib/python3.":
                file = "stdlib/" + file.split("/", 1)[-1]
            break
    return f"{m.group('func')} ({file})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    p.add_argument("--workflows", type=int, default=2000)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cprofile", action="store_true", help="profile the loop with cProfile")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--summarise", metavar="RAW", help="summarise py-spy raw output and exit")
    p.add_argument("--database-url", default=os.environ.get("DURABLY_BENCH_DATABASE_URL"))
    p.add_argument("--data-dir", default=None, help=f"default {DEFAULT_DATA_DIR}")
    args = p.parse_args(argv)
    if args.summarise:
        summarise(Path(args.summarise), args.top)
        return 0
    profile = cProfile.Profile() if args.cprofile else None
    with database(args.database_url, args.data_dir) as server:
        run(server.url, args.workflows, args.steps, profile)
    if profile is not None:
        stats = pstats.Stats(profile, stream=sys.stdout).strip_dirs()
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
