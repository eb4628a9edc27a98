"""``app.gc`` / ``client.gc``: delete finished workflows older than a cutoff."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from durably.errors import InvalidArgument
from durably.execution.retention import Collected, collect
from durably.runtime.engine import Engine
from durably.twins import Job, twins

DEFAULT_BATCH = 1000


class Retention:
    """The retention methods that ``App`` and ``Client`` share."""

    @property
    def engine(self) -> Engine:
        raise NotImplementedError

    def _gc(
        self,
        older_than: timedelta,
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> Job[Collected]:
        """Delete workflows that finished (SUCCESS, ERROR or CANCELLED) more than
        ``older_than`` ago by the database's clock, with their steps, messages, events and
        streams, and executor rows whose lease ended that long ago and that own no
        unfinished work. Unfinished workflows (DEAD_LETTER included) and children of
        unfinished parents are kept. Runs in transactions of ``batch_size`` workflows;
        ``progress`` is called with the running count after each. Returns how many
        workflows and executors went."""
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            raise InvalidArgument(
                f"older_than must be a positive timedelta (e.g. timedelta(days=30)), got "
                f"{older_than!r}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        engine = self.engine
        return engine, collect(engine, older_than.total_seconds(), batch_size, progress)

    gc, gc_async = twins(_gc)
