"""One check for every name and key durably stores: workflow IDs, queues, topics, keys.

Names are stored as PostgreSQL ``text`` and indexed, so each must be text PostgreSQL can
hold (no NUL character, no lone surrogate: valid UTF-8) and short enough for its index
rows. Every name is bound as a query parameter (never spliced into SQL), so quotes,
semicolons and backslashes are stored as they are; the schema, the one name placed in
SQL text, is always quoted as an identifier.
"""

from __future__ import annotations

import os

from durably.errors import DurablyError, InvalidArgument

#: Longest name or key, in characters.
MAX_NAME_CHARS = 512
#: Longest name or key, in bytes of UTF-8 (a PostgreSQL index row holds about 2,700).
MAX_NAME_BYTES = 1024
#: Longest schema name, in bytes of UTF-8 (PostgreSQL's NAMEDATALEN - 1).
MAX_SCHEMA_BYTES = 63

_SHOWN = 40  # characters of a refused name quoted in its error


def shown(value: str) -> str:
    """``value`` quoted for an error message, cut short when it is long."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}... ({len(value)} characters)"


def check_name(
    value: object,
    what: str,
    *,
    allow_empty: bool = False,
    max_chars: int = MAX_NAME_CHARS,
    error: type[DurablyError] = InvalidArgument,
) -> str:
    """``value`` if it can be stored as the name ``what``; ``error`` saying why not."""
    if not isinstance(value, str):
        raise error(f"{what} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise error(f"{what} must not be empty: give it at least one character")
    if len(value) > max_chars:
        raise error(
            f"{what} {shown(value)} is too long: at most {max_chars} characters are "
            f"stored; shorten it (a hash of a long key, say)"
        )
    if "\x00" in value:
        raise error(
            f"{what} {shown(value)} contains a NUL character ('\\x00'), which PostgreSQL "
            f"text cannot hold; remove it"
        )
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise error(
            f"{what} {shown(value)} contains a lone surrogate, which is not valid UTF-8; "
            f"pass well-formed text"
        ) from None
    if size > MAX_NAME_BYTES:
        raise error(
            f"{what} {shown(value)} is too long: {size} bytes of UTF-8, at most "
            f"{MAX_NAME_BYTES} are stored; shorten it (a hash of a long key, say)"
        )
    return value


DEFAULT_SCHEMA = "durably"


def schema_or_default(schema: str | None) -> str:
    """The schema given, else ``$DURABLY_SCHEMA``, else ``durably``: one environment
    variable points the App, the Client and the CLI of a deployment at one schema."""
    if schema is not None:
        return schema
    return os.environ.get("DURABLY_SCHEMA") or DEFAULT_SCHEMA


def check_schema(schema: object, error: type[DurablyError]) -> str:
    """A schema name: 1 to 63 bytes of UTF-8, no NUL (quoted wherever SQL names it)."""
    name = check_name(schema, "schema", error=error)
    if len(name.encode("utf-8")) > MAX_SCHEMA_BYTES:
        raise error(
            f"schema {shown(name)} is too long: PostgreSQL names hold at most "
            f"{MAX_SCHEMA_BYTES} bytes of UTF-8; choose a shorter schema name"
        )
    return name
