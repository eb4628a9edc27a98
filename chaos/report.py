"""The figures of a run, as a dict (``--json``) and as readable tables."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from chaos import lostreply, shapes
from chaos.checks import INVARIANTS, Findings, reruns
from chaos.checks_ledger import figures as ledger_figures
from chaos.config import CRON_NAME, RunConfig
from chaos.inject import FaultRecord
from chaos.snapshot import FINAL, Snapshot

SHOWN_PER_INVARIANT = 5
# What PostgreSQL logs for a serialization failure (40001) of a serializable transaction.
SERIALIZATION_FAILURE = "could not serialize access"


def serialization_failures(rundir: Path) -> int | None:
    """How many serialization failures the servers logged (None: no server log): the
    one server's ``pg/pg.log``, or both of a primary and standby (``pg/*/pg.log``)."""
    logs = [rundir / "pg" / "pg.log", *sorted((rundir / "pg").glob("*/pg.log"))]
    texts = []
    for log in logs:
        try:
            texts.append(log.read_text(errors="replace"))
        except OSError:
            continue
    if not texts:
        return None
    return sum(text.count(SERIALIZATION_FAILURE) for text in texts)


def faults_inside_transactions(records: list[FaultRecord]) -> dict[str, list[int]]:
    """Per fault kind: [faults that hit a worker with a transaction step open, faults]."""
    out: dict[str, list[int]] = {}
    for r in records:
        if "open_transaction_steps" in r.detail:
            row = out.setdefault(r.kind, [0, 0])
            row[0] += bool(r.detail["open_transaction_steps"])
            row[1] += 1
    return dict(sorted(out.items()))


def workflow_figures(snap: Snapshot) -> dict[str, dict[str, int]]:
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for exp in snap.expected.values():
        row = rows[exp.shape]
        row["started"] += 1
        row["by_driver" if exp.origin == "driver" else "by_workers"] += 1
        wf = snap.workflows.get(exp.workflow_id)
        if wf is not None and wf.status in FINAL:
            row["final"] += 1
            row["as_expected"] += wf.status == "SUCCESS" and wf.output == exp.expected
    for wf in snap.workflows.values():
        extra = {shapes.CHILD: "(children)", CRON_NAME: "(cron ticks)"}.get(wf.name)
        if extra is not None:
            rows[extra]["started"] += 1
            rows[extra]["final"] += wf.status in FINAL
            rows[extra]["as_expected"] += wf.status == "SUCCESS"
    return {shape: dict(row) for shape, row in sorted(rows.items())}


def build(
    cfg: RunConfig,
    rundir: Path,
    snap: Snapshot,
    findings: Findings,
    records: list[FaultRecord],
    progress: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    by_invariant = Counter(v.invariant for v in findings.violations)
    lost = lostreply.gather(rundir)
    return {
        "config": {"duration": cfg.duration, "seed": cfg.seed, "faults": list(cfg.faults),
                   "workers": cfg.workers, "rate": cfg.rate, "worker_rate": cfg.worker_rate,
                   "lost_reply_p": cfg.lost_reply_p},
        "rundir": str(rundir),
        "workflows": workflow_figures(snap),
        "faults": dict(Counter(r.kind for r in records)),
        "violations": {name: by_invariant.get(name, 0) for name in INVARIANTS},
        "violation_count": len(findings.violations),
        "violation_list": [v.as_dict() for v in findings.violations],
        "excused": [v.as_dict() for v in findings.excused],
        "notes": findings.notes,
        "lost_replies": lost,
        "writes_never_dropped": [n for n, c in lost.items() if c["seen"] and not c["dropped"]]
        if "lost_reply" in cfg.faults else [],
        "progress": progress,
        "step_bodies_rerun": reruns(snap),
        "transactions": {**ledger_figures(snap),
                         "serialization_failures": serialization_failures(rundir),
                         "faults_inside": faults_inside_transactions(records)},
        **extra,
    }  # fmt: skip


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]  # fmt: skip
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return ["  " + s for s in out]


