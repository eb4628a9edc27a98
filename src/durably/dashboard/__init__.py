"""The web dashboard (``durably dashboard``): pages over a Client, served by uvicorn.

Only the command line imports this package, so the core never loads Starlette. Its
modules each own one thing: ``settings`` (how it is served), ``security`` (token,
CSRF, headers), ``app`` (routes), one ``views_*`` module per page, ``render`` (the
templates and their formatting), ``timeline`` and ``charts`` (the drawings),
``schedules`` (the read-only schedule listing).
"""

from __future__ import annotations

from durably.errors import MissingDependency

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        f"the dashboard needs the 'dashboard' extra ({exc.name} is missing): "
        f"pip install 'durably[dashboard]'"
    ) from None
