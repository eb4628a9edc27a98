"""The pipeline's input: chunks of generated sales records, the same on every run."""

from __future__ import annotations

import random
import time

RECORDS_PER_CHUNK = 500


def read_chunk(index: int) -> list[int]:
    """The amounts (in cents) of chunk ``index``: seeded by the index, so a chunk read
    again after a crash is the same chunk."""
    time.sleep(0.15)  # reading a file from object storage
    rng = random.Random(index)
    return [rng.randrange(100, 10_000) for _ in range(RECORDS_PER_CHUNK)]


def expected_total(chunks: int) -> int:
    """The right answer, computed without durably, for the program's last line."""
    total = 0
    for index in range(chunks):
        rng = random.Random(index)
        total += sum(rng.randrange(100, 10_000) for _ in range(RECORDS_PER_CHUNK))
    return total
