"""Telemetry for durably: OpenTelemetry spans, Prometheus metrics and log context.

``durably.App(telemetry=...)`` takes observers (``execution.observe.Observer``): e.g.
``[OpenTelemetry(), Prometheus(registry)]``, or ``True`` for every one whose package is
installed (``available()``). Without it no hook is called. The OpenTelemetry and
Prometheus observers live in ``durably.telemetry.otel`` and ``durably.telemetry.prometheus``
and import their packages (the ``otel`` and ``prometheus`` extras); importing this package
imports neither. See docs/telemetry.md.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from durably.errors import ConfigurationError
from durably.execution.observe import Observer
from durably.telemetry.logs import ContextFilter, log_context

__all__ = ["ContextFilter", "Observer", "available", "log_context", "observers_for"]


def available() -> list[Observer]:
    """An OpenTelemetry observer if ``opentelemetry`` is importable, and a Prometheus one
    (global registry) if ``prometheus_client`` is."""
    found: list[Observer] = []
    if importlib.util.find_spec("opentelemetry") is not None:
        from durably.telemetry.otel import OpenTelemetry

        found.append(OpenTelemetry())
    if importlib.util.find_spec("prometheus_client") is not None:
        from durably.telemetry.prometheus import Prometheus

        found.append(Prometheus())
    return found


def observers_for(telemetry: Any) -> list[Observer]:
    """The observers an app's ``telemetry=`` option names: None or False (none), True
    (``available()``), one observer or a sequence of them."""
    if telemetry is None or telemetry is False:
        return []
    if telemetry is True:
        return available()
    if isinstance(telemetry, Observer):
        return [telemetry]
    if isinstance(telemetry, Sequence) and all(isinstance(o, Observer) for o in telemetry):
        return list(telemetry)
    raise ConfigurationError(
        f"telemetry must be True, an observer (durably.telemetry.otel.OpenTelemetry(), "
        f"durably.telemetry.prometheus.Prometheus(), ...) or a list of them; got "
        f"{type(telemetry).__name__}"
    )
