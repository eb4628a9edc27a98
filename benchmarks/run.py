"""Run durably's benchmark suite and print a table of medians (min/max over repeats).

    python -m benchmarks.run                 # embedded PostgreSQL, 5 repeats
    python -m benchmarks.run --quick         # smoke run: 2 repeats, small counts
    python -m benchmarks.run --database-url postgresql://... --repeats 9
    python -m benchmarks.run --only floor --only sequential-sync

The table is also written as Markdown to benchmarks/results/latest.md (git-ignored).
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
from benchmarks import floor, workflows
from benchmarks.core import DEFAULT_DATA_DIR, REGISTRY, Context, Measurement, database

# Importing a module registers its benchmarks, in this order; add new modules here.
BENCHMARK_MODULES = (floor, workflows)
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.list:
        for b in REGISTRY:
            print(f"{b.name:20} {b.doc}")
        return 0
    selected = _select(args.only)
    repeats = args.repeats or (2 if args.quick else 5)
    started = time.perf_counter()
    measurements: list[Measurement] = []
    failures: list[tuple[str, str]] = []
    with database(args.database_url, args.data_dir) as server:
        env = environment(server.url, server.description)
        ctx = Context(url=server.url, repeats=repeats, quick=args.quick)
        if hasattr(os, "getloadavg") and os.getloadavg()[0] > (os.cpu_count() or 1) / 2:
            print(
                f"warning: the machine is busy (load {env['load']}); figures will be skewed",
                file=sys.stderr, flush=True,
            )
        for b in selected:
            print(f"[{b.name}] {b.doc}", file=sys.stderr, flush=True)
            gc.collect()
            t0 = time.perf_counter()
            try:
                measurements += b.fn(ctx)
            except Exception as exc:
                traceback.print_exc()
                failures.append((b.name, f"{type(exc).__name__}: {exc}"))
            print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    mode = "quick" if args.quick else "full"
    env["run"] = f"{mode}, {repeats} repeats, {elapsed:.0f} s"
    env["load"] = f"{env.pop('load')} at start, {_load()} at end (1/5/15-min load averages)"
    text = render(env, measurements, failures)
    print(text)
    out = Path(args.output) if args.output else RESULTS_DIR / "latest.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(_as_json(env, measurements, failures), indent=2))
    print(f"written to {out} (and {out.with_suffix('.json').name})", file=sys.stderr)
    return 1 if failures else 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get("DURABLY_BENCH_DATABASE_URL"),
        help="PostgreSQL to measure (default: $DURABLY_BENCH_DATABASE_URL, else the embedded "
        "server)",
    )
    p.add_argument(
        "--data-dir", default=None,
        help=f"data directory of the embedded server (default {DEFAULT_DATA_DIR})",
    )
    p.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, small counts")
    p.add_argument(
        "--only", action="append", default=[], metavar="NAME",
        help="run only this benchmark (repeatable; see --list)",
    )
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument(
        "--output", default=None, help="Markdown file to write (default results/latest.md)"
    )
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def _select(only: list[str]) -> list[Any]:
    if not only:
        return list(REGISTRY)
    known = {b.name for b in REGISTRY}
    unknown = [name for name in only if name not in known]
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [b for b in REGISTRY if b.name in only]


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
        for name in ("fsync", "synchronous_commit", "wal_sync_method", "shared_buffers",
                     "io_method"):
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
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", "."],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return where
    return f"{where} (git {rev}{', with uncommitted changes' if dirty else ''})"


# ---------------------------------------------------------------------- output


def render(
    env: dict[str, str], measurements: list[Measurement], failures: list[tuple[str, str]]
) -> str:
    lines = ["# durably benchmarks", ""]
    lines += [f"- **{k}**: {v}" for k, v in env.items()]
    lines.append("")
    by_key = {m.key: m for m in measurements}
    header = ["Figure", "Median", "Min", "Max", "Unit", "x floor", "Note"]
    rows = [header]
    for m in measurements:
        ref = by_key.get(m.ratio_to) if m.ratio_to else None
        ratio = f"{m.median / ref.median:.2f}" if ref is not None and ref.median else ""
        rows.append([
            m.label, _fmt(m.median, m.unit), _fmt(m.min, m.unit), _fmt(m.max, m.unit),
            m.unit, ratio, m.note,
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {1, 2, 3, 5}

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "| " + " | ".join(padded) + " |"

    lines.append(line(rows[0]))
    lines.append(
        "| " + " | ".join(
            "-" * (w - 1) + ":" if i in right else "-" * w for i, w in enumerate(widths)
        ) + " |"
    )
    lines += [line(r) for r in rows[1:]]
    lines.append("")
    lines.append(
        "Median, min and max are over repeats; each repeat's latency is the median of its "
        "calls. *x floor* divides a latency by the PG floor (ms) and a rate by the floor's "
        "sequential commits/s."
    )
    if failures:
        lines += ["", "## Failed", ""]
        lines += [f"- {name}: {error}" for name, error in failures]
    return "\n".join(lines) + "\n"


def _fmt(value: float, unit: str) -> str:
    if unit == "/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}" if value < 10 else f"{value:.2f}"
    return f"{value:.1f}"


def _as_json(
    env: dict[str, str], measurements: list[Measurement], failures: list[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "environment": env,
        "measurements": [
            {
                "key": m.key, "label": m.label, "unit": m.unit, "median": m.median,
                "min": m.min, "max": m.max, "samples": m.samples, "ratio_to": m.ratio_to,
                "note": m.note,
            }
            for m in measurements
        ],
        "failures": [{"benchmark": n, "error": e} for n, e in failures],
    }


if __name__ == "__main__":
    sys.exit(main())
