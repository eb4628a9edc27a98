"""Property tests of the codec (Hypothesis): every value of a supported type comes back
from storage equal and of the same type, through JSON text, through PostgreSQL jsonb and
through a real workflow; every value without a stored form is refused with a clear
``ValueEncodingError`` before anything is written."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durably
from durably.codec import JsonCodec, PickleCodec
from support import wait_until

CODEC = JsonCodec()
# No example database in the work tree; a failure prints its example and how to replay it.
PROPERTY = settings(deadline=None, database=None, print_blob=True)

# ---------------------------------------------------------------------------------------------
# Supported types, each with a strategy for its values
# ---------------------------------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    label: str
    at: dt.datetime | None = None


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    amount: Decimal
    lines: list[Point]
    tags: frozenset[str] = frozenset()


class Money(pydantic.BaseModel):
    currency: str
    cents: int
    paid_at: dt.datetime | None = None


class Pair(NamedTuple):
    left: int
    right: str


# Text PostgreSQL can hold: no NUL, no lone surrogates.
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
offsets = st.builds(
    dt.timezone,
    st.timedeltas(
        min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
    ),
)
# Pydantic writes its own fields, and UTC offsets to the whole minute (as real zones
# have had them since about 1900).
whole_offsets = st.builds(
    dt.timezone, st.integers(-1439, 1439).map(lambda m: dt.timedelta(minutes=m))
)
zones = st.one_of(st.none(), offsets, st.timezones())
datetimes = st.datetimes(timezones=zones)
floats = st.floats(allow_nan=False, allow_infinity=False)
decimals = st.decimals(allow_nan=False, allow_infinity=False)
timedeltas = st.timedeltas(
    min_value=dt.timedelta(days=-50_000), max_value=dt.timedelta(days=50_000)
) | st.timedeltas().map(lambda d: dt.timedelta(days=d.days, seconds=d.seconds))

# (hint, strategy of values of that hint)
SCALARS: list[tuple[object, st.SearchStrategy[Any]]] = [
    (int, st.integers()),
    (float, floats),
    (bool, st.booleans()),
    (str, texts),
    (bytes, st.binary()),
    (Decimal, decimals),
    (uuid.UUID, st.uuids()),
    (dt.datetime, datetimes),
    (dt.date, st.dates()),
    (dt.time, st.times(timezones=st.none() | offsets)),
    (dt.timedelta, timedeltas),
    (Colour, st.sampled_from(Colour)),
    (Level, st.sampled_from(Level)),
    (type(None), st.none()),
]

points = st.builds(Point, st.integers(), texts, st.none() | st.datetimes(timezones=offsets))
COMPOUNDS: list[tuple[object, st.SearchStrategy[Any]]] = [
    (Point, points),
    (
        Order,
        st.builds(
            Order,
            st.uuids(),
            decimals,
            st.lists(points, max_size=3),
            st.frozensets(texts, max_size=3),
        ),
    ),
    (
        Money,
        st.builds(
            Money,
            currency=texts,
            cents=st.integers(-(2**62), 2**62),
            paid_at=st.none() | st.datetimes(timezones=whole_offsets),
        ),
    ),
    (Pair, st.builds(Pair, st.integers(), texts)),
]


def _typed(depth: int) -> st.SearchStrategy[tuple[object, Any]]:
    """A (hint, value) pair: a scalar, a class of durably's, or a container of them."""
    leaves = st.sampled_from(SCALARS + COMPOUNDS).flatmap(
        lambda pair: pair[1].map(lambda value: (pair[0], value))
    )
    if depth == 0:
        return leaves
    inner = _typed(depth - 1)
    return st.one_of(
        leaves,
        inner.flatmap(lambda p: st.lists(st.just(p[1]), max_size=3).map(lambda v: (list[p[0]], v))),
        inner.flatmap(
            lambda p: st.dictionaries(texts, st.just(p[1]), max_size=3).map(
                lambda v: (dict[str, p[0]], v)
            )
        ),
        st.tuples(inner, inner).map(lambda ps: (tuple[ps[0][0], ps[1][0]], (ps[0][1], ps[1][1]))),
        inner.map(lambda p: (p[0] | None, p[1]) if _optional_ok(p[0]) else p),
        st.dictionaries(st.integers(), texts, max_size=3).map(lambda v: (dict[int, str], v)),
    )


