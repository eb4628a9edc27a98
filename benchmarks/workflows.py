"""durably's core figures: sequential workflow latency, per-step overhead, throughput.

Every workflow here runs no-op steps, so what is measured is durably's own cost: the
workflow row (one INSERT), one fenced checkpoint INSERT per step and the outcome (one
UPDATE), plus the Python around them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import durably
from benchmarks.core import (
    Context,
    Measurement,
    Target,
    benchmark,
    median_ms,
    next_xid,
    per_call,
    per_call_async,
)
from benchmarks.floor import FLOOR, FLOOR_RATE

STEP_COUNTS = (0, 1, 10)
THROUGHPUT_STEPS = 10
WRITES_PER_WORKFLOW = THROUGHPUT_STEPS + 2  # start, one per step, finish


@dataclass
class Declared:
    """The workflows of one benchmark app: ``n`` no-op steps, sync and async."""

    sync_steps: durably.Workflow[[int], int]
    async_steps: durably.Workflow[[int], Any]


def declare(app: durably.App) -> Declared:
    @app.step(name="bench.noop")
    def noop() -> None:
        return None

    @app.workflow(name="bench.steps")
    def steps(n: int) -> int:
        for _ in range(n):
            noop()
        return n

    @app.step(name="bench.anoop")
    async def anoop() -> None:
        return None

    @app.workflow(name="bench.asteps")
    async def asteps(n: int) -> int:
        for _ in range(n):
            await anoop()
        return n

    return Declared(steps, asteps)


def _latency_measurements(
    flavour: str, samples: dict[int, list[float]], n: int
) -> list[Measurement]:
    # The targets (sync, the common case): a 0-step workflow in <= 0.8 ms, each
    # further step <= 1.6x one INSERT+COMMIT measured in the same run.
    sync = flavour == "sync"
    out = [
        Measurement(
            f"{flavour}.seq.{k}",
            f"{flavour} workflow, {k} no-op steps, sequential",
            "ms",
            samples[k],
            ratio_to=FLOOR,
            note=f"median of {n} per repeat",
            target=Target("max", 0.8) if sync and k == 0 else None,
        )
        for k in STEP_COUNTS
    ]
    per_step = [(t10 - t0) / 10 for t10, t0 in zip(samples[10], samples[0], strict=True)]
    out.append(
        Measurement(
            f"{flavour}.seq.per_step",
            f"{flavour} per-step overhead (t10 - t0) / 10",
            "ms",
            per_step,
            ratio_to=FLOOR,
            target=Target("max_x_floor", 1.6) if sync else None,
        )
    )
    return out


@benchmark("sequential-sync")
def sequential_sync(ctx: Context) -> list[Measurement]:
    """One thread runs sync workflows of 0, 1 and 10 no-op steps back to back."""
    n = ctx.size(150, 20)
    samples: dict[int, list[float]] = {k: [] for k in STEP_COUNTS}
    with ctx.app() as app:
        wf = declare(app).sync_steps
        for k in STEP_COUNTS:
            per_call(lambda k=k: wf(k), 30)  # warm up: prepare the statements
        for _ in range(ctx.repeats):
            for k in STEP_COUNTS:
                samples[k].append(median_ms(per_call(lambda k=k: wf(k), n)))
    return _latency_measurements("sync", samples, n)


@benchmark("sequential-async")
def sequential_async(ctx: Context) -> list[Measurement]:
    """One task awaits async workflows of 0, 1 and 10 async no-op steps back to back."""
    n = ctx.size(150, 20)
    samples: dict[int, list[float]] = {k: [] for k in STEP_COUNTS}
    with ctx.app() as app:
        wf = declare(app).async_steps

        async def measure() -> None:
            for k in STEP_COUNTS:
                await per_call_async(lambda k=k: wf(k), 30)  # warm up
            for _ in range(ctx.repeats):
                for k in STEP_COUNTS:
                    samples[k].append(median_ms(await per_call_async(lambda k=k: wf(k), n)))

        asyncio.run(measure())
    return _latency_measurements("async", samples, n)


def _throughput_measurements(
    key: str,
    label: str,
    rates: list[float],
    writes_per_commit: list[float],
    note: str,
    target: Target | None = None,
) -> list[Measurement]:
    return [
        Measurement(f"{key}.wf_per_s", f"{label}: workflows/s", "/s", rates, note=note),
        Measurement(
            f"{key}.steps_per_s",
            f"{label}: steps/s",
            "/s",
            [r * THROUGHPUT_STEPS for r in rates],
            ratio_to=FLOOR_RATE,
            target=target,
        ),
        Measurement(
            f"{key}.writes_per_commit",
            f"{label}: checkpoint writes per commit",
            "writes",
            writes_per_commit,
            note=f"{WRITES_PER_WORKFLOW} writes/workflow over XIDs used (group commit)",
        ),
    ]


def _measure_rounds(
    ctx: Context, run_round: Callable[[], object], rounds: int, concurrency: int
) -> tuple[list[float], list[float]]:
    """Per repeat: workflows/s over ``rounds`` rounds, and writes per commit."""
    rates: list[float] = []
    batching: list[float] = []
    with ctx.connect() as probe:
        for _ in range(ctx.repeats):
            xid = next_xid(probe)
            start = time.perf_counter()
            for _ in range(rounds):
                run_round()
            elapsed = time.perf_counter() - start
            commits = max(1, next_xid(probe) - xid)
            workflows = rounds * concurrency
            rates.append(workflows / elapsed)
            batching.append(workflows * WRITES_PER_WORKFLOW / commits)
    return rates, batching


def _five_hundred(
    ctx: Context,
    key: str,
    label: str,
    note: str,
    prepare: Callable[
        [durably.App, durably.Workflow[[int], int]],
        Callable[[], list[durably.WorkflowHandle[Any]]],
    ],
) -> list[Measurement]:
    """500 sync 10-step workflows handed to a launched app by what ``prepare`` returns
    (set up once, outside the timing), run by its own threads; one round per repeat,
    after one to warm up."""
    with ctx.app() as app:
        submit = prepare(app, declare(app).sync_steps)

        def one_round() -> None:
            for handle in submit():
                handle.result()

        one_round()  # warm up
        rates, batching = _measure_rounds(ctx, one_round, 1, 500)
    return _throughput_measurements(
        key, label, rates, batching, f"1 round of 500 per repeat; {note}"
    )


def _on_a_queue(
    app: durably.App, wf: durably.Workflow[[int], int]
) -> Callable[[], list[durably.WorkflowHandle[Any]]]:
    """500 runs of ``wf`` put on a queue of ``app`` by one enqueue_many per round."""
    queue = app.queue("bench.many")
    return lambda: queue.enqueue_many(wf, [(THROUGHPUT_STEPS,)] * 500)


@benchmark("throughput-sync")
def throughput_sync(ctx: Context) -> list[Measurement]:
    """50 threads each run one sync 10-step workflow per round; then 500 started at once,
    by ``wf.start()`` in a loop and by one ``enqueue_many``."""
    concurrency = 50
    rounds = ctx.size(10, 3)
    with ctx.app() as app, ThreadPoolExecutor(concurrency) as pool:
        wf = declare(app).sync_steps

        def one_round() -> None:
            futures = [pool.submit(wf, THROUGHPUT_STEPS) for _ in range(concurrency)]
            wait(futures)
            for f in futures:
                f.result()

        for _ in range(3):
            one_round()  # warm up: start the threads, prepare on the pool's connections
        rates, batching = _measure_rounds(ctx, one_round, rounds, concurrency)
    note = f"{rounds} rounds of {concurrency} per repeat"
    out = _throughput_measurements("sync.x50", "sync, 50 threads", rates, batching, note)
    # The app's own threads run 500 at once: started by wf.start() in a loop, then put on
    # a queue in one call (what they run when the caller's loop of 500 commits, most of
    # the first round, is not in the way).
    out += _five_hundred(
        ctx,
        "sync.start500",
        "sync, 500 started at once (the app's threads)",
        "App(max_threads=64) runs them",
        lambda app, wf: lambda: [wf.start(THROUGHPUT_STEPS) for _ in range(500)],
    )
    out += _five_hundred(
        ctx,
        "sync.many500",
        "sync, 500 enqueued at once (enqueue_many; the app's threads)",
        "one enqueue_many, then the app's worker runs them",
        _on_a_queue,
    )
    return out


@benchmark("throughput-async")
def throughput_async(ctx: Context) -> list[Measurement]:
    """asyncio.gather of 50, then 1,000, async 10-step workflows; rounds back to back."""
    out: list[Measurement] = []
    plans = [(50, ctx.size(10, 3)), (1000, 1)]
    with ctx.app() as app, asyncio.Runner() as runner:
        wf = declare(app).async_steps

        for concurrency, rounds in plans:

            def one_round(concurrency: int = concurrency) -> None:
                async def gather() -> None:
                    await asyncio.gather(*(wf(THROUGHPUT_STEPS) for _ in range(concurrency)))

                runner.run(gather())

            for _ in range(3 if concurrency <= 50 else 1):
                one_round()  # warm up
            rates, batching = _measure_rounds(ctx, one_round, rounds, concurrency)
            note = f"{rounds} round{'s' * (rounds > 1)} of {concurrency} per repeat"
            out += _throughput_measurements(
                f"async.x{concurrency}",
                f"async, gather of {concurrency:,}",
                rates,
                batching,
                note,
                Target("min", 10_000) if concurrency >= 1000 else None,
            )
    return out
