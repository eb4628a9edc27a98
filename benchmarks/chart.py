"""Draw results/latest.json as a PNG: durably beside DBOS Transact, figure by figure.

Runs in the benchmark's own venv (benchmarks/.venv-dbos, which has matplotlib; the project
does not depend on it), called by ``benchmarks.run``:

    benchmarks/.venv-dbos/bin/python -P benchmarks/chart.py results/latest.json results/latest.png

One panel per kind of figure (latencies in ms, rates in /s, memory per workflow), log
scale, a bar per library with the min-max range as a whisker; the ratio to DBOS is written
beside each pair, and a target (when it is an absolute number) is a dashed mark.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PANELS = (
    ("ms", "Latency, ms (log scale; lower is better)"),
    ("/s", "Rate, per second (log scale; higher is better)"),
    ("KiB", "Memory per sleeping workflow, KiB (lower is better)"),
)
DURABLY, DBOS = "#1f77b4", "#ff7f0e"


def main(source: str, target: str) -> int:
    data = json.loads(Path(source).read_text())
    theirs = {m["key"]: m for m in data.get("dbos", [])}
    mine = [m for m in data["measurements"] if not m["key"].startswith("settings.")]
    panels = []
    for unit, title in PANELS:
        rows = [m for m in mine if m["unit"] == unit]
        if theirs:  # with DBOS: only the figures both libraries have
            rows = [m for m in rows if m["key"] in theirs and m.get("comparable", True)]
        if rows:
            panels.append((title, rows))
    if not panels:
        return 0
    heights = [max(1.6, 0.42 * len(rows) + 0.9) for _, rows in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(11, sum(heights) + 1.2),
        gridspec_kw={"height_ratios": heights}, squeeze=False,
    )  # fmt: skip
    for ax, (title, rows) in zip(axes[:, 0], panels, strict=True):
        draw(ax, title, rows, theirs)
    env = data["environment"]
    fig.suptitle(
        f"durably vs DBOS Transact on one PostgreSQL, same run\n{env.get('date', '')}; "
        f"{env.get('machine', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    return 0


def draw(ax: Any, title: str, rows: list[dict[str, Any]], theirs: dict[str, Any]) -> None:
    labels = [wrap(m["label"]) for m in rows]
    ys = list(range(len(rows)))
    bar = 0.38 if theirs else 0.6
    for i, m in enumerate(rows):
        y = ys[i] - (bar / 2 if theirs else 0)
        ax.barh(y, m["median"], height=bar, color=DURABLY, label="durably" if i == 0 else None)
        ax.errorbar(
            m["median"], y, xerr=[[m["median"] - m["min"]], [m["max"] - m["median"]]],
            fmt="none", ecolor="black", capsize=2, lw=0.8,
        )  # fmt: skip
        other = theirs.get(m["key"])
        if other is not None:
            y2 = ys[i] + bar / 2
            ax.barh(y2, other["median"], height=bar, color=DBOS, label="DBOS" if i == 0 else None)
            ax.errorbar(
                other["median"], y2,
                xerr=[[other["median"] - other["min"]], [other["max"] - other["median"]]],
                fmt="none", ecolor="black", capsize=2, lw=0.8,
            )  # fmt: skip
            versus = m.get("versus_dbos")
            if versus:
                ax.annotate(
                    f" {versus:.1f}x", (max(m["max"], other["max"]), ys[i]),
                    va="center", fontsize=8, fontweight="bold",
                    color="green" if versus >= 1 else "red",
                )  # fmt: skip
        target = m.get("target")
        if target and target[0] in ("max", "min"):
            ax.plot([target[1]] * 2, [ys[i] - 0.45, ys[i] + 0.45], "k--", lw=1)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    values = [m["median"] for m in rows] + [
        theirs[m["key"]]["median"] for m in rows if m["key"] in theirs
    ]
    positive = [v for v in values if v > 0]
    if positive:
        ax.set_xscale("log")  # a zero has no bar on a log scale: it is written out instead
        for i, m in enumerate(rows):
            if m["median"] <= 0:
                ax.annotate(
                    " durably: 0 (see the table)", (min(positive), ys[i] - (bar / 2)),
                    va="center", fontsize=8, color="red",
                )  # fmt: skip
    ax.set_title(title, fontsize=9, loc="left")
    ax.grid(axis="x", which="both", alpha=0.25)
    ax.margins(x=0.15)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def wrap(label: str, width: int = 52) -> str:
    if len(label) <= width:
        return label
    cut = label.rfind(" ", 0, width)
    return label[:cut] + "\n" + label[cut + 1 :] if cut > 0 else label


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
