"""The two figures about many workflows at once: 100,000 sleeping workflows in one worker
(threads and memory once all are parked), and the recovery of 10,000 workflows left
pending by a worker killed with SIGKILL.
"""

from __future__ import annotations

import uuid

from benchmarks.core import Child, Context, Measurement, Target, benchmark, wait_until
from benchmarks.procs import RECOVER

START_THREADS = 4


@benchmark("sleeping")
def sleeping(ctx: Context) -> list[Measurement]:
    """100,000 sync workflows in durably.sleep(3600), one worker: threads, RSS, start time."""
    n = ctx.size(100_000, 2_000)
    results: list[dict[str, float]] = []
    for _ in range(1 if n >= 50_000 else ctx.heavy_repeats):
        with ctx.schema() as schema:
            child = Child.durably(
                "sleeper", "--url", ctx.url, "--schema", schema, "--count", str(n),
                "--threads", str(START_THREADS),
            )  # fmt: skip
            try:
                child.expect("ready")
                child.send("go")
                data = child.json(timeout=1800)
            finally:
                child.kill()
            results.append(data)
            ctx.log(
                f"{n:,} parked in {data['all_parked_s']:.1f} s; threads {data['threads']:.0f}, "
                f"RSS {data['rss_mib']:.0f} MiB (peak {data['peak_rss_mib']:.0f})"
            )
    note = f"{len(results)} run{'s' * (len(results) > 1)}, {n:,} workflows"
    return [
        Measurement(
            "sleep.start_rate", f"sleeping: start {n:,} and park them, {START_THREADS} threads",
            "/s", [n / r["all_parked_s"] for r in results],
            note=f"wf.start() in a loop per thread, until all are parked; {note}",
        ),
        Measurement(
            "sleep.threads", f"sleeping: OS threads of the worker, {n:,} parked", "threads",
            [r["threads"] for r in results], target=Target("max", 100), comparable=False,
            note="no thread per wait: a fixed pool (max_threads=64) plus the runtime",
        ),
        Measurement(
            "sleep.rss", f"sleeping: worker RSS, {n:,} parked", "MiB",
            [r["rss_mib"] for r in results], target=Target("max", 1024), comparable=False,
            note=f"peak {max(r['peak_rss_mib'] for r in results):.0f} MiB",
        ),
        Measurement(
            "sleep.rss_per_wf", "sleeping: RSS growth per parked workflow", "KiB",
            [(r["rss_mib"] - r["base_rss_mib"]) * 1024 / n for r in results],
            note="(RSS after - RSS after launch) / workflows",
        ),
    ]  # fmt: skip


@benchmark("recovery")
def recovery(ctx: Context) -> list[Measurement]:
    """10,000 workflows left pending by a SIGKILLed worker, recovered by a new process."""
    n = ctx.size(10_000, 1_000)
    seconds: list[float] = []
    launch: list[float] = []
    lost: list[float] = []
    rates: list[float] = []
    notes: list[str] = []
    for _ in range(ctx.heavy_repeats):
        with ctx.schema() as schema, ctx.connect() as conn:
            executor = f"bench-recovery-{uuid.uuid4().hex[:8]}"
            common = ["--url", ctx.url, "--schema", schema, "--executor-id", executor]
            crasher = Child.durably("crasher", *common, "--count", str(n))
            try:
                crasher.expect("ready")
                crasher.send("go")
                first_steps = f'SELECT count(*) FROM "{schema}".operations WHERE step = 1'

                def stuck(first_steps: str = first_steps) -> bool:
                    row = conn.execute(first_steps).fetchone()
                    return row is not None and row[0] >= n

                wait_until(stuck, timeout=600, what=f"{n} workflows past their first step")
            finally:
                crasher.kill()
            recoverer = Child.durably("recoverer", *common)
            try:
                recoverer.expect("ready")
                recoverer.send("go")
                info = recoverer.json()
                final = (
                    f"SELECT count(*) FILTER (WHERE status NOT IN ('PENDING', 'ENQUEUED')), "
                    f"count(*) FILTER (WHERE status = 'SUCCESS'), "
                    f"extract(epoch FROM max(coalesce(completed_at, updated_at))), "
                    f"max(recovery_attempts), "
                    f"count(*) FILTER (WHERE status = 'DEAD_LETTER'), avg(recovery_attempts) "
                    f'FROM "{schema}".workflows WHERE name = %s'
                )
                row: tuple[object, ...] = ()

                def finished(final: str = final) -> bool:
                    nonlocal row
                    fetched = conn.execute(final, (RECOVER,)).fetchone()
                    assert fetched is not None
                    row = tuple(fetched)
                    return int(fetched[0]) >= n

                wait_until(finished, timeout=900, what=f"{n} recovered workflows", interval=0.1)
            finally:
                recoverer.close()
            _, succeeded, last_done, attempts, dead, mean_attempts = row
            took = float(last_done) - info["launch_called"]  # type: ignore[arg-type]
            seconds.append(took)
            # Only workflows that reached SUCCESS count as recovered.
            rates.append(int(succeeded) / took)  # type: ignore[call-overload]
            launch.append(info["launch_returned"] - info["launch_called"])
            lost.append(float(dead))  # type: ignore[arg-type]
            notes.append(
                f"{succeeded} SUCCESS, {dead} DEAD_LETTER, recovery attempts mean "
                f"{float(mean_attempts):.1f} max {attempts}"  # type: ignore[arg-type]
                + (f"; launch() raised {info['error']}" if info.get("error") else "")
            )
            ctx.log(f"recovery of {n:,} done in {took:.2f} s ({notes[-1]})")
    return [
        Measurement(
            "recovery.wf_per_s", f"recovery: {n:,} pending workflows, one new process", "/s",
            rates, target=Target("min_x_dbos", 5.0),
            note="async, 3 steps, killed in step 2; SUCCESS per s from the launch() call",
        ),
        Measurement(
            "recovery.seconds", f"recovery: launch() to all {n:,} finished", "s", seconds,
            note="; ".join(sorted(set(notes))),
        ),
        Measurement(
            "recovery.launch_s", "recovery: time spent inside launch()", "s", launch,
            comparable=False, note="launch() returns once its own-workflow claim is done",
        ),
        Measurement(
            "recovery.dead_lettered", f"recovery: of {n:,}, dead-lettered instead", "workflows",
            lost, target=Target("max", 0), comparable=False,
            note="each must run to SUCCESS exactly once",
        ),
    ]  # fmt: skip
