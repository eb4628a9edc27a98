"""A handle of an App or Client that was shut down says so, at once: no false outage."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import durably


def test_a_handle_of_a_closed_client_raises_a_clear_error_at_once(
    make_app: Callable[..., durably.App],
    pg_url: str,
    schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()

    @app.workflow
    def hello() -> str:
        return "hello"

    with app:
        hello.options(id="done").start().result(timeout=30)
    client = durably.Client(pg_url, schema=schema)
    handle = client.handle("done")
    assert handle.result(timeout=5) == "hello"
    client.close()
    with caplog.at_level(logging.WARNING, logger="durably"):
        with pytest.raises(durably.ConfigurationError, match="was shut down"):
            handle.result(timeout=5)
        with pytest.raises(durably.ConfigurationError, match="was shut down"):
            handle.status()
    assert "unreachable" not in caplog.text
