"""Keyword bundles: the long keyword lists of public signatures, each named once.

A bundle is a ``TypedDict`` taken as ``**kwargs: Unpack[...]`` (PEP 692): type checkers
see every name and type as in a plain signature. At run time ``**kwargs`` would take
any name, so ``check_keywords`` refuses an unknown one as Python would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict


class WorkflowFilters(TypedDict, total=False):
    """The filters of ``list_workflows``; a filter not given does not filter."""

    status: str | Sequence[str] | None
    name: str | None
    ids: Sequence[str] | None
    created_after: datetime | None
    created_before: datetime | None
    limit: int | None
    offset: int  # default 0
    descending: bool  # default False: oldest first
    queue: str | None  # only work enqueued on this queue
    # keyset paging: (created_at, id) of the last workflow of the previous page; the
    # listing goes on after it in its order (fast at any depth, unlike offset)
    after: tuple[datetime, str] | None
    app_version: str | None  # only workflows recorded under this application version


class RetryPolicy(TypedDict, total=False):
    """How ``@app.step(...)`` retries a failed step (defaults in brackets)."""

    retries: int  # more attempts after a failure [0]
    interval: float  # seconds before the first retry [1.0]
    backoff: float  # each next delay is this many times longer [2.0]
    max_delay: float  # seconds, the longest delay [60.0]
    retry_on: Callable[[BaseException], bool] | None  # retry this exception? [always]


class TransactionSettings(RetryPolicy, total=False):
    """How ``@app.transaction(...)`` runs: the step's retry policy (for errors of its
    own), and (defaults in brackets):"""

    isolation: str  # 'serializable', 'repeatable read' or 'read committed' ['serializable']
    database: str | None  # another database's URL [the app's app_db, else its own]
    conflict_retries: int  # runs again after a serialization failure or deadlock [10]
    pipeline: bool  # BEGIN to COMMIT in one round trip for write-only SQL [False]


def check_keywords(given: Mapping[str, object], bundle: type[Any], where: str) -> None:
    """Refuse a name ``bundle`` does not have, with the TypeError of a plain signature
    (``**kwargs`` would otherwise take any name at run time)."""
    known: frozenset[str] = bundle.__required_keys__ | bundle.__optional_keys__
    for key in given:
        if key not in known:
            raise TypeError(f"{where}() got an unexpected keyword argument {key!r}")
