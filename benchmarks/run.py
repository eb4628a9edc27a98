"""Run durably's benchmark suite and print a table of medians (min/max over repeats).

    python -m benchmarks.run                 # embedded PostgreSQL, 5 repeats
    python -m benchmarks.run --quick         # smoke run: 2 repeats, small counts
    python -m benchmarks.run --database-url postgresql://... --repeats 9
    python -m benchmarks.run --only floor --only sequential-sync
    python -m benchmarks.run --with-dbos     # and DBOS Transact, same server, same run
    python -m benchmarks.run --with-procrastinate   # and Procrastinate (queue figures)
    python -m benchmarks.run --only settings # PG 18 I/O settings (restarts a server)

The table is also written as Markdown to benchmarks/results/latest.md (git-ignored), every
sample to latest.json, and a chart to latest.png (drawn with matplotlib from the
benchmark's own venv, benchmarks/.venv-dbos, when it exists).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

import durably
from benchmarks import dbos_venv as dbos
from benchmarks import (
    floor,
    heavy,
    history,
    queues,
    retention,
    settings,
    transactions,
    workflows,
)
from benchmarks.competitor import Competitor
from benchmarks.core import DEFAULT_DATA_DIR, REGISTRY, Context, Measurement, Target, database
from benchmarks.procrastinate_venv import PROCRASTINATE

# Importing a module registers its benchmarks, in this order; add new modules here.
BENCHMARK_MODULES = (floor, workflows, transactions, queues, heavy, retention, history, settings)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The libraries that can be measured beside durably (--with-KEY), in column order.
COMPETITORS: tuple[Competitor, ...] = (dbos.DBOS, PROCRASTINATE)
# Their figures, by competitor key.
Theirs = dict[str, list[Measurement]]


def ordered() -> list[Any]:
    """Every registered benchmark, in the order of BENCHMARK_MODULES (then registration)."""
    order = {m.__name__: i for i, m in enumerate(BENCHMARK_MODULES)}
    return sorted(REGISTRY, key=lambda b: order.get(b.fn.__module__, len(order)))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.render:
        return rerender(Path(args.render), args.output, args.no_chart)
    if args.list:
        for b in ordered():
            extra = "" if b.default else "  (only with --only)"
            also = ", ".join(f"+{c.label}" for c in COMPETITORS if b.name in c.counterparts)
            print(f"{b.name:18} {b.doc}{f' [{also}]' if also else ''}{extra}")
        return 0
    selected = _select(args.only)
    repeats = args.repeats or (2 if args.quick else 5)
    chosen = [c for c in COMPETITORS if getattr(args, f"with_{c.key}")]
    for competitor in chosen:
        competitor.ensure_venv()
    started = time.perf_counter()
    measurements: list[Measurement] = []
    theirs: Theirs = {c.key: [] for c in chosen}
    failures: list[tuple[str, str]] = []
    loads: list[str] = []
    with database(args.database_url, args.data_dir) as server:
        env = environment(server.url, server.description)
        ctx = Context(
            url=server.url, repeats=repeats, quick=args.quick, data_dir=server.data_dir,
            cold=args.cold,
        )  # fmt: skip
        if hasattr(os, "getloadavg") and os.getloadavg()[0] > (os.cpu_count() or 1) / 2:
            print(
                f"warning: the machine is busy (load {env['load']}); figures will be skewed",
                file=sys.stderr,
                flush=True,
            )
        for b in selected:
            loads.append(f"{b.name} {_load().split('/')[0]}")
            print(f"[{b.name}] {b.doc} (load {_load()})", file=sys.stderr, flush=True)
            gc.collect()
            t0 = time.perf_counter()
            try:
                measurements += b.fn(ctx)
            except Exception as exc:
                traceback.print_exc()
                failures.append((b.name, f"{type(exc).__name__}: {exc}"))
            print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            for competitor in chosen:
                if b.name not in competitor.counterparts:
                    continue
                print(f"[{b.name}] {competitor.title}", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                try:
                    theirs[competitor.key] += competitor.run_side(ctx, b.name)
                except Exception as exc:
                    traceback.print_exc()
                    error = f"{type(exc).__name__}: {exc}"
                    failures.append((f"{b.name} ({competitor.label})", error))
                print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    mode = "quick" if args.quick else "full"
    env["run"] = f"{mode}, {repeats} repeats, {elapsed:.0f} s" + "".join(
        f", with {c.title}" for c in chosen
    )
    env["load"] = f"{env.pop('load')} at start, {_load()} at end (1/5/15-min load averages)"
    env["1-min load before each benchmark"] = ", ".join(loads)
    text = render(env, measurements, failures, theirs)
    print(text)
    out = Path(args.output) if args.output else RESULTS_DIR / "latest.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    results = out.with_suffix(".json")
    results.write_text(json.dumps(_as_json(env, measurements, failures, theirs), indent=2))
    written = [results.name]
    if not args.no_chart and dbos.draw_chart(results, out.with_suffix(".png")):
        written.append(out.with_suffix(".png").name)
    print(f"written to {out} (and {', '.join(written)})", file=sys.stderr)
    return 1 if failures else 0


def rerender(source: Path, output: str | None, no_chart: bool) -> int:
    """Write the Markdown (and chart) of an earlier run again from its JSON."""
    data = json.loads(source.read_text())
    measurements = [Measurement.from_json(m) for m in data["measurements"]]
    theirs = {
        c.key: [Measurement.from_json(m) for m in data[c.key]]
        for c in COMPETITORS
        if data.get(c.key)
    }
    failures = [(f["benchmark"], f["error"]) for f in data.get("failures", [])]
    env = data["environment"]
    out = Path(output) if output else source.with_suffix(".md")
    text = render(env, measurements, failures, theirs)
    out.write_text(text)
    results = out.with_suffix(".json")  # the verdicts and ratios are computed again too
    results.write_text(json.dumps(_as_json(env, measurements, failures, theirs), indent=2))
    if not no_chart:
        dbos.draw_chart(results, out.with_suffix(".png"))
    print(text)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get("DURABLY_BENCH_DATABASE_URL"),
        help="PostgreSQL to measure (default: $DURABLY_BENCH_DATABASE_URL, else the embedded "
        "server)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"data directory of the embedded server (default {DEFAULT_DATA_DIR})",
    )
    p.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, small counts")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (repeatable; see --list)",
    )
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    for c in COMPETITORS:
        p.add_argument(
            f"--with-{c.key}", action="store_true",
            help=f"also measure {c.title} (installed once into benchmarks/{c.venv.name}, "
            "never into the project) on the same server, for the benchmarks it has a "
            "counterpart of",
        )  # fmt: skip
    p.add_argument(
        "--cold",
        action="store_true",
        help="settings benchmark: drop the OS page cache before each cold read (root only; "
        "slows every other process on the machine for a moment)",
    )
    p.add_argument("--no-chart", action="store_true", help="do not draw results/latest.png")
    p.add_argument(
        "--render",
        metavar="JSON",
        default=None,
        help="only render the table (and chart) again from a results JSON file of an earlier run",
    )
    p.add_argument(
        "--output", default=None, help="Markdown file to write (default results/latest.md)"
    )
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def _select(only: list[str]) -> list[Any]:
    if not only:
        return [b for b in ordered() if b.default]
    known = {b.name for b in REGISTRY}
    unknown = [name for name in only if name not in known]
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [b for b in ordered() if b.name in only]


# ---------------------------------------------------------------------- environment


def environment(url: str, description: str) -> dict[str, str]:
    """Where the figures come from: machine, software versions, server settings, date."""
    env: dict[str, str] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": _machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}, "
        f"psycopg {psycopg.__version__} (libpq {_libpq()}), durably {durably.__version__}"
        f"{_git()}",
        "server": description,
        "load": _load(),
    }
    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("SELECT version()").fetchone()
        env["postgres"] = str(version[0]) if version else "?"
        shown = []
        for name in (
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "shared_buffers",
            "io_method",
        ):
            try:
                row = conn.execute(f"SHOW {name}").fetchone()
            except psycopg.Error:
                continue  # io_method is new in PostgreSQL 18
            shown.append(f"{name}={row[0] if row else '?'}")
        env["settings"] = ", ".join(shown)
    return env


def _load() -> str:
    """Other work on the machine skews every figure: say how busy it was."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or "?"
    cpus = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        memory = f", {kib / 1024 / 1024:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpus} CPUs ({usable} usable), {model}{memory}, {system}"


