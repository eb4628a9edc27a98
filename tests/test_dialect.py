"""The dialect seam: PostgreSQL is chosen from the URL, anything else is refused clearly."""

from __future__ import annotations

import pytest

from durably.errors import ConfigurationError
from durably.store.dialect import PostgreSQL, dialect_for


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pw@localhost:5432/db",
        "postgres://localhost/db",
        "postgresql:///db?host=/tmp",
        "host=localhost dbname=db user=me",
    ],
)
def test_postgresql_urls_get_the_postgresql_dialect(url: str) -> None:
    assert isinstance(dialect_for(url), PostgreSQL)


def test_another_database_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        dialect_for("mysql://user:s3cret-pw@db.example.com/orders")
    message = str(caught.value)
    assert "mysql://" in message and "postgresql://" in message
    assert "s3cret-pw" not in message


def test_retryable_and_lost_errors_are_told_apart() -> None:
    import psycopg

    dialect = PostgreSQL()
    assert dialect.connection_lost(psycopg.OperationalError("server closed the connection"))
    assert not dialect.connection_lost(ValueError("no"))
    assert not dialect.retryable(psycopg.OperationalError("x"))
    assert dialect.retryable(psycopg.errors.SerializationFailure("could not serialize"))
    assert dialect.retryable(psycopg.errors.DeadlockDetected("deadlock"))


def test_an_app_on_another_database_says_so_before_connecting() -> None:
    """The issue's case: a MySQL URL gets durably's own error naming the problem, and
    never the password (psycopg's own error would print the URL)."""
    import durably

    app = durably.App("mysql://user:s3cret-pw@db.example.com/orders")

    @app.workflow
    def nothing() -> None:
        return None

    with pytest.raises(ConfigurationError) as caught:
        nothing()
    assert "s3cret-pw" not in str(caught.value)
    assert "mysql://" in str(caught.value)
    app.shutdown(grace=0)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:s3cret-pw@[::1/db",
        "postgresql://u:s3cret-pw@local host/db",
        "postgresql://u:s3cret-pw@localhost/db?foo=bar",
        "host=localhost password=s3cret-pw port",
        "",
    ],
)
def test_a_malformed_url_is_a_configuration_error_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        dialect_for(url)
    assert "s3cret-pw" not in str(caught.value)
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_an_unreachable_server_is_a_durably_error_without_the_password() -> None:
    """A well-formed URL whose server does not answer: DatabaseUnavailable, and neither
    its message nor the chained driver error shows the password."""
    import durably

    app = durably.App("postgresql://u:s3cret-pw@127.0.0.1:1/db?connect_timeout=2")
    with pytest.raises(durably.DatabaseUnavailable) as caught:
        app.launch()
    shown = str(caught.value) + str(caught.value.__cause__ or "")
    assert "s3cret-pw" not in shown
    app.shutdown(grace=0)
