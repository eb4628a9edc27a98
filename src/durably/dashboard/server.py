"""Running the dashboard: uvicorn on the chosen address, without access logs (an address
may carry the login token)."""

from __future__ import annotations

import uvicorn

from durably.client import Client
from durably.dashboard.app import build
from durably.dashboard.settings import Settings


def serve(client: Client, settings: Settings, announce: str) -> None:
    """Serve until interrupted; ``announce`` is printed once the socket listens."""
    client.engine  # noqa: B018  # connect (and migrate) before the first request
    config = uvicorn.Config(
        build(client, settings),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)

    original = server.startup

    async def startup(sockets: object = None) -> None:
        await original(sockets)  # type: ignore[arg-type]
        if server.started:
            print(announce, flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()
