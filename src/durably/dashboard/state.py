"""What every view reads from the running app: its Client, pages and settings."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from durably.client import Client
from durably.dashboard.render import Pages
from durably.dashboard.settings import Settings


@dataclass(frozen=True, slots=True)
class Shared:
    """The dashboard's one Client (its pool serves every request), templates, settings."""

    client: Client
    pages: Pages
    settings: Settings


def shared(request: Request) -> Shared:
    """The shared state of the app serving ``request``."""
    found: Shared = request.app.state.shared
    return found