def _libpq() -> str:
    v = psycopg.pq.version()
    return f"{v // 10000}.{v % 100}"


def _git() -> str:
    """Which durably source is measured: its directory, and its git revision if any."""
    source = Path(durably.__file__).resolve().parent.parent  # .../src
    where = f" from {source}"
    try:
        rev = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return where
    return f"{where} (git {rev}{', with uncommitted changes' if dirty else ''})"


# ---------------------------------------------------------------------- output


def render(
    env: dict[str, str],
    measurements: list[Measurement],
    failures: list[tuple[str, str]],
    theirs: Theirs | None = None,
) -> str:
    lines = ["# durably benchmarks", ""]
    lines += [f"- **{k}**: {v}" for k, v in env.items()]
    lines.append("")
    by_key = {m.key: m for m in measurements}
    shown = [c for c in COMPETITORS if (theirs or {}).get(c.key)]
    figures = {c.key: {m.key: m for m in (theirs or {})[c.key]} for c in shown}
    header = ["Figure", "durably", "min-max"]
    for c in shown:
        header += [c.label, "min-max", f"vs {c.label}"]
    header += ["Unit", "x floor", "Target", "Note"]
    rows = [header]
    verdicts: list[str] = []
    for m in measurements:
        ref = by_key.get(m.ratio_to) if m.ratio_to else None
        ratio = f"{m.median / ref.median:.2f}" if ref is not None and ref.median else ""
        row = [m.label, _fmt(m.median, m.unit), f"{_fmt(m.min, m.unit)}-{_fmt(m.max, m.unit)}"]
        notes = [m.note] if m.note else []
        versus: dict[str, float | None] = {}
        for c in shown:
            other = figures[c.key].get(m.key)
            versus[c.key] = better_by(m, other)
            row += [
                _fmt(other.median, m.unit) if other else "",
                f"{_fmt(other.min, m.unit)}-{_fmt(other.max, m.unit)}" if other else "",
                f"{versus[c.key]:.1f}x" if versus[c.key] is not None else "",
            ]
            if other is not None and other.note and other.note != m.note:
                notes.append(f"{c.label}: {other.note}")
        verdict = check_target(m, by_key, versus.get(dbos.DBOS.key))
        if verdict:
            verdicts.append(f"- {m.label}: {verdict}")
        row += [m.unit, ratio, verdict.split(":")[0] if verdict else "", "; ".join(notes)]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    left = {"Figure", "Unit", "Target", "Note"}
    right = {i for i, h in enumerate(header) if h not in left}

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "| " + " | ".join(padded) + " |"

    lines.append(line(rows[0]))
    lines.append(
        "| "
        + " | ".join("-" * (w - 1) + ":" if i in right else "-" * w for i, w in enumerate(widths))
        + " |"
    )
    lines += [line(r) for r in rows[1:]]
    lines.append("")
    labels = [c.label for c in shown]
    lines.append(
        f"{' and '.join(f'*{n}*' for n in ['durably', *labels])} are medians over repeats "
        "(min-max beside them); a latency sample is the median of that repeat's calls. "
        + "".join(
            f"*vs {n}* is how many times better durably's median is ({n} / durably for times, "
            f"durably / {n} for rates; above 1 durably wins). "
            for n in labels
        )
        + "*x floor* divides a latency by the PG floor (ms) and a rate by the floor's "
        "sequential commits/s, both measured in this run."
    )
    if verdicts:
        lines += ["", "## Targets", "", *verdicts]
    if failures:
        lines += ["", "## Failed", ""]
        lines += [f"- {name}: {error}" for name, error in failures]
    return "\n".join(lines) + "\n"


