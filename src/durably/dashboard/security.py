"""Who may use the dashboard and how: token login, sessions, CSRF, Host and Origin checks,
and the security headers of every response."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import FormData
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from durably.dashboard.settings import Settings

TOKEN_COOKIE = "durably_token"  # noqa: S105  # the cookie's name, not a secret
SESSION_COOKIE = "durably_session"
CSRF_FIELD = "csrf"

HEADERS = {
    # Only the package's own script and style; no inline code, no frames, no leaks.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class Guard(BaseHTTPMiddleware):
    """Every request: a Host this server answers to, the token when one is set, a session
    (for CSRF tokens), and the security headers on the way out."""

    def __init__(self, app: object, settings: Settings, secret: bytes) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.settings = settings
        self.secret = secret

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await self._checked(request, call_next)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _checked(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        settings = self.settings
        host = request.headers.get("host", "")
        if settings.checks_host and host not in settings.loopback_hosts:
            return PlainTextResponse(f"unexpected Host header {host!r}", status_code=421)
        token = settings.token
        if token is not None:
            given = request.query_params.get("token")
            if given is not None:
                return self._login(request, given, token)
            if not _holds_token(request, token):
                return PlainTextResponse(
                    "this dashboard needs its token: open it once with ?token=<the token>, "
                    "or send Authorization: Bearer <the token>",
                    status_code=401,
                )
        session = request.cookies.get(SESSION_COOKIE)
        fresh = not session or len(session) > 100
        if fresh:
            session = secrets.token_urlsafe(32)
        request.state.session = session
        request.state.csrf = csrf_token(self.secret, session or "")
        response = await call_next(request)
        if fresh and session:
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/")
        return response

    def _login(self, request: Request, given: str, token: str) -> Response:
        if not hmac.compare_digest(given.encode(), token.encode()):
            return PlainTextResponse("wrong dashboard token", status_code=401)
        # The token leaves the address bar (and history) at once; the cookie carries it.
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response


def _holds_token(request: Request, token: str) -> bool:
    expected = token.encode()
    cookie = request.cookies.get(TOKEN_COOKIE)
    if cookie is not None and hmac.compare_digest(cookie.encode(), expected):
        return True
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected)


def csrf_token(secret: bytes, session: str) -> str:
    """The CSRF token of a session: only this server (holding ``secret``) can make it."""
    return hmac.new(secret, session.encode(), hashlib.sha256).hexdigest()


# The dashboard's forms are a few short fields; anything larger is not one of them.
MAX_FORM = 16_384


async def read_form(request: Request) -> FormData:
    """A URL-encoded form body (what the pages' forms send; no multipart parser needed)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Refused(415, "send the form URL-encoded, as the dashboard's pages do")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise Refused(413, "form too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the form is not UTF-8") from None
    return FormData([(k, v) for k, v in parse_qsl(text, keep_blank_values=True)])


class Refused(Exception):
    """A state-changing request that must not run: its status code and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def checked_form(request: Request, settings: Settings) -> FormData:
    """The form of a POST that may change state, or Refused: not when read-only; from a
    page of this server (Origin, else Referer, names this Host); with this session's
    CSRF token."""
    if settings.read_only:
        raise Refused(403, "this dashboard is read-only")
    host = request.headers.get("host", "")
    # Under the pages' own no-referrer policy a browser sends "Origin: null" with their
    # forms (and no Referer): that says nothing, and the CSRF token below decides. An
    # origin that names another site is refused.
    source = request.headers.get("origin") or request.headers.get("referer")
    if source not in (None, "null") and urlsplit(source).netloc != host:
        raise Refused(403, "cross-site request refused (its Origin is not this dashboard)")
    form = await read_form(request)
    given = form.get(CSRF_FIELD)
    expected: str = request.state.csrf
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Refused(403, "missing or wrong CSRF token: reload the page and try again")
    return form
