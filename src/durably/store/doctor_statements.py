"""What ``durably doctor`` reads of a server and a schema (doctor.sql): facts, no verdicts."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from durably.store import sqlfile
from durably.store.borrowed import run_sync
from durably.store.rows import (
    Connections,
    ExecutorClock,
    IndexName,
    LongTransaction,
    SchemaPresence,
    Setting,
    TableHealth,
)
from durably.store.statements import Statement, bound
from durably.store.upgrade import connect

# Migration 0011 added the worker's clock to the heartbeat.
CLOCK_MIGRATION = 11

_CREATE_INDEX = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s+"
    r"ON\s+(?:ONLY\s+)?\{schema\}\.(\w+)",
    re.IGNORECASE,
)
_DROP_INDEX = re.compile(
    r"DROP\s+INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?\{schema\}\.(\w+)", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """Everything the checks look at, read in one visit."""

    settings: dict[str, Setting]
    schema: SchemaPresence
    # Versions recorded as applied (None: no record yet), and those this code knows.
    applied: set[int] | None
    known: dict[int, str]
    # (table, index) pairs the migrations create, and those the server has.
    expected_indexes: dict[tuple[str, str], str]
    indexes: set[tuple[str, str]]
    tables: list[TableHealth]
    sessions: list[LongTransaction]
    connections: list[Connections]  # one sample per look, a little apart
    executors: list[ExecutorClock] | None  # None: the schema cannot say (too old)


class DoctorStatements:
    """The doctor's statements for one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._sql = {
            name: sqlfile.statement(name, schema)
            for name in (
                "doctor_settings", "doctor_schema", "doctor_tables", "doctor_indexes",
                "doctor_sessions", "doctor_connections", "doctor_executors",
                "applied_migrations",
            )
        }  # fmt: skip

    def settings(self, names: Sequence[str]) -> Statement:
        return bound(self._sql["doctor_settings"], {"names": list(names)})

    def presence(self) -> Statement:
        return bound(self._sql["doctor_schema"], {"schema": self.schema})

    def tables(self) -> Statement:
        return bound(self._sql["doctor_tables"], {"schema": self.schema})

    def indexes(self) -> Statement:
        return bound(self._sql["doctor_indexes"], {"schema": self.schema})

    def sessions(self, seconds: float) -> Statement:
        return bound(self._sql["doctor_sessions"], {"seconds": seconds})

    def connections(self) -> Statement:
        return bound(self._sql["doctor_connections"], {})

    def executors(self) -> Statement:
        return bound(self._sql["doctor_executors"], {})

    def applied(self) -> Statement:
        return bound(self._sql["applied_migrations"], {})


def expected_indexes() -> dict[tuple[str, str], str]:
    """The (table, index) pairs the migrations leave, each with its migration's name."""
    expected: dict[tuple[str, str], str] = {}
    for _version, name, template in sqlfile.migrations():
        for dropped in _DROP_INDEX.findall(template):
            expected = {key: at for key, at in expected.items() if key[1] != dropped}
        for index, table in _CREATE_INDEX.findall(template):
            expected[(table, index)] = name
    return expected


def read_server(
    url: str, schema: str, settings: Sequence[str], session_seconds: float, samples: int = 3
) -> ServerFacts:
    """Read what the checks need; a schema that does not exist yet reads as empty."""
    statements = DoctorStatements(schema)
    with connect(url) as conn:
        found: list[Setting] = run_sync(conn, [statements.settings(settings)])
        presence: SchemaPresence = run_sync(conn, [statements.presence()])[0]
        applied: set[int] | None = None
        if presence.migrated:
            applied = {row.version for row in run_sync(conn, [statements.applied()])}
        tables: list[TableHealth] = []
        indexes: set[tuple[str, str]] = set()
        if presence.schema_exists:
            tables = run_sync(conn, [statements.tables()])
            rows: list[IndexName] = run_sync(conn, [statements.indexes()])
            indexes = {(row.table_name, row.index_name) for row in rows}
        executors: list[ExecutorClock] | None = None
        if applied is not None and CLOCK_MIGRATION in applied:
            executors = run_sync(conn, [statements.executors()])
        sessions: list[LongTransaction] = run_sync(conn, [statements.sessions(session_seconds)])
        connections: list[Connections] = []
        for sample in range(samples):
            if sample:
                time.sleep(0.1)  # waits for I/O workers come and go: look a few times
            connections.append(run_sync(conn, [statements.connections()])[0])
    return ServerFacts(
        settings={row.name: row for row in found},
        schema=presence,
        applied=applied,
        known={version: name for version, name, _ in sqlfile.migrations()},
        expected_indexes=expected_indexes(),
        indexes=indexes,
        tables=tables,
        sessions=sessions,
        connections=connections,
        executors=executors,
    )
