"""The chaos suite as tests: each fault alone for about 60 s, all mixed for about 120 s,
failovers to a standby for about 60 s, and the self-test that proves every check can fail.

Each runs ``python -m chaos`` in a subprocess (its own PostgreSQL, its own workers) and
asserts on its JSON report: zero invariant violations, a complete drain, and faults that
really happened. On failure the assertion message is the run's report, with the evidence
of each violation.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("sigkill", "pg_restart", "terminate", "sigstop", "lost_reply")
DRAIN = 120  # the run's drain deadline
OVERHEAD = 150  # startup, checks, shutdown, and a loaded machine


@pytest.fixture
def rundir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The run's directory, outside pytest's temporary area: the chaos server runs as
    another user, and a pytest session started meanwhile resets that area to 0700. Kept
    when a test failed, as evidence."""
    root = Path(tempfile.mkdtemp(prefix="dc-", dir="/tmp"))
    failed_before = request.session.testsfailed
    yield root / "run"
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)


def chaos(args: list[str], budget: float) -> tuple[int, str, str]:
    """Run ``python -m chaos <args>``; past ``budget`` s it is asked to stop (SIGTERM: it
    cleans up its cluster and workers), then killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"python -m chaos {' '.join(args)} outlasted {budget} s:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return proc.returncode, out, err


def explain(report: dict[str, Any]) -> str:
    lines = [f"run dir: {report['rundir']}", f"violations: {report['violations']}"]
    lines += [json.dumps(v, default=str)[:600] for v in report["violation_list"][:20]]
    lines += [f"worker crash: {c}"[:600] for c in report.get("worker_crashes", [])]
    lines += [f"driver error: {e}"[:300] for e in report.get("driver_errors", [])]
    lines.append(f"drain: {report.get('drain')}")
    return "\n".join(lines)


RUNS = [pytest.param((fault,), 60, id=fault) for fault in FAULTS]
RUNS.append(pytest.param(FAULTS, 120, id="mixed"))
# A primary with a synchronous standby, crashed and failed over again and again.
RUNS.append(pytest.param(("failover",), 60, id="failover"))


@pytest.mark.chaos
@pytest.mark.timeout(120 + DRAIN + 2 * OVERHEAD)
@pytest.mark.parametrize(("faults", "duration"), RUNS)
def test_no_invariant_breaks_under_faults(
    faults: tuple[str, ...], duration: int, rundir: Path
) -> None:
    args = ["run", "--json", "--duration", str(duration), "--seed", "7", "--workers", "3"]
    args += ["--faults", ",".join(faults), "--drain", str(DRAIN), "--out", str(rundir)]
    code, out, err = chaos(args, duration + DRAIN + OVERHEAD)
    assert code in (0, 1), f"the run failed (exit {code}):\n{err[-3000:]}"
    report = json.loads(out)
    assert report["violation_count"] == 0, explain(report)
    assert code == 0
    assert report["drain"]["complete"], explain(report)
    assert not report["worker_crashes"], explain(report)
    assert not report["driver_errors"], report["driver_errors"]
    injected = report["faults"]
    for fault in faults:
        assert injected.get(fault, 0) > 0, f"no {fault} was injected: {injected}"
    if "lost_reply" in faults:
        assert sum(v["dropped"] for v in report["lost_replies"].values()) > 0
    shapes = report["workflows"]
    for shape in ("retry", "children", "mailbox", "events", "stream", "limited", "async",
                  "ledger", "ledger_async"):  # fmt: skip
        assert shapes.get(shape, {}).get("started", 0) > 0, f"no {shape} workflow ran: {shapes}"
    tx = report["transactions"]
    assert tx["commits"] > 0, tx
    if set(faults) - {"lost_reply"}:
        # Half of these faults are aimed at open transaction steps: some must have hit one.
        assert sum(hit for hit, _ in tx["faults_inside"].values()) > 0, tx


@pytest.mark.chaos
@pytest.mark.timeout(20 + 60 + 2 * OVERHEAD)
def test_every_check_can_fail(rundir: Path) -> None:
    code, out, err = chaos(["selftest", "--json", "--out", str(rundir)], 80 + OVERHEAD)
    assert code in (0, 1), f"the self-test could not run (exit {code}):\n{err[-3000:]}"
    result = json.loads(out)
    assert result["cases"], "the self-test ran no case"
    failed = [c for c in result["cases"] if not c["ok"]]
    assert not failed, result["text"]
    assert code == 0
