"""Shared fixtures: one real PostgreSQL for the session, a fresh schema per test.

The server is the embedded PostgreSQL 18 (``durably.embedded``) in a directory shared
by every pytest-xdist worker, or the server named by ``DURABLY_TEST_DATABASE_URL``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durably
from durably import embedded
from support import Cli

TEST_DATA_DIR = Path(tempfile.gettempdir()) / f"durably-tests-{os.getuid()}"

# Each pytest session keeps its temporary directories under a root of its own. Tests run
# embedded servers as another user (``durably`` when run as root), which needs search
# permission on those directories; a second pytest session on the same machine would
# reset the shared ``/tmp/pytest-of-<user>`` to 0700 and cut a running server off.
# (xdist workers inherit the variable, so a session's workers share its root.)
_OWN_TEMPROOT: str | None = None
if "PYTEST_DEBUG_TEMPROOT" not in os.environ:
    _OWN_TEMPROOT = tempfile.mkdtemp(prefix="durably-pytest-")
    os.environ["PYTEST_DEBUG_TEMPROOT"] = _OWN_TEMPROOT


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session's temporary root goes when every test passed (kept as evidence
    otherwise); only the process that made it removes it."""
    if _OWN_TEMPROOT is not None and exitstatus == 0:
        shutil.rmtree(_OWN_TEMPROOT, ignore_errors=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--server-tests-only",
        action="store_true",
        help="run only the tests that use the shared test server (the pg_url fixture), less "
        "those marked embedded_server: a second run of the suite against another "
        "PostgreSQL named by DURABLY_TEST_DATABASE_URL (.ci/run does one on PostgreSQL 15). "
        "The others are deselected, and counted as such, not skipped.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "embedded_server: needs durably's embedded PostgreSQL 18 itself (its settings, its "
        "files), not just a server; left out of --server-tests-only runs",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--server-tests-only"):
        return
    if not os.environ.get("DURABLY_TEST_DATABASE_URL"):
        raise pytest.UsageError(
            "--server-tests-only runs the server tests against the server of "
            "DURABLY_TEST_DATABASE_URL; set it (or use .ci/postgres.py, which does)"
        )
    keep: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        serves = "pg_url" in getattr(item, "fixturenames", ())
        (keep if serves and not item.get_closest_marker("embedded_server") else left).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = keep


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = os.environ.get("DURABLY_TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = embedded.acquire(TEST_DATA_DIR)
    try:
        yield server.url
    finally:
        server.release()


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    drop = psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(name))
    # A step left running by a test's shutdown(grace=0) may still checkpoint into the
    # schema while it is dropped; the two can deadlock, and the drop then simply goes again.
    deadline = time.monotonic() + 30
    with psycopg.connect(pg_url, autocommit=True) as conn:
        while True:
            try:
                conn.execute(drop)
                return
            except psycopg.errors.DeadlockDetected:
                if time.monotonic() > deadline:
                    raise


@pytest.fixture
def make_app(pg_url: str, schema: str) -> Iterator[Callable[..., durably.App]]:
    """Build apps on the test's schema; every one is shut down after the test."""
    apps: list[durably.App] = []

    def make(**kwargs: Any) -> durably.App:
        kwargs.setdefault("schema", schema)
        app = durably.App(pg_url, **kwargs)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.shutdown(grace=5)


@pytest.fixture
def app(make_app: Callable[..., durably.App]) -> durably.App:
    made = make_app()
    made.launch()  # creates the schema, so tests may look at the tables at once
    return made


@pytest.fixture
def db(pg_url: str, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain connection for looking at the tables the way an operator would."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("SET search_path = {}").format(psycopg.sql.Identifier(schema)))
        yield conn


def _closed_at_end(made: Any) -> Iterator[Any]:
    """Yield a pool of subprocesses to a test; close it (and its processes) afterwards."""
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def workers(pg_url: str, schema: str, tmp_path: Path) -> Iterator[Any]:
    """Worker subprocesses that run workflows on command (tests/procs), closed at the end."""
    from procs.harness import Workers

    yield from _closed_at_end(Workers(pg_url, schema, tmp_path))


@pytest.fixture
def fleet(pg_url: str, schema: str, tmp_path: Path) -> Iterator[Any]:
    """Queue worker subprocesses (tests/queueprocs), closed at the test's end."""
    from queueprocs.util import Fleet

    yield from _closed_at_end(Fleet(pg_url, schema, tmp_path))


@pytest.fixture
def procs(pg_url: str, schema: str, tmp_path: Path) -> Iterator[Any]:
    """Worker subprocesses of a test (tests/waitprocs), closed at its end."""
    from waitprocs.util import Procs

    yield from _closed_at_end(Procs(pg_url, schema, tmp_path))


@pytest.fixture
def cli(pg_url: str, schema: str) -> Cli:
    """The ``durably`` command as a real process on this test's schema."""
    return Cli(pg_url, schema)


@pytest.fixture
def example(pg_url: str, schema: str, tmp_path: Path) -> Iterator[Any]:
    """``example("slug")``: a program of examples/ run as real processes on this test's
    schema (tests/examples_harness.py), its processes killed at the test's end."""
    from examples_harness import Example

    made: list[Example] = []

    def make(slug: str, **extra_env: str) -> Example:
        workdir = tmp_path / slug
        workdir.mkdir(exist_ok=True)
        made.append(Example(slug, pg_url, schema, workdir, dict(extra_env)))
        return made[-1]

    try:
        yield make
    finally:
        for one in made:
            one.close()


@pytest.fixture
def own_schema(pg_url: str, schema: str) -> Iterator[str]:
    """A schema for an example's own tables (a shop's, a bank's), dropped after the test."""
    name = f"{schema}_own"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(name))
        )
