"""The chaos suite's pytest wrappers: a ``chaos`` marker (deselect with ``-m "not chaos"``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: long runs of the chaos suite (python -m chaos) with real faults"
    )
