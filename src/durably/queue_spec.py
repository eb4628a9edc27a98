"""A queue's declared limits: a value shared by the API, the runtime and the store."""

from __future__ import annotations

import math
from dataclasses import dataclass

from durably.errors import ConfigurationError
from durably.options import check_name


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue's limits, as declared; enforced in the database."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: tuple[int, float] | None = None
    priority: bool = False
    partition_concurrency: int | None = None

    def __post_init__(self) -> None:
        try:
            check_name(self.name, "queue name")
        except Exception as exc:
            raise ConfigurationError(str(exc)) from None
        for label, value in (
            ("concurrency", self.concurrency),
            ("worker_concurrency", self.worker_concurrency),
            ("partition_concurrency", self.partition_concurrency),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigurationError(
                    f"queue {self.name!r}: {label} must be a whole number >= 1 or None, "
                    f"got {value!r}"
                )
        if self.rate_limit is not None:
            ok = (
                isinstance(self.rate_limit, tuple)
                and len(self.rate_limit) == 2
                and isinstance(self.rate_limit[0], int)
                and not isinstance(self.rate_limit[0], bool)
                and self.rate_limit[0] >= 1
                and isinstance(self.rate_limit[1], int | float)
                and 0 < self.rate_limit[1] < math.inf
            )
            if not ok:
                raise ConfigurationError(
                    f"queue {self.name!r}: rate_limit must be (starts, seconds) with "
                    f"starts >= 1 and a finite number of seconds > 0, got {self.rate_limit!r}"
                )
        if not isinstance(self.priority, bool):
            raise ConfigurationError(f"queue {self.name!r}: priority must be True or False")

    @property
    def serialised(self) -> bool:
        """Claims must take the queue's lock when a limit spans workers."""
        return any(
            v is not None for v in (self.concurrency, self.rate_limit, self.partition_concurrency)
        )