def render(report: dict[str, Any]) -> str:
    c = report["config"]
    out = [f"chaos run: {c['duration']:g} s, seed {c['seed']}, faults {','.join(c['faults'])}, "
           f"{c['workers']} workers   (run dir {report['rundir']})", ""]  # fmt: skip
    out.append("Workflows by shape")
    keys = ["started", "by_driver", "by_workers", "final", "as_expected"]
    rows = [[shape, *(row.get(k, 0) for k in keys)] for shape, row in report["workflows"].items()]
    out += _table(["shape", *keys], rows)
    out += ["", "Faults injected"]
    out += _table(["kind", "count"], [[k, n] for k, n in sorted(report["faults"].items())])
    out += ["", "Time from fault to progress (s): first checkpoint after the fault's end; "
            "next checkpoint of each workflow in flight"]  # fmt: skip
    rows = []
    for kind, s in report["progress"]["by_kind"].items():
        f, w = s["first_checkpoint"], s["inflight_next_checkpoint"]
        rows.append([kind, s["faults"], f["median"], f["p90"], f["worst"], w["n"], w["median"],
                     w["p90"], w["worst"], s["inflight_never"]])  # fmt: skip
    out += _table(["kind", "faults", "first p50", "p90", "worst", "in flight", "next p50",
                   "p90", "worst", "never"], rows)  # fmt: skip
    cpu = report.get("pg_down_worker_cpu_pct")
    if cpu:
        out.append(f"  worker CPU while PostgreSQL was down: median {cpu['median']}%, "
                   f"worst {cpu['worst']}% of one core")  # fmt: skip
    if report["lost_replies"]:
        out += ["", "Lost replies by write statement (writes seen / replies dropped)"]
        rows = [[n, v["seen"], v["dropped"]] for n, v in report["lost_replies"].items()]
        out += _table(["statement", "seen", "dropped"], rows)
        if report["writes_never_dropped"]:
            out.append(f"  never dropped: {', '.join(report['writes_never_dropped'])}")
    out += ["", "Invariants"]
    rows = [[name, n, "ok" if n == 0 else "VIOLATED"] for name, n in report["violations"].items()]
    out += _table(["invariant", "violations", ""], rows)
    for note in report["notes"]:
        out.append(f"  note: {note}")
    out.append(f"  overlaps excused by SIGSTOP: {len(report['excused'])}; step bodies that "
               f"completed more than once (allowed): {report['step_bodies_rerun']}")  # fmt: skip
    t = report.get("transactions")
    if t:
        out.append(f"  transaction steps: {t['commits']} commits (ledger rows); {t['bodies']} "
                   f"bodies ran to their end, {t['bodies_failed']} of them raised; "
                   f"{t['serialization_failures']} serialization failures logged; counter "
                   f"{t['counter']}")  # fmt: skip
        inside = ", ".join(f"{k} {a}/{b}" for k, (a, b) in t.get("faults_inside", {}).items())
        if inside:
            out.append(f"  faults that hit an open transaction step: {inside}")
    shown: Counter[str] = Counter()
    for v in report["violation_list"]:
        shown[v["invariant"]] += 1
        if shown[v["invariant"]] <= SHOWN_PER_INVARIANT:
            out.append(f"  [{v['invariant']}] {v['workflow_id']}: {v['summary']}")
            out.append(f"      {v['evidence']}")
    for name, n in shown.items():
        if n > SHOWN_PER_INVARIANT:
            out.append(f"  [{name}] ... and {n - SHOWN_PER_INVARIANT} more (see report.json)")
    for key in ("worker_crashes", "driver_errors"):
        if report.get(key):
            out += ["", f"{key.replace('_', ' ').capitalize()}: {len(report[key])}"]
            out += [f"  {e}"[:300] for e in report[key][:10]]
    d = report.get("drain", {})
    out += ["", f"Drain: {'complete' if d.get('complete') else 'INCOMPLETE'} in "
            f"{d.get('seconds')} s; violations: {report['violation_count']}"]  # fmt: skip
    return "\n".join(out)