def _optional_ok(hint: object) -> bool:
    return isinstance(hint, type) and hint is not type(None)


typed_values = _typed(2)


# ---------------------------------------------------------------------------------------------
# Equality that also checks types (== alone would take 1 for True, 1.0 for 1)
# ---------------------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types, all the way down (an aware datetime also keeps its
    UTC offset; its zone object may become a fixed offset)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dt.datetime | dt.time):
        return a.replace(tzinfo=None) == b.replace(tzinfo=None) and a.utcoffset() == b.utcoffset()
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, pydantic.BaseModel):
        return all(same(getattr(a, n), getattr(b, n)) for n in type(a).model_fields)
    return bool(a == b)


# ---------------------------------------------------------------------------------------------
# Supported values round-trip
# ---------------------------------------------------------------------------------------------


@settings(PROPERTY, max_examples=400)
@given(typed_values)
def test_every_supported_value_round_trips_through_json_text(typed: tuple[object, Any]) -> None:
    hint, value = typed
    text = CODEC.dumps(value)
    back = CODEC.load(json.loads(text), hint)
    assert same(value, back), (hint, value, back)
    assert CODEC.dumps(back) == text  # stable: storing it again writes the same text


@settings(PROPERTY, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(typed_values)
def test_every_supported_value_round_trips_through_postgresql_jsonb(
    pg_url: str, typed: tuple[object, Any]
) -> None:
    hint, value = typed
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT %s::jsonb", (CODEC.dumps(value),)).fetchone()
    assert row is not None
    back = CODEC.load(row[0], hint)
    assert same(value, back), (hint, value, back)


def test_a_workflow_stores_and_replays_each_supported_type(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """Through the tables: the argument is enqueued and loaded by a worker, the step's
    result recorded; the workflow parks, and its replay takes the step's result from the
    record (the step does not run again); the workflow's result is read back. Each comes
    back as its annotated type."""
    app = make_app(park_after=0)
    runs: list[Any] = []
    echoes = {hint: _declare_echo(app, hint, runs) for hint, _ in SCALARS + COMPOUNDS}
    queue = app.queue("echo")
    app.launch()

    @settings(PROPERTY, max_examples=30)
    @given(st.sampled_from(SCALARS + COMPOUNDS).flatmap(lambda p: st.tuples(st.just(p[0]), p[1])))
    def stored_and_replayed(typed: tuple[object, Any]) -> None:
        hint, value = typed
        runs.clear()
        handle = queue.enqueue(echoes[hint], value)
        wait_until(lambda: parked(db, handle.id), what="the echo parked in recv")
        app.send(handle.id, "go", topic="go")
        back, message = handle.result(timeout=30)
        assert message == "go" and len(runs) == 1  # replayed, the step not run again
        assert same(value, back), (hint, value, back)
        assert same(value, runs[0]), (hint, value, runs[0])
        assert [s.name for s in app.list_steps(handle.id)] == [f"step-{_name(hint)}", "recv:go"]

    stored_and_replayed()


def parked(db: psycopg.Connection[Any], workflow_id: str) -> bool:
    """The workflow waits in the database for a message, owned by nobody."""
    row = db.execute(
        "SELECT 1 FROM workflows WHERE id = %s AND status = 'PENDING' "
        "AND executor_id IS NULL AND wait_kind = 'recv'",
        (workflow_id,),
    ).fetchone()
    return row is not None


def _name(hint: object) -> str:
    return getattr(hint, "__name__", str(hint))


def _declare_echo(app: durably.App, hint: object, runs: list[Any]) -> Any:
    """A workflow that passes its argument through a step (whose runs are counted) and
    then waits for a message: argument, step result and workflow result typed ``hint``."""

    def step(value: Any) -> Any:
        runs.append(value)
        return value

    def flow(value: Any) -> Any:
        return [kept(value), durably.recv("go", timeout=60)]

    step.__annotations__ = {"value": hint, "return": hint}
    flow.__annotations__ = {"value": hint, "return": tuple[hint, str]}
    kept = app.step(name=f"step-{_name(hint)}")(step)
    return app.workflow(name=f"echo-{_name(hint)}")(flow)


# ---------------------------------------------------------------------------------------------
# Unsupported values are refused, clearly, before anything is written
# ---------------------------------------------------------------------------------------------


class Opaque:
    """A class durably has no stored form for."""


@dataclasses.dataclass
class Box:
    item: Any


def _cycle() -> list[Any]:
    looped: list[Any] = []
    looped.append(looped)
    return looped


# (value, what its error must say)
UNSUPPORTED: list[tuple[Callable[[], object], str]] = [
    (Opaque, "Opaque"),
    (lambda: lambda: None, "function"),
    (lambda: 1 + 2j, "complex"),
    (lambda: float("nan"), "NaN"),
    (lambda: float("inf"), "Infinity"),
    (lambda: "a\x00b", "NUL"),
    (lambda: "\ud800", "surrogate"),
    (lambda: {(1, 2): "tuple key"}, "dict key"),
    (lambda: {1.5: "float key"}, "dict key"),
    (_cycle, "cycle"),
    (lambda: object(), "object"),
    (lambda: iter([1]), "iterator"),
    (lambda: dt.timedelta(days=999_999, microseconds=1), "whole seconds"),
]
# What to do about it: every refusal says one of these.
ADVICE = ("use ", "store it", "convert", "round it", "JSON object keys must be str")


def _bury(value: object, path: list[int]) -> object:
    """``value`` nested inside containers along ``path`` (list, dict, dataclass, tuple)."""
    for kind in reversed(path):
        if kind == 0:
            value = [1, value]
        elif kind == 1:
            value = {"k": value}
        elif kind == 2:
            value = Box(value)
        else:
            value = ("t", value)
    return value


@settings(PROPERTY, max_examples=300)
@given(st.sampled_from(UNSUPPORTED), st.lists(st.integers(0, 3), max_size=4))
def test_every_unsupported_value_is_refused_with_a_clear_error(
    bad: tuple[Callable[[], object], str], path: list[int]
) -> None:
    make, said = bad
    value = _bury(make(), path)
    with pytest.raises(durably.ValueEncodingError) as refused:
        CODEC.dumps(value)
    message = str(refused.value)
    assert said.lower() in message.lower(), message
    assert any(advice in message for advice in ADVICE), message
    assert "$" in message  # names where the value sits
    assert isinstance(refused.value, durably.DurablyError)


def test_a_value_over_the_size_limit_is_refused_by_every_codec() -> None:
    limit = durably.codec.MAX_VALUE_BYTES
    assert limit == 32 * 1024 * 1024
    fits = "x" * (limit - 2)  # with its quotes: exactly the limit
    assert len(CODEC.dumps(fits)) == limit
    for too_big in ("x" * (limit - 1), ["é" * (limit // 4)] * 2, {"k": b"\x00" * limit}):
        with pytest.raises(durably.ValueTooLarge, match="MAX_VALUE_BYTES") as refused:
            CODEC.dumps(too_big)
        assert refused.value.size > limit == refused.value.limit
        assert "MiB" in str(refused.value) and "reference" in str(refused.value)
    with pytest.raises(durably.ValueTooLarge):
        PickleCodec().dumps(b"\x01" * limit)
