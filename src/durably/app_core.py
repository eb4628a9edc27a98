"""``AppCore``: what workflows, steps, queues and the shared methods use of their app.

``App`` imports the modules that define those objects; if they imported ``App`` back,
the API would be an import circle. They name this protocol instead, which ``App`` (and,
for the methods that work by ID, ``Client``) provides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from durably.execution.specs import WorkflowSpec
    from durably.runtime.engine import Engine


class AppCore(Protocol):
    """The engine and the registered workflows of an App or a Client."""

    # The engine once connected, else None (a step outside its app's engine is a plain call).
    _engine: Engine | None
    # Workflows by registered name: listings and handles decode results with their hints.
    _registry: dict[str, WorkflowSpec]

    @property
    def engine(self) -> Engine:
        """The live engine, connecting on first use."""
        ...
