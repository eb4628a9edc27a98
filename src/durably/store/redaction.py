"""Database passwords kept out of what durably shows: URLs and messages made fit to print.

Every place where a database URL, or a driver error that might quote one, reaches an
exception, a ``repr``, a log line or the CLI's output goes through :func:`redact` (a URL
to show) or :func:`scrub` (a text to show, with the URL's secrets masked). Both accept
libpq URLs (``postgresql://user:secret@host/db?sslpassword=...``) and key=value strings
(``host=... password='secret'``), well-formed or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode

import psycopg

MASK = "***"
# The libpq parameters that hold secrets: the password and the client key's passphrase.
SECRET_KEYS = ("password", "sslpassword")

# A password in the user part of a URL: scheme://user:SECRET@host...
_USERINFO_SECRET = re.compile(r"://[^/?#@:]*:([^@]*)@")
# A secret parameter, key=value (a query parameter or a conninfo keyword, quoted or not).
_KEYWORD_SECRET = re.compile(
    r"\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&#]*)", re.IGNORECASE
)


def redact(url: str) -> str:
    """``url`` fit to show, in the form it was given: a URL without the password of its
    user part or its secret query parameters, a key=value string without its secret
    keywords. A URL too broken to take apart is shown with every secret masked."""
    if "://" in url:
        shown = _redact_uri(url)
    else:
        try:
            info = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            shown = _KEYWORD_SECRET.sub(lambda m: m.group(1) + MASK, url)
        else:
            kept = {k: str(v) for k, v in info.items() if v is not None and k not in SECRET_KEYS}
            shown = psycopg.conninfo.make_conninfo(**kept)
    return scrub(shown, url)  # whatever the parsing above missed


def _redact_uri(url: str) -> str:
    scheme, _, rest = url.partition("://")
    end = len(rest)
    for mark in "/?#":
        # The authority ends at the first of /?# after the user part's last @ (a password
        # may hold any of them, percent-encoded or not).
        found = rest.find(mark, rest.rfind("@") + 1)
        if found != -1:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if at:
        authority = f"{userinfo.partition(':')[0]}@{hosts}"
    path, mark, query = tail.partition("?")
    if mark:
        fragment = ""
        if "#" in query:
            query, _, fragment = query.partition("#")
            fragment = f"#{fragment}"
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = urlencode([(k, v) for k, v in pairs if k.lower() not in SECRET_KEYS], safe="/")
        tail = f"{path}?{kept}{fragment}" if kept else f"{path}{fragment}"
    return f"{scheme}://{authority}{tail}"


def secrets(url: str) -> set[str]:
    """The secrets ``url`` holds, as written and decoded (empty ones left out)."""
    found: set[str] = set()
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        pass
    else:
        found.update(str(info[key]) for key in SECRET_KEYS if info.get(key) is not None)
    found.update(m.group(1) for m in _USERINFO_SECRET.finditer(url))
    for m in _KEYWORD_SECRET.finditer(url):
        value = m.group(2)
        found.add(value)
        if value.startswith("'"):
            found.add(value.strip("'").replace("\\'", "'").replace("\\\\", "\\"))
    variants = {v for s in found for v in (s, unquote(s), quote(s, safe=""))}
    return {v for v in variants if v}


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` masked (a driver's message may quote it)."""
    return hide(text, secrets(url))


def hide(text: str, hidden: Iterable[str | None]) -> str:
    """``text`` with each of ``hidden`` masked, the longest first (so that a secret
    containing another is masked whole)."""
    for secret in sorted({s for s in hidden if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def database_shown(url: str | None) -> str:
    """Which database an App, a Client or a command uses, fit to print (no URL: the
    embedded PostgreSQL)."""
    return redact(url) if url else "the embedded PostgreSQL"
