"""Pickle is never used unless the app opts in (``App(codec=durably.PickleCodec())``).

A default app refuses a value that only pickle could store, clearly and before anything
is written, and never unpickles what it reads: a row written by someone else that looks
like a stored pickle comes back as the plain JSON it is, and its code does not run.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durably
from durably.codec.encode import b64


class Opaque:
    """A plain class: no JSON form, so only pickle can store it."""

    def __init__(self, value: complex) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


class Tripwire:
    """Unpickling this creates ``path``: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.touch, (self.path,))


def rows(db: psycopg.Connection[Any]) -> int:
    found = db.execute("SELECT count(*) FROM workflows").fetchone()
    assert found is not None
    return int(found[0])


def test_a_default_app_refuses_what_only_pickle_could_store(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    assert isinstance(app.codec, durably.JsonCodec)

    @app.workflow(name="keep")
    def keep(value: Any) -> Any:
        return value

    @app.workflow(name="make")
    def make() -> Any:
        return Opaque(1j)

    with pytest.raises(durably.ValueEncodingError, match="Opaque") as caught:
        keep(Opaque(1j))
    assert isinstance(caught.value, durably.DurablyError)
    assert rows(db) == 0  # refused when called: nothing was written
    # A result that only pickle could store fails the workflow with the same clear error.
    handle = make.start()
    with pytest.raises(durably.DurablyError, match="Opaque"):
        handle.result(timeout=30)
    assert db.execute("SELECT output FROM workflows WHERE id = %s", (handle.id,)).fetchone() == (
        None,
    )


def test_an_app_that_opts_in_stores_a_pickle(make_app: Any, db: psycopg.Connection[Any]) -> None:
    app = make_app(codec=durably.PickleCodec())

    @app.workflow(name="keep")
    def keep(value: Any) -> Any:
        return value

    with app:
        assert keep.options(id="kept")(Opaque(2j)) == Opaque(2j)
    stored = db.execute("SELECT output FROM workflows WHERE id = 'kept'").fetchone()
    assert stored is not None and list(stored[0]) == ["$pickle"]


def test_a_default_app_never_unpickles_what_it_reads(
    make_app: Any, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Someone with write access to the tables plants a pickle in a workflow's input:
    the default app hands the workflow the plain object it reads, and runs no code."""
    tripwire = tmp_path / "unpickled"
    planted = {"$pickle": b64(pickle.dumps(Tripwire(tripwire)))}
    app = make_app()
    seen: list[Any] = []

    @app.workflow(name="look")
    def look(value: Any) -> str:
        seen.append(value)
        return "looked"

    later = app.queue("later")
    with app:
        handle = look.options(queue=later.name, delay=3600).start("harmless")
        assert handle.status() is durably.Status.DELAYED
        db.execute(
            "UPDATE workflows SET inputs = jsonb_set(inputs, '{args,0}', %s) WHERE id = %s",
            (psycopg.types.json.Jsonb(planted), handle.id),
        )
        assert app.set_delay(handle.id, 0)  # run it now
        assert handle.result(timeout=30) == "looked"
    assert seen == [planted]
    assert not tripwire.exists()
    # The opted-in codec would have run it (so the plant was a real pickle).
    durably.PickleCodec().load(planted)
    assert tripwire.exists()
