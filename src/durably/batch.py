"""The runs given to ``enqueue_many``: checked and encoded before anything is written."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from durably import codec as codec_module
from durably.errors import InvalidArgument
from durably.execution.host import Host
from durably.execution.observe import stamp
from durably.options import WorkflowOptions, check_workflow_id

# One run: a tuple of positional arguments, or a mapping of keyword arguments.
Run = tuple[Any, ...] | Mapping[str, Any]


def split_run(run: object, index: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A run as (args, kwargs); anything but a tuple or a mapping is refused."""
    if isinstance(run, tuple):
        return run, {}
    if isinstance(run, Mapping):
        if not all(isinstance(key, str) for key in run):
            raise InvalidArgument(f"run {index} of enqueue_many has a keyword that is not a string")
        return (), dict(run)
    raise InvalidArgument(
        f"run {index} of enqueue_many is a {type(run).__name__}: give each run as a tuple of "
        f"positional arguments, e.g. (order_id,), or a dict of keyword arguments"
    )


def as_runs(runs: Iterable[Run]) -> list[Run]:
    """The runs as a list; a lone run (a tuple, a dict) is refused, not taken apart."""
    if isinstance(runs, tuple | Mapping | str | bytes) or not isinstance(runs, Iterable):
        raise InvalidArgument(
            "enqueue_many takes a list of runs, each a tuple of arguments or a dict of keyword "
            "arguments: e.g. [(1,), (2,)]"
        )
    return list(runs)


def encode_runs(
    runs: list[Run],
    ids: Sequence[str] | None,
    options: WorkflowOptions,
    codec: codec_module.Codec,
    check: Callable[[tuple[Any, ...], dict[str, Any]], None] | None = None,
) -> list[tuple[str, str]]:
    """Every run as (workflow ID, encoded inputs), all checked before any is written."""
    if options.id is not None:
        raise InvalidArgument("enqueue_many gives each run its own ID: pass ids=[...], not id=")
    if options.dedup_key is not None:
        raise InvalidArgument(
            "a dedup_key names one run: enqueue deduplicated work one at a time with enqueue"
        )
    given = runs
    if ids is not None:
        if isinstance(ids, str) or len(ids) != len(given):
            raise InvalidArgument(
                f"ids must be a list with one ID per run: {len(given)} runs were given"
            )
        for workflow_id in ids:
            check_workflow_id(workflow_id)
    encoded = []
    for index, run in enumerate(given):
        args, kwargs = split_run(run, index)
        if check is not None:
            try:
                check(args, kwargs)
            except TypeError as exc:
                raise TypeError(f"run {index} of enqueue_many: {exc}") from None
        workflow_id = ids[index] if ids is not None else str(uuid.uuid4())
        encoded.append((workflow_id, codec_module.dumps_args(codec, args, kwargs)))
    return encoded


def stamped(
    engine: Host, encoded: list[tuple[str, str]], name: str, queue: str
) -> list[tuple[str, str]]:
    """The runs' inputs carrying the caller's trace context, when telemetry is on."""
    if not engine.observers:
        return encoded
    return [
        (workflow_id, stamp(engine, workflow_id, name, "enqueue", inputs, queue))
        for workflow_id, inputs in encoded
    ]
