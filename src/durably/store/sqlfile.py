"""Loads the named statements of ``queries.sql`` and renders them for one schema."""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import TYPE_CHECKING

from psycopg import sql

from durably.errors import ConfigurationError
from durably.names import check_schema as check_name_of_schema
from durably.store.notifications import Kind, channel_for

if TYPE_CHECKING:
    from durably.store.dialect import Dialect

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def _blocks() -> dict[str, str]:
    """Every named statement of every .sql file beside this module (one file a topic)."""
    blocks: dict[str, str] = {}
    for entry in sorted(resources.files("durably.store").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        parts = _NAME.split(entry.read_text("utf-8"))
        # parts = [preamble, name1, body1, name2, body2, ...]
        for i in range(1, len(parts), 2):
            if parts[i] in blocks:
                raise RuntimeError(f"statement {parts[i]!r} is defined twice ({entry.name})")
            blocks[parts[i]] = compact(parts[i + 1])
    return blocks


def compact(text: str) -> str:
    """``text`` without its comments and with each run of whitespace made one space,
    outside quotes. psycopg parses a statement's placeholders on every execution unless
    its text is at most 4 KiB (then the parse is cached): the longest claims are over
    that only because of their comments and indentation. The server, the wire and
    ``pg_stat_statements`` get less text too."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            end = text.find(ch, i + 1)
            while end != -1 and text.startswith(ch, end + 1):  # '' or "" inside quotes
                end = text.find(ch, end + 2)
            if end == -1:
                raise RuntimeError(f"unterminated quote in SQL: {text[i : i + 40]!r}")
            out.append(text[i : end + 1])
            i = end + 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end
            out.append(" ")
        elif ch.isspace():
            out.append(" ")
            while i < n and text[i].isspace():
                i += 1
        else:
            out.append(ch)
            i += 1
    return re.sub(r" {2,}", " ", "".join(out)).strip()


def names() -> list[str]:
    """The name of every statement of the .sql files (not of the fragments they share)."""
    return [name for name in _blocks() if not name.startswith("fragment_")]


# A dollar-quote delimiter ($$, $body$): function bodies of the migrations are quoted so.
_DOLLAR_TAG = re.compile(r"\$\w*\$")


def check_schema(schema: object) -> str:
    """``schema`` if it is a name PostgreSQL can hold and the statements can name it,
    quoted, anywhere they place it; else ConfigurationError (before anything is sent to
    the server: App and Client check it when they are made)."""
    schema = check_name_of_schema(schema, ConfigurationError)
    if "%" in schema:
        # Statements run with parameters, and psycopg reads any % of their text, even in
        # a quoted name, as the start of a placeholder.
        raise ConfigurationError(
            f"schema {schema!r} contains '%', which durably's statements cannot carry in a "
            f"name (it would be read as a query parameter); choose a name without '%'"
        )
    tag = _DOLLAR_TAG.search(schema)
    if tag is not None:
        # A quoted name inside a dollar-quoted function body would end the body there.
        raise ConfigurationError(
            f"schema {schema!r} contains {tag.group()!r}, which would end the dollar-quoted "
            f"function bodies of durably's migrations; choose a name without {tag.group()!r}"
        )
    return schema


def render(template: str, schema: str, **fragments: str) -> str:
    """Substitute the quoted schema (and fixed SQL keywords) into a statement template."""
    check_schema(schema)
    values: dict[str, sql.Composable] = {"schema": sql.Identifier(schema)}
    # Notification kinds are defined once (store.notifications.Kind): ``{kind_queued}``.
    values.update({f"kind_{kind.name.lower()}": sql.SQL(kind.literal()) for kind in Kind})
    # The schema's notification channel, as a literal (for the functions of migrations).
    values["channel"] = sql.Literal(channel_for(schema))
    values.update({k: sql.SQL(v) for k, v in fragments.items()})
    return sql.SQL(template).format(**values).as_string(None)


class Query(str):
    """Rendered SQL that remembers the name of its block (for fault injection and logs)."""

    name: str


@functools.cache
def _fragments(schema: str) -> dict[str, str]:
    """Blocks named ``fragment_*``: shared pieces placed into statements as
    ``{fragment_*}``, so a piece of SQL several statements need is written once. A
    fragment may hold other fragments (``{fragment_next_epoch}`` holds the timeline's
    floor); each is rendered once those it holds are."""
    blocks = {name: text for name, text in _blocks().items() if name.startswith("fragment_")}
    done: dict[str, str] = {}
    while len(done) < len(blocks):
        ready = {
            name: text
            for name, text in blocks.items()
            if name not in done
            and all("{" + other + "}" not in text or other in done for other in blocks)
        }
        if not ready:
            raise RuntimeError(f"fragments hold each other: {sorted(set(blocks) - set(done))}")
        for name, text in ready.items():
            done[name] = render(
                text, schema, **{k: v for k, v in done.items() if "{" + k + "}" in text}
            )
    return done


def fragment(name: str, schema: str) -> str:
    """The fragment block called ``name``, rendered for ``schema``: for a statement that
    chooses among fragments (passed to ``statement`` by the name it uses)."""
    return _fragments(schema)[name]


def statement(name: str, schema: str, dialect: Dialect | None = None, **fragments: str) -> Query:
    """The statement called ``name`` in the .sql files (or the dialect's own version of
    it), rendered for ``schema``."""
    override = dialect.overrides.get(name) if dialect is not None else None
    template = compact(override) if override else _blocks()[name]
    shared = {k: v for k, v in _fragments(schema).items() if "{" + k + "}" in template}
    query = Query(render(template, schema, **shared, **fragments))
    query.name = name
    return query


@functools.cache
def schemaless(name: str) -> Query:
    """A statement that names no schema (BEGIN, COMMIT, savepoints), rendered once."""
    return statement(name, "durably")


def migrations() -> list[tuple[int, str, str]]:
    """Every migration as (version, file name, SQL template), in order."""
    root = resources.files("durably.store").joinpath("migrations")
    found = []
    for entry in root.iterdir():
        match = re.match(r"^(\d+)_.*\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text("utf-8")))
    return sorted(found)
