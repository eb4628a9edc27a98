"""``$DURABLY_SCHEMA`` points the App, the Client and the CLI at one schema; an explicit
``schema=`` (or ``--schema``) still wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import durably
from support import ROOT


def test_app_client_and_cli_read_the_schema_from_the_environment(
    pg_url: str, schema: str, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLY_SCHEMA", schema)
    app = durably.App(pg_url)

    @app.workflow
    def hello(who: str) -> str:
        return f"hello {who}"

    assert app.schema == schema
    with app:
        assert hello.options(id="from-env").start("env").result(timeout=30) == "hello env"
    assert db.execute("SELECT count(*) FROM workflows WHERE id = 'from-env'").fetchone() == (1,)

    with durably.Client(pg_url) as client:
        assert client.schema == schema
        assert client.handle("from-env").result(timeout=5) == "hello env"

    env = dict(os.environ, DURABLY_SCHEMA=schema, PYTHONPATH=str(ROOT / "src"))
    env.pop("DURABLY_DATABASE_URL", None)
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "durably.cli",
            "workflows",
            "list",
            "--database-url",
            pg_url,
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [row["id"] for row in json.loads(listed.stdout)] == ["from-env"]


def test_an_explicit_schema_wins_over_the_environment(
    pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLY_SCHEMA", "somewhere_else")
    assert durably.App(pg_url, schema=schema).schema == schema
    assert durably.Client(pg_url, schema=schema).schema == schema


def test_a_bad_schema_in_the_environment_is_refused_clearly(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLY_SCHEMA", "has%percent")
    with pytest.raises(durably.ConfigurationError, match="'%'"):
        durably.App(pg_url)
