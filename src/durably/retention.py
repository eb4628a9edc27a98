"""``app.gc`` / ``client.gc``: delete finished workflows older than a cutoff."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from durably.errors import InvalidArgument
from durably.execution.retention import FINISHED, Collected, Rule, collect
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
        statuses: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> Job[Collected]:
        """Delete workflows that finished (SUCCESS, ERROR or CANCELLED; only those of
        ``statuses`` when given) more than ``older_than`` ago by the database's clock,
        with their steps, messages, events and streams, and executor rows whose lease
        ended that long ago and that own no unfinished work. Unfinished workflows
        (DEAD_LETTER included) and children of unfinished parents are kept. Runs in
        transactions of ``batch_size`` workflows; ``progress`` is called with the running
        count after each. Returns how many workflows and executors went."""
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            raise InvalidArgument(
                f"older_than must be a positive timedelta (e.g. timedelta(days=30)), got "
                f"{older_than!r}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        chosen = FINISHED if statuses is None else _finished(statuses)
        engine = self.engine
        rule = Rule(chosen, older_than.total_seconds())
        return engine, collect(engine, rule, batch_size, progress)

    gc, gc_async = twins(_gc)


def _finished(statuses: Sequence[str]) -> tuple[str, ...]:
    """The statuses given, each a finished one (upper-cased), or InvalidArgument."""
    if isinstance(statuses, str):
        statuses = [statuses]
    chosen = tuple(str(status).upper() for status in statuses)
    wrong = [status for status in chosen if status not in FINISHED]
    if wrong or not chosen:
        raise InvalidArgument(
            f"statuses must name finished statuses ({', '.join(FINISHED)}), got "
            f"{list(statuses)!r}; unfinished work is never deleted"
        )
    return chosen
