"""Work no live worker serves is said out loud: a warning once per name per process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from durably.errors import DurablyError
from durably.execution.effects import Protocol, Read

if TYPE_CHECKING:
    from durably.execution.host import Host

log = logging.getLogger("durably")

# How names are made, for the warnings (a mismatch is the usual cause).
NAMING = (
    "a workflow's name is the name= given to @app.workflow(...), or else the decorated "
    "function's qualified name, without its module (e.g. 'send_email'; durably 0.1 "
    "named it 'myapp.jobs.send_email')"
)
# A name found served is looked at again after this long (a worker may have gone since);
# one found unserved is warned about and not looked at again.
RECHECK = 60.0

_lock = threading.Lock()
_checked: dict[tuple[str, str | None], float] = {}
_warned: set[tuple[str, str | None]] = set()
_strangers: set[str] = set()
_stranded: set[str] = set()


def check_enqueued(host: Host, name: str, queue: str | None) -> Protocol[None]:
    """After an enqueue of ``name`` that no code here registers: warn (once) if no live
    worker serves it. At most one query per name and queue a minute."""
    key = (name, queue)
    now = time.monotonic()
    with _lock:
        if key in _warned or now - _checked.get(key, -RECHECK) < RECHECK:
            return
        _checked[key] = now
    try:
        rows = yield Read(host.statements.served(name, queue, host.versions.enqueued))
    except DurablyError:  # the enqueue itself is done: the check waits for the next one
        with _lock:
            _checked.pop(key, None)
        return
    if rows and rows[0].served:
        return
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    where = f" on queue {queue!r}" if queue is not None else ""
    log.warning(
        "durably: no live worker serves workflow %r%s (no executor with a current heartbeat "
        "registers that name%s). It is recorded and waits until one does; %s. Enqueue by "
        "exactly that name, and run a worker whose code declares it%s.",
        name,
        where,
        " and listens to that queue" if queue is not None else "",
        NAMING,
        f" (durably worker MODULE:APP --queue {queue})" if queue is not None else "",
    )


def strangers_seen(executor_id: str, names: Iterable[str]) -> None:
    """A heartbeat found waiting work under these names, which this executor does not
    register and no live one serves: warn once per name."""
    with _lock:
        new = sorted(set(names) - _strangers)
        _strangers.update(new)
    for name in new:
        log.warning(
            "durably: executor %s sees unfinished workflows named %r (queued on a queue it "
            "serves, or parked) that it does not register and no live worker serves; they "
            "wait until a worker whose code declares that name runs. %s. Deploy that code, "
            "or look at them with app.list_workflows(name=%r) and cancel them.",
            executor_id,
            name,
            NAMING[0].upper() + NAMING[1:],
            name,
        )


def versions_stranded(
    executor_id: str, current: str | None, found: Iterable[tuple[str, int]]
) -> None:
    """The census found unfinished work of these application versions that this executor
    does not recover and no live executor does: warn once per version."""
    with _lock:
        new = [(version, count) for version, count in found if version not in _stranded]
        _stranded.update(version for version, _ in new)
    for version, count in new:
        log.warning(
            "durably: %d unfinished workflow(s) of application version %r wait: executor %s "
            "runs version %r and no live worker recovers %r, so nothing resumes them. Run a "
            "worker of that version (App(app_version=%r)), or move them on purpose to code "
            "that can replay them: durably workflows set-version --from %s --to %s "
            "(app.set_version). See docs/upgrades.md.",
            count,
            version,
            executor_id,
            current,
            version,
            version,
            version,
            current,
        )
