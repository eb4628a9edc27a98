"""A fake data warehouse for the batch job: append-only ledger files, written once per key."""

from __future__ import annotations

import os
from pathlib import Path

OUTPUT = Path("batches.log")  # each batch's output, once: "<key> records=a-b sum=S by=v1"
RUNS = Path("runs.log")  # each start of a batch's work: "<key> <pid> <code version>"
CHECKS = Path("validated.log")  # each batch the new code validated: "<key> <pid>"


def keys(path: Path) -> set[str]:
    """The keys already written to a ledger."""
    if not path.exists():
        return set()
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}


def write_once(path: Path, key: str, text: str) -> bool:
    """Append ``<key> <text>`` unless the key is there already: a batch whose work was cut
    short after it wrote (killed before its step was recorded) runs again, and must not
    write twice. Returns whether it wrote."""
    if key in keys(path):
        return False
    with path.open("a") as f:
        f.write(f"{key} {text}\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def note(path: Path, key: str, text: str) -> None:
    """Append a line whatever is there: a log of what ran, repeats included."""
    with path.open("a") as f:
        f.write(f"{key} {text}\n")
