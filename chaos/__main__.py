"""Command line: ``python -m chaos run ...`` and ``python -m chaos selftest``.

Exit codes: 0 clean, 1 invariant violations (or a failed self-test), 2 the run itself
failed (its cluster or workers could not be started, say), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chaos.config import DEFAULT_FAULTS, FAULTS, RunConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="a run with faults, then the checks and figures")
    run.add_argument("--duration", type=float, default=60.0, help="seconds of load and faults")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--faults", default=",".join(DEFAULT_FAULTS),
                     help=f"comma-separated, among {','.join(FAULTS)}; empty for none")  # fmt: skip
    run.add_argument("--workers", type=int, default=3)
    run.add_argument("--rate", type=float, default=4.0, help="driver starts per second")
    run.add_argument("--worker-rate", type=float, default=1.0, help="each worker's starts/s")
    run.add_argument("--lost-reply-p", type=float, default=0.03)
    run.add_argument("--drain", type=float, default=120.0, help="drain deadline, seconds")
    run.add_argument("--out", type=Path, help="run directory (default: a new temp dir)")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    selftest = sub.add_parser("selftest", help="prove that every check can fail")
    selftest.add_argument("--out", type=Path, help="run directory (default: a new temp dir)")
    selftest.add_argument("--seed", type=int, default=7)
    selftest.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        from chaos.selftest import selftest

        result = selftest(args.out, args.seed)
        print(json.dumps(result, indent=1, default=str) if args.json else result["text"])
        return 0 if result["ok"] else 1
    except KeyboardInterrupt:
        print("interrupted; the cluster and the workers were stopped", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from chaos.report import render
    from chaos.run import execute

    cfg = RunConfig(
        duration=args.duration, seed=args.seed,
        faults=tuple(f for f in args.faults.split(",") if f), workers=args.workers,
        out=args.out, rate=args.rate, worker_rate=args.worker_rate,
        lost_reply_p=args.lost_reply_p, drain_deadline=args.drain,
    )  # fmt: skip
    try:
        cfg.check()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = execute(cfg)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        print(f"the run failed: {exc!r}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1, default=str) if args.json else render(report))
    return 1 if report["violation_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
