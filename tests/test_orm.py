"""``durably.orm.session``: a SQLAlchemy ORM Session inside a transaction step commits
with the step's checkpoint, exactly once; its own commit and rollback are a savepoint's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import psycopg.sql
import pytest
from sqlalchemy import Integer, MetaData, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import durably
from durably import orm

pytestmark = pytest.mark.timeout(60)


def models(schema: str) -> Any:
    class Base(DeclarativeBase):
        metadata = MetaData(schema=schema)

    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        name: Mapped[str] = mapped_column(String)

    return Customer


@pytest.fixture
def customers(db: psycopg.Connection[Any], schema: str) -> Callable[[], list[str]]:
    db.execute(
        psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(schema))
    )
    db.execute(
        psycopg.sql.SQL("CREATE TABLE {}.customers (id serial PRIMARY KEY, name text)").format(
            psycopg.sql.Identifier(schema)
        )
    )
    query = psycopg.sql.SQL("SELECT name FROM {}.customers ORDER BY id").format(
        psycopg.sql.Identifier(schema)
    )
    return lambda: [row[0] for row in db.execute(query).fetchall()]


def test_an_orm_session_commits_with_the_step_exactly_once(
    make_app: Callable[..., durably.App], schema: str, customers: Callable[[], list[str]]
) -> None:
    Customer = models(schema)
    app = make_app()
    bodies: list[str] = []

    @app.transaction()
    def add(conn: psycopg.Connection[Any], name: str, undo: str | None) -> list[str]:
        bodies.append(name)
        with orm.session(conn) as session:
            session.add(Customer(name=name))
            session.commit()  # a savepoint released: it commits with the step
            if undo is not None:
                session.add(Customer(name=undo))
                session.flush()
                session.rollback()  # back to the savepoint: this one never commits
            return list(session.scalars(select(Customer.name).order_by(Customer.id)))

    @app.workflow()
    def wf(name: str, undo: str | None = None) -> list[str]:
        return add(name, undo)

    with app:
        assert wf.options(id="c-1")("ann") == ["ann"]
        assert wf.options(id="c-1")("ann") == ["ann"]  # replayed: not run again
        assert wf.options(id="c-2")("bob", undo="dropped") == ["ann", "bob"]
    assert bodies == ["ann", "bob"]
    assert customers() == ["ann", "bob"]


def test_an_error_after_an_orm_commit_rolls_everything_back(
    make_app: Callable[..., durably.App], schema: str, customers: Callable[[], list[str]]
) -> None:
    # The ORM's commit is not the database's: the step's transaction decides.
    Customer = models(schema)
    app = make_app()

    @app.transaction()
    def add_then_fail(conn: psycopg.Connection[Any], name: str) -> None:
        with orm.session(conn) as session:
            session.add(Customer(name=name))
            session.commit()
        raise RuntimeError("after the ORM committed")

    @app.workflow()
    def wf(name: str) -> None:
        add_then_fail(name)

    with app, pytest.raises(RuntimeError, match="after the ORM committed"):
        wf.options(id="e-1")("never")
    assert customers() == []


def test_a_session_needs_the_steps_connection() -> None:
    with pytest.raises(durably.ConfigurationError, match=r"psycopg\.Connection a transaction"):
        orm.session("not a connection")
