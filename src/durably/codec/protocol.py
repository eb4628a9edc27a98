"""The interface every codec implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Codec(Protocol):
    """Turns values into JSON text for a ``jsonb`` parameter, and back."""

    name: str

    def dumps(self, value: object) -> str:
        """Return JSON text ready to be passed as a ``::jsonb`` parameter."""
        ...

    def load(self, data: object, hint: object = None) -> Any:
        """Rebuild a value from already parsed JSON ``data`` (as psycopg returns ``jsonb``)."""
        ...
