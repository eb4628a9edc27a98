"""Tests for durably.codec: JSON encoding rules, hint-driven decoding, arguments and errors."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import socket
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Literal, NamedTuple, Optional, TypedDict, TypeVar, Union

import psycopg
import pydantic
import pytest

from durably.codec import (
    Codec,
    JsonCodec,
    PickleCodec,
    dump_error,
    dumps_args,
    load_args,
    load_error,
    return_hint,
)
from durably.errors import RecordedError, ValueDecodingError, ValueEncodingError

CODEC = JsonCodec()


def roundtrip(value: object, hint: object = None, codec: Codec = CODEC) -> Any:
    """Encode, parse as psycopg would, and rebuild."""
    return codec.load(json.loads(codec.dumps(value)), hint)


# --- types used by the tests (module level so string annotations resolve) -------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Pair(enum.Enum):
    ORIGIN = (0, 0)


class Point(NamedTuple):
    x: int
    y: float
    when: dt.date


class Movie(TypedDict):
    title: str
    year: int


@dataclass
class Inner:
    when: dt.datetime
    ids: tuple[uuid.UUID, ...]
    day: dt.date
    at: dt.time
    wait: dt.timedelta


@dataclass
class Order:
    inner: Inner
    price: Decimal
    blob: bytes
    color: Color
    level: Level
    pair: tuple[int, str]
    tags: set[str] = field(default_factory=set)
    frozen: frozenset[int] = frozenset()
    counts: dict[int, float] = field(default_factory=dict)
    point: Point | None = None
    note: str | None = None
    raw: bytearray = field(default_factory=bytearray)


@dataclass
class Node:
    name: str
    children: list[Node] = field(default_factory=list)


@dataclass
class Cat:
    name: str
    lives: int


@dataclass
class Dog:
    name: str
    good: bool


T = TypeVar("T")


@dataclass
class Box(Generic[T]):
    item: T
    items: list[T]


@dataclass
class SelfRef:
    name: str
    other: Any = None


class Address(pydantic.BaseModel):
    city: str
    since: dt.datetime


class User(pydantic.BaseModel):
    id: uuid.UUID
    name: str
    address: Address
    score: Decimal


class NormalError(Exception):
    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message, code)
        self.code = code


class ReformattingError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"failed with code {code}")
        self.code = code


class NoArgsError(Exception):
    def __init__(self) -> None:
        super().__init__("something broke")


class BadStrError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def sample_order() -> Order:
    return Order(
        inner=Inner(
            when=dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
            ids=(uuid.uuid4(), uuid.uuid4()),
            day=dt.date(2024, 2, 29),
            at=dt.time(23, 59, 1, 5),
            wait=dt.timedelta(days=2, seconds=3, microseconds=7),
        ),
        price=Decimal("19.990"),
        blob=b"\x00\xffbinary\n",
        color=Color.GREEN,
        level=Level.HIGH,
        pair=(1, "one"),
        tags={"b", "a", "c"},
        frozen=frozenset({3, 1, 2}),
        counts={1: 1.5, -2: 2.0},
        point=Point(1, 2.5, dt.date(2020, 1, 1)),
        note="héllo ✓",
        raw=bytearray(b"xyz"),
    )


# --- encoding ---------------------------------------------------------------------------------


def test_codec_names_and_protocol() -> None:
    assert JsonCodec().name == "json"
    assert PickleCodec().name == "pickle"
    assert isinstance(JsonCodec(), Codec)
    assert isinstance(PickleCodec(), Codec)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (0, "0"),
        (-12, "-12"),
        (1.5, "1.5"),
        ("x", '"x"'),
        ([], "[]"),
        ({}, "{}"),
        ({"a": [1, None]}, '{"a":[1,null]}'),
        ((1, 2), "[1,2]"),
        ({3, 1, 2}, "[1,2,3]"),
        (frozenset({"b", "a"}), '["a","b"]'),
        ({1: "a"}, '{"1":"a"}'),
        (Color.RED, '"red"'),
        (Level.LOW, "1"),
        (Pair.ORIGIN, "[0,0]"),
        (dt.timedelta(minutes=1, microseconds=500000), "60.5"),
        (Decimal("1.10"), '"1.10"'),
        (b"\x00\x01", '"AAE="'),
        (bytearray(b"hi"), '"aGk="'),
        (uuid.UUID(int=1), '"00000000-0000-0000-0000-000000000001"'),
        (dt.date(2024, 1, 2), '"2024-01-02"'),
        (dt.datetime(2024, 1, 2, 3, 4, 5), '"2024-01-02T03:04:05"'),
        (dt.time(1, 2, 3), '"01:02:03"'),
        (Point(1, 2.0, dt.date(2020, 1, 1)), '[1,2.0,"2020-01-01"]'),
        (Cat("tom", 9), '{"name":"tom","lives":9}'),
        ("é✓", '"é✓"'),
    ],
)
def test_dumps_plain_json(value: object, text: str) -> None:
    assert CODEC.dumps(value) == text


def test_unsortable_set_is_stored_as_list() -> None:
    assert sorted(json.loads(CODEC.dumps({1, "a"})), key=str) == [1, "a"]


def test_pydantic_model_dumps_as_json_object() -> None:
    user = User(
        id=uuid.UUID(int=5),
        name="ann",
        address=Address(city="Oslo", since=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        score=Decimal("2.5"),
    )
    data = json.loads(CODEC.dumps({"user": user}))
    assert data["user"]["address"]["city"] == "Oslo"
    assert data["user"]["id"] == "00000000-0000-0000-0000-000000000005"


def test_literal_backslash_u0000_is_not_a_nul() -> None:
    value = {"s": "\\u0000", "t": "a\\\\u0000b", "\\u0000": 1}
    text = CODEC.dumps(value)
    assert json.loads(text) == value
    assert roundtrip(value, dict[str, Any]) == value


def test_str_keys_that_look_like_json_literals_are_fine() -> None:
    value = {"true": 1, "false": 2, "null": 3, "1.5": 4, "1e+20": 5, "-0.5": {"true": [1]}}
    text = CODEC.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert json.loads(text) == value


def test_nesting_of_exactly_the_limit_is_stored() -> None:
    value: Any = "leaf"
    for _ in range(1000):
        value = [value]
    text = CODEC.dumps(value)
    assert text == "[" * 1000 + '"leaf"' + "]" * 1000


def test_shared_but_not_cyclic_references_are_fine() -> None:
    shared = [1, 2]
    cat = Cat("x", 1)
    assert json.loads(CODEC.dumps([shared, shared, {"a": cat, "b": cat}])) == [
        [1, 2],
        [1, 2],
        {"a": {"name": "x", "lives": 1}, "b": {"name": "x", "lives": 1}},
    ]


def test_five_megabyte_value_round_trips() -> None:
    rows = [
        {"id": i, "name": f"row-{i}" * 3, "score": i / 7, "tags": ["a", "b"], "ok": i % 2 == 0}
        for i in range(60_000)
    ]
    value = {"rows": rows, "blob": "x" * 1_000_000}
    text = CODEC.dumps(value)
    assert len(text) > 5_000_000
    assert roundtrip(value, dict[str, Any]) == value


def test_big_value_with_rich_types_round_trips() -> None:
    orders = [sample_order() for _ in range(2_000)]
    assert roundtrip(orders, list[Order]) == orders


# --- encoding errors --------------------------------------------------------------------------


def _encoding_error(value: object) -> str:
    with pytest.raises(ValueEncodingError) as info:
        CODEC.dumps(value)
    assert isinstance(info.value, TypeError)  # ValueEncodingError is also a TypeError
    return str(info.value)


def test_socket_error_names_type_and_path() -> None:
    with socket.socket() as sock:
        message = _encoding_error({"args": [{"conn": sock}]})
    assert "'socket'" in message
    assert "$.args[0].conn" in message
    assert "PickleCodec" in message


def test_dumps_args_error_names_argument_path() -> None:
    with socket.socket() as sock, pytest.raises(ValueEncodingError) as info:
        dumps_args(CODEC, (1, {"conn": sock}), {})
    assert "cannot store value of type 'socket' at $.args[1].conn" in str(info.value)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (lambda: 1, "'function'"),
        ((i for i in range(3)), "'generator'"),
        (object(), "'object'"),
        (print, "'builtin_function_or_method'"),
        (Cat, "'type'"),
        (1 + 2j, "'complex'"),
    ],
)
def test_unsupported_types(value: object, type_name: str) -> None:
    message = _encoding_error([1, {"x": value}])
    assert type_name in message
    assert "$[1].x" in message


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity(bad: float) -> None:
    message = _encoding_error({"values": [1.0, bad]})
    assert "NaN or Infinity" in message
    assert "$.values[1]" in message


def test_nan_inside_dataclass() -> None:
    message = _encoding_error([Cat("x", 1), {"c": Dog("y", True), "z": math.nan}])
    assert "$[1].z" in message


def test_nul_in_string() -> None:
    message = _encoding_error({"text": "abc\x00def"})
    assert "NUL" in message
    assert "bytes" in message
    assert "$.text" in message


def test_nul_in_key() -> None:
    assert "NUL" in _encoding_error({"a\x00": 1})


def test_nul_top_level_string() -> None:
    assert "NUL" in _encoding_error("\x00")


def test_lone_surrogate() -> None:
    assert "surrogate" in _encoding_error({"s": "\ud800"})


def test_huge_int() -> None:
    message = _encoding_error({"n": 10**5001})
    assert "digits" in message
    assert "$.n" in message


def test_cycles() -> None:
    items: list[Any] = [1]
    items.append(items)
    assert "cycle" in _encoding_error(items)
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping
    assert "cycle" in _encoding_error(mapping)
    node = SelfRef("a")
    node.other = node
    message = _encoding_error(node)
    assert "cycle" in message
    assert "SelfRef" in message


def test_deep_nesting() -> None:
    value: Any = 1
    for _ in range(2000):
        value = {"d": value}
    message = _encoding_error(value)
    assert "deeper than 1000" in message
    value = 1
    for _ in range(1001):
        value = [value]
    assert "deeper than 1000" in _encoding_error(value)


@pytest.mark.parametrize("key", [1.5, True, None, (1, 2), Color.RED, uuid.UUID(int=1)])
def test_non_str_keys(key: object) -> None:
    message = _encoding_error({"m": {key: 1}})
    assert "dict key" in message
    assert type(key).__qualname__ in message
    assert "$.m" in message


def test_failing_model_dump_is_an_encoding_error() -> None:
    class Broken:
        def model_dump(self, mode: str) -> object:
            raise RuntimeError("boom")

    message = _encoding_error([Broken()])
    assert "Broken" in message
    assert "boom" in message


# --- decoding ---------------------------------------------------------------------------------


def test_no_hint_returns_data_unchanged() -> None:
    data = {"a": [1, "2", None]}
    assert CODEC.load(data) is data
    assert CODEC.load(data, Any) is data
    assert CODEC.load(data, object) is data


def test_dataclass_round_trip() -> None:
    order = sample_order()
    loaded = roundtrip(order, Order)
    assert loaded == order
    assert isinstance(loaded.inner.ids, tuple)
    assert isinstance(loaded.tags, set)
    assert isinstance(loaded.frozen, frozenset)
    assert isinstance(loaded.point, Point)
    assert type(loaded.raw) is bytearray
    assert loaded.inner.when.tzinfo is not None


def test_recursive_and_generic_dataclasses() -> None:
    tree = Node("root", [Node("a"), Node("b", [Node("c")])])
    assert roundtrip(tree, Node) == tree
    box = Box(item=dt.date(2024, 1, 1), items=[dt.date(2024, 1, 2)])
    assert roundtrip(box, Box[dt.date]) == box


def test_pydantic_round_trip() -> None:
    user = User(
        id=uuid.uuid4(),
        name="ann",
        address=Address(city="Oslo", since=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        score=Decimal("2.5"),
    )
    assert roundtrip(user, User) == user
    assert roundtrip([user], list[User]) == [user]


def test_optional_and_union() -> None:
    typing_optional = Optional[dt.date]  # noqa: UP045 - the typing.Union spelling on purpose
    typing_union = Union[int, str]  # noqa: UP007 - the typing.Union spelling on purpose
    assert roundtrip(None, typing_optional) is None
    assert roundtrip(dt.date(2024, 1, 1), typing_optional) == dt.date(2024, 1, 1)
    assert roundtrip(dt.date(2024, 1, 1), dt.date | None) == dt.date(2024, 1, 1)
    assert roundtrip(None, dt.date | None) is None
    assert roundtrip("x", typing_union) == "x"
    assert roundtrip(4, typing_union) == 4
    assert type(roundtrip(1, float | int)) is int
    assert type(roundtrip(1.0, int | float)) is float
    assert roundtrip(Dog("rex", True), Cat | Dog) == Dog("rex", True)
    assert roundtrip(Cat("tom", 9), Cat | Dog) == Cat("tom", 9)
    stamp = dt.datetime(2024, 1, 1, 12)
    assert roundtrip(stamp, dt.datetime | str) == stamp
    assert roundtrip("plain", dt.datetime | str) == "plain"
    with pytest.raises(ValueDecodingError, match="union"):
        CODEC.load([1], typing_union)
    with pytest.raises(ValueDecodingError, match="date"):
        CODEC.load(5, dt.date | None)


def test_dict_with_int_and_enum_keys() -> None:
    assert roundtrip({1: "a", -5: "b"}, dict[int, str]) == {1: "a", -5: "b"}
    assert roundtrip({Level.LOW: 1}, dict[Level, int]) == {Level.LOW: 1}
    assert roundtrip({"k": [1, 2]}, dict[str, tuple[int, ...]]) == {"k": (1, 2)}


def test_containers() -> None:
    assert roundtrip((1, "a", 2.5), tuple[int, str, float]) == (1, "a", 2.5)
    assert roundtrip((), tuple[()]) == ()
    assert roundtrip((1, 2), tuple) == (1, 2)
    assert roundtrip({1, 2}, set[int]) == {1, 2}
    assert roundtrip({1, 2}, frozenset) == frozenset({1, 2})
    assert roundtrip([dt.date(2024, 1, 1)], list[dt.date]) == [dt.date(2024, 1, 1)]
    with pytest.raises(ValueDecodingError, match="expected 2 items"):
        CODEC.load([1], tuple[int, int])


def test_namedtuple_typeddict_literal() -> None:
    point = Point(1, 2.0, dt.date(2024, 1, 1))
    assert roundtrip(point, Point) == point
    assert isinstance(roundtrip(point, Point), Point)
    movie: Movie = {"title": "x", "year": 1999}
    assert roundtrip(movie, Movie) == movie
    assert roundtrip("a", Literal["a", "b"]) == "a"
    assert roundtrip(Color.RED, Literal[Color.RED]) is Color.RED
    with pytest.raises(ValueDecodingError):
        CODEC.load("c", Literal["a", "b"])
    with pytest.raises(ValueDecodingError):
        CODEC.load(True, Literal[1])


def test_scalars() -> None:
    assert roundtrip(3, float) == 3.0
    assert type(roundtrip(3, float)) is float
    assert roundtrip(Decimal("-0.000"), Decimal) == Decimal("-0.000")
    assert roundtrip(b"\x00" * 10, bytes) == b"\x00" * 10
    assert roundtrip(Pair.ORIGIN, Pair) is Pair.ORIGIN
    assert roundtrip(dt.timedelta(microseconds=1), dt.timedelta) == dt.timedelta(microseconds=1)
    stamp = dt.datetime(2024, 1, 1, 1, 2, 3)
    assert roundtrip(stamp, dt.date) == stamp  # a datetime is a date
    for bad, hint in [("1", int), (True, int), (1, bool), (1, str), ("x", bytes), ("z", Color)]:
        with pytest.raises(ValueDecodingError):
            CODEC.load(bad, hint)


def test_decoding_mismatch_names_hint_and_json_type() -> None:
    with pytest.raises(ValueDecodingError) as info:
        CODEC.load({"a": 1}, dt.datetime)
    assert "datetime" in str(info.value)
    assert "object" in str(info.value)


def test_decoding_error_names_path() -> None:
    data = json.loads(CODEC.dumps(sample_order()))
    data["inner"]["ids"][1] = 42
    with pytest.raises(ValueDecodingError) as info:
        CODEC.load(data, Order)
    message = str(info.value)
    assert "$.inner.ids[1]" in message
    assert "UUID" in message
    assert "number" in message
    with pytest.raises(ValueDecodingError, match=r"\$\[1\]\.name"):
        CODEC.load([{"name": "a"}, {"name": 5}], list[Node])


def test_dataclass_missing_field_is_a_decoding_error() -> None:
    with pytest.raises(ValueDecodingError, match="Cat"):
        CODEC.load({"name": "x"}, Cat)


def test_pydantic_invalid_data() -> None:
    with pytest.raises(ValueDecodingError, match="User"):
        CODEC.load({"id": "nope"}, User)


# --- arguments and return hints ---------------------------------------------------------------


def annotated(
    when: dt.datetime,
    order: Order,
    /,
    count: int,
    *extra: uuid.UUID,
    color: Color = Color.RED,
    **more: Decimal,
) -> list[Cat]:
    raise NotImplementedError


async def async_fn(x: int) -> dict[int, Cat]:
    raise NotImplementedError


def coroutine_fn() -> Coroutine[Any, Any, dt.date]:
    raise NotImplementedError


def returns_none() -> None:
    raise NotImplementedError


def unannotated(a, b=2):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def bad_forward_ref() -> DoesNotExist:  # type: ignore[name-defined]  # noqa: F821
    raise NotImplementedError


def test_dumps_args_load_args() -> None:
    args = (dt.datetime(2024, 1, 1), sample_order(), 3, uuid.uuid4(), uuid.uuid4())
    kwargs = {"color": Color.GREEN, "tip": Decimal("0.10")}
    text = dumps_args(CODEC, args, kwargs)
    data = json.loads(text)
    assert set(data) == {"args", "kwargs"}
    assert len(data["args"]) == 5
    loaded_args, loaded_kwargs = load_args(CODEC, data, annotated)
    assert loaded_args == args
    assert loaded_kwargs == kwargs
    assert load_args(CODEC, text, annotated) == (args, kwargs)


def test_load_args_without_hints_and_errors() -> None:
    data = json.loads(dumps_args(CODEC, (dt.date(2024, 1, 1),), {"b": (1, 2)}))
    assert load_args(CODEC, data, unannotated) == (("2024-01-01",), {"b": [1, 2]})
    bad = {"args": ["not a date", {}, 1], "kwargs": {}}
    with pytest.raises(ValueDecodingError, match=r"\$\.args\[0\]"):
        load_args(CODEC, bad, annotated)
    with pytest.raises(ValueDecodingError):
        load_args(CODEC, [1, 2], annotated)
    assert load_args(CODEC, {"args": [], "kwargs": {}}, print) == ((), {})


def test_return_hint() -> None:
    assert return_hint(annotated) == list[Cat]
    assert return_hint(async_fn) == dict[int, Cat]
    assert return_hint(coroutine_fn) is dt.date
    assert return_hint(returns_none) is None
    assert return_hint(unannotated) is None
    assert return_hint(bad_forward_ref) is None
    assert return_hint(print) is None
    assert return_hint(42) is None  # type: ignore[arg-type]


# --- pickle -----------------------------------------------------------------------------------


class Opaque:
    def __init__(self, value: complex) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


def test_pickle_codec_round_trip() -> None:
    codec = PickleCodec()
    value = {"x": Opaque(1 + 2j), "when": dt.datetime(2024, 1, 1)}
    text = codec.dumps(value)
    stored = json.loads(text)
    assert list(stored) == ["$pickle"]
    assert roundtrip(value, codec=codec) == value
    args_text = dumps_args(codec, (Opaque(3j),), {"k": {1, 2}})
    assert load_args(codec, json.loads(args_text), unannotated) == ((Opaque(3j),), {"k": {1, 2}})


def test_pickle_codec_errors() -> None:
    with pytest.raises(ValueEncodingError, match="function"):
        PickleCodec().dumps(lambda: 1)
    with pytest.raises(ValueDecodingError):
        PickleCodec().load({"$pickle": "bm90IGEgcGlja2xl"})
    assert PickleCodec().load(["2024-01-01"], list[dt.date]) == [dt.date(2024, 1, 1)]


# --- errors -----------------------------------------------------------------------------------


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def error_roundtrip(exc: BaseException) -> BaseException:
    return load_error(json.loads(dump_error(exc)))


def test_dump_error_format() -> None:
    exc = raised(ValueError("bad value", 3))
    data = json.loads(dump_error(exc))
    assert data["type"] == "builtins.ValueError"
    assert data["message"] == "('bad value', 3)"
    assert data["args"] == ["bad value", 3]
    assert "Traceback" in data["traceback"]
    assert "raise exc" in data["traceback"]


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad"),
        KeyError("missing"),
        TypeError(),
        RuntimeError("a", 1),
        OSError(13, "denied"),
        FileNotFoundError(2, "No such file or directory", "/nope"),
        TimeoutError("slow"),
        NormalError("custom", code=7),
        ZeroDivisionError("division by zero"),
    ],
)
def test_error_round_trip(exc: BaseException) -> None:
    original = raised(exc)
    loaded = error_roundtrip(original)
    assert type(loaded) is type(original)
    assert str(loaded) == str(original)
    assert loaded.args == original.args
    assert "Traceback" in loaded.__durably_traceback__  # type: ignore[attr-defined]


def test_error_attributes_are_restored() -> None:
    loaded = error_roundtrip(raised(NormalError("custom", code=7)))
    assert isinstance(loaded, NormalError)
    assert loaded.code == 7
    reformatted = error_roundtrip(raised(ReformattingError(5)))
    assert isinstance(reformatted, ReformattingError)
    assert str(reformatted) == "failed with code 5"
    assert reformatted.code == 5
    filename = error_roundtrip(raised(FileNotFoundError(2, "No such file", "/x")))
    assert isinstance(filename, FileNotFoundError)
    assert filename.filename == "/x"


def test_error_with_unusable_init_becomes_recorded_error() -> None:
    loaded = error_roundtrip(raised(NoArgsError()))
    assert isinstance(loaded, RecordedError)
    assert loaded.type_name.endswith("test_codec.NoArgsError")
    assert loaded.message == "something broke"
    assert "Traceback" in loaded.traceback
    assert loaded.__durably_traceback__ == loaded.traceback  # type: ignore[attr-defined]
    again = error_roundtrip(loaded)  # re-recording keeps the original type name
    assert isinstance(again, RecordedError)
    assert again.type_name == loaded.type_name
    assert again.message == "something broke"


def test_error_with_unknown_type_or_args() -> None:
    data = json.loads(dump_error(raised(ValueError(object()))))
    assert data["args"] is None
    assert isinstance(load_error(data), RecordedError)
    gone = {"type": "no_such_module.Gone", "message": "m", "traceback": "tb", "args": []}
    loaded = load_error(gone)
    assert isinstance(loaded, RecordedError)
    assert loaded.type_name == "no_such_module.Gone"
    assert str(loaded) == "no_such_module.Gone: m"
    not_exc = {"type": "builtins.dict", "message": "", "traceback": "", "args": []}
    assert isinstance(load_error(not_exc), RecordedError)
    assert isinstance(load_error("garbage"), RecordedError)
    assert isinstance(load_error(None), RecordedError)


def test_dump_error_never_raises() -> None:
    data = json.loads(dump_error(raised(BadStrError("x"))))
    assert data["type"].endswith("BadStrError")
    nul = json.loads(dump_error(ValueError("nul \x00 here")))
    assert "\x00" not in nul["message"]
    assert nul["args"] is None
    assert isinstance(load_error(nul), RecordedError)


def test_error_text_is_loadable_from_str() -> None:
    loaded = load_error(dump_error(raised(KeyError("k"))))
    assert isinstance(loaded, KeyError)


# --- PostgreSQL jsonb round trip --------------------------------------------------------------


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"d": [value]}
    return value


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (sample_order(), Order),
        ([sample_order(), None], list[Order | None]),
        ({"s": "\\u0000", "u": "é✓ 日本", "e": "", "true": 1}, dict[str, Any]),
        ({1: Color.RED, 2: Color.GREEN}, dict[int, Color]),
        (10**4000, int),
        (-(2**63), int),
        (1e300, float),
        (5e-324, float),
        (Point(1, 2.5, dt.date(2024, 1, 1)), Point),
        (_deep(200), Any),
        ({"big": "x" * 5_000_000}, dict[str, str]),
    ],
)
def test_postgres_jsonb_round_trip(pg_url: str, value: object, hint: object) -> None:
    text = CODEC.dumps(value)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("select %s::jsonb", (text,)).fetchone()
    assert row is not None
    assert CODEC.load(row[0], hint) == value


def test_postgres_jsonb_error_and_args_round_trip(pg_url: str) -> None:
    args = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), sample_order(), 1)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        error_row = conn.execute(
            "select %s::jsonb", (dump_error(raised(NormalError("x", 3))),)
        ).fetchone()
        args_row = conn.execute("select %s::jsonb", (dumps_args(CODEC, args, {}),)).fetchone()
    assert error_row is not None
    assert args_row is not None
    loaded = load_error(error_row[0])
    assert isinstance(loaded, NormalError)
    assert loaded.code == 3
    assert load_args(CODEC, args_row[0], annotated) == (args, {})