def better_by(m: Measurement, other: Measurement | None) -> float | None:
    """How many times better durably's median is than a competitor's figure of the same
    key (None: no like figure)."""
    if other is None or not m.comparable or not other.comparable:
        return None
    if m.higher_is_better:
        return m.median / other.median if other.median else None
    return other.median / m.median if m.median else None


def check_target(m: Measurement, by_key: dict[str, Measurement], versus: float | None) -> str:
    """``met: ...`` / ``MISSED: ...`` / ``n/a: ...`` for a figure with a target, else ''."""
    t: Target | None = m.target
    if t is None:
        return ""
    want = t.describe(m.unit)
    if t.kind in ("max", "min"):
        ok = m.median <= t.value if t.kind == "max" else m.median >= t.value
        off = m.median / t.value if t.value else float("inf")
        got = f"{_fmt(m.median, m.unit)} {m.unit}"
    elif t.kind == "max_x_floor":
        floor = by_key.get("floor.commit")
        if floor is None or not floor.median:
            return f"n/a: {want} (floor not measured in this run)"
        x = m.median / floor.median
        ok, off, got = x <= t.value, x / t.value, f"{x:.2f}x floor"
    else:
        if versus is None:
            return f"n/a: {want} (DBOS not measured in this run)"
        ok, off, got = versus >= t.value, versus / t.value, f"{versus:.1f}x DBOS"
    if ok:
        return f"met: {got}, target {want}"
    how = f"{off:.2f}x the limit" if t.kind.startswith("max") else f"{off:.0%} of the target"
    return f"MISSED: {got}, target {want}" + (f" ({how})" if t.value else "")


def _fmt(value: float, unit: str) -> str:
    if unit in ("/s", "threads", "workflows"):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:,.0f}"
    if unit == "s":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:,.1f}"


def _as_json(
    env: dict[str, str],
    measurements: list[Measurement],
    failures: list[tuple[str, str]],
    theirs: Theirs | None = None,
) -> dict[str, Any]:
    by_key = {m.key: m for m in measurements}
    theirs = theirs or {}
    figures = {c.key: {m.key: m for m in theirs.get(c.key, [])} for c in COMPETITORS}
    rows = []
    for m in measurements:
        data = m.as_json()
        for c in COMPETITORS:
            data[f"versus_{c.key}"] = better_by(m, figures[c.key].get(m.key))
        data["verdict"] = check_target(m, by_key, data[f"versus_{dbos.DBOS.key}"])
        rows.append(data)
    return {
        "environment": env,
        "measurements": rows,
        **{c.key: [m.as_json() for m in theirs.get(c.key, [])] for c in COMPETITORS},
        "failures": [{"benchmark": n, "error": e} for n, e in failures],
    }


if __name__ == "__main__":
    sys.exit(main())
