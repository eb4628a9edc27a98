"""How the dashboard is served: address, token, read-only; and which hosts may call it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from durably.errors import ConfigurationError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8321


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True, slots=True)
class Settings:
    """What the server was asked for. ``token`` None: no login (loopback only)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    read_only: bool = False
    # Host headers accepted on a loopback bind (a defence against DNS rebinding: a page
    # of another site that resolves its own name to 127.0.0.1 sends its own Host).
    loopback_hosts: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 8:
            raise ConfigurationError(
                "the dashboard token must be at least 8 characters long; choose a longer one"
            )
        if not is_loopback(self.host) and not self.token:
            raise ConfigurationError(
                f"refusing to serve the dashboard on {self.host}, which other machines can "
                f"reach, without a token: pass --token (or set DURABLY_DASHBOARD_TOKEN), or "
                f"bind to 127.0.0.1"
            )
        names = ("127.0.0.1", "localhost", "[::1]", self.host)
        object.__setattr__(
            self, "loopback_hosts", frozenset(f"{name}:{self.port}" for name in names)
        )

    @property
    def checks_host(self) -> bool:
        """On a loopback bind, only loopback Host headers are served."""
        return is_loopback(self.host)
