"""``durably doctor``: whether a PostgreSQL server has what durably needs, and what makes
it fast; each finding a level, a one-line reason and the setting to change.

The facts are read by the store (``store.doctor_statements``, doctor.sql); the verdicts
are made here, from those facts alone (``findings``), so that each rule reads as one
small function. The thresholds and the reasons are explained in docs/doctor.md; the
figures quoted come from the project's PostgreSQL 18 measurements on a 2-vCPU VM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from durably.errors import InvalidArgument
from durably.store.doctor_statements import CLOCK_MIGRATION, ServerFacts, read_server
from durably.store.rows import TableHealth

Level = Literal["ok", "warn", "fail"]
LEVELS: tuple[Level, ...] = ("ok", "warn", "fail")

# Connections one worker process may open at most: its pool (16), its async pool (8),
# two group-commit connections each for sync and async (the workflows' writes, and the
# callers' starts and enqueues) and the notification listener.
CONNECTIONS_PER_WORKER = 16 + 8 + 4 + 1
# The tables every step, queue claim or wait writes: their vacuum state is always shown.
HOT_TABLES = ("workflows", "operations", "executors", "messages", "events", "streams")
# A table whose dead rows pass both is not vacuumed fast enough.
DEAD_RATIO = 0.2
DEAD_ROWS = 1_000
# Sizes under which bloat does not matter.
BLOAT_MIN_BYTES = 64 * 1024 * 1024
# Clock offsets from the database's (seconds) that make a warning, then a failure.
SKEW_WARN = 1.0
SKEW_FAIL = 60.0
DEFAULT_SESSION_AGE = 60.0

SETTINGS = (
    "server_version", "server_version_num", "io_method", "io_workers",
    "effective_io_concurrency", "maintenance_io_concurrency", "io_max_concurrency",
    "io_combine_limit", "io_max_combine_limit", "synchronous_commit", "fsync",
    "full_page_writes", "wal_level", "max_wal_size", "checkpoint_timeout", "shared_buffers",
    "autovacuum", "track_counts", "max_connections", "superuser_reserved_connections",
    "reserved_connections", "idle_in_transaction_session_timeout",
)  # fmt: skip
_UNITS = {"B": 1, "kB": 1024, "8kB": 8192, "MB": 1024**2, "GB": 1024**3, "16MB": 16 * 1024**2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: ``fix`` is the setting to change or what to run (None: no
    change needed); ``subject`` the setting, table or session it is about."""

    check: str
    level: Level
    reason: str
    fix: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """Every finding about one server and schema."""

    server_version: str
    schema: str
    findings: list[Finding]

    @property
    def failed(self) -> bool:
        return any(f.level == "fail" for f in self.findings)

    def count(self, level: Level) -> int:
        return sum(1 for f in self.findings if f.level == level)


def diagnose(
    url: str,
    schema: str,
    *,
    workers: int | None = None,
    pool_size: int | None = None,
    session_age: float = DEFAULT_SESSION_AGE,
) -> Report:
    """Read the server and the schema, and judge them. ``workers`` and ``pool_size``:
    the worker processes planned and the connections each may open (default: the live
    executors of the schema, and durably's own most); ``session_age``: how long a
    transaction may stay open before it is reported as holding back vacuum."""
    for label, value in (("workers", workers), ("pool_size", pool_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidArgument(f"{label} must be a whole number, got {value!r}")
        if value is not None and value < 1:
            raise InvalidArgument(f"{label} must be at least 1, got {value!r}")
    if not session_age > 0:
        raise InvalidArgument(
            f"session_age must be a positive number of seconds, got {session_age!r}"
        )
    facts = read_server(url, schema, SETTINGS, session_age)
    version = facts.settings["server_version"].setting
    found = findings(facts, schema, workers=workers, pool_size=pool_size, session_age=session_age)
    return Report(version, schema, found)


def findings(
    facts: ServerFacts,
    schema: str,
    *,
    workers: int | None = None,
    pool_size: int | None = None,
    session_age: float = DEFAULT_SESSION_AGE,
) -> list[Finding]:
    """Every rule applied to the facts, in the order docs/doctor.md lists them."""
    out: list[Finding] = []
    settings = _Settings(facts)
    rules: list[Callable[[], Iterator[Finding]]] = [
        lambda: _version(settings),
        lambda: _io(settings, facts),
        lambda: _durability(settings),
        lambda: _wal(settings),
        lambda: _memory(settings),
        lambda: _autovacuum(settings, facts, schema),
        lambda: _connections(settings, facts, workers, pool_size),
        lambda: _sessions(facts, session_age),
        lambda: _schema_version(facts, schema),
        lambda: _indexes(facts, schema),
        lambda: _clocks(facts),
    ]
    for rule in rules:
        out.extend(rule())
    return out


# ----------------------------------------------------------------------------- settings


class _Settings:
    def __init__(self, facts: ServerFacts) -> None:
        self.rows = facts.settings

    def has(self, name: str) -> bool:
        return name in self.rows

    def text(self, name: str) -> str:
        return self.rows[name].setting

    def number(self, name: str) -> float:
        return float(self.rows[name].setting)

    def bytes(self, name: str) -> int:
        row = self.rows[name]
        return int(float(row.setting) * _UNITS.get(row.unit or "B", 1))

    def seconds(self, name: str) -> float:
        row = self.rows[name]
        scale = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}.get(row.unit or "s", 1.0)
        return float(row.setting) * scale

    def on(self, name: str) -> bool:
        return self.rows[name].setting == "on"


def _size(count: float) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if count >= scale:
            value = count / scale
            return (
                f"{value:.0f}{unit}" if value == int(value) or value >= 10 else f"{value:.1f}{unit}"
            )
    return f"{count:.0f}B"


def _span(secs: float) -> str:
    if secs >= 3600 and secs % 3600 == 0:
        return f"{secs / 3600:.0f}h"
    if secs >= 60 and secs % 60 == 0:
        return f"{secs / 60:.0f}min"
    return f"{secs:.0f}s" if secs >= 1 else f"{secs:.2f}s"


RELOAD = "; SELECT pg_reload_conf()"


def _version(s: _Settings) -> Iterator[Finding]:
    version, num = s.text("server_version"), int(s.number("server_version_num"))
    if num < 140000:
        yield Finding(
            "server_version", "fail",
            f"PostgreSQL {version}: durably needs 14 or newer",
            "upgrade the server to PostgreSQL 14 or newer (18 reads with asynchronous I/O)",
            "server_version",
        )  # fmt: skip
    elif num < 180000:
        yield Finding(
            "server_version", "ok",
            f"PostgreSQL {version}: supported; asynchronous I/O for scans and vacuum comes with 18",
            None, "server_version",
        )  # fmt: skip
    else:
        yield Finding("server_version", "ok", f"PostgreSQL {version}", None, "server_version")


def _io(s: _Settings, facts: ServerFacts) -> Iterator[Finding]:
    if s.has("io_method"):
        yield _io_method(s, facts)
    low = [
        f"{name} = {s.text(name)}"
        for name in ("effective_io_concurrency", "maintenance_io_concurrency")
        if s.has(name) and s.number(name) <= 1
    ]
    if low:
        yield Finding(
            "io_concurrency", "warn",
            f"{', '.join(low)}: read-ahead is off (left from 17 or disk-era tuning); a cold "
            f"bitmap scan measured 3.4x slower without it",
            "ALTER SYSTEM SET effective_io_concurrency = 16; ALTER SYSTEM SET "
            "maintenance_io_concurrency = 16" + RELOAD,
            "effective_io_concurrency",
        )  # fmt: skip
    else:
        yield Finding(
            "io_concurrency", "ok",
            f"effective_io_concurrency = {s.text('effective_io_concurrency')}, "
            f"maintenance_io_concurrency = {s.text('maintenance_io_concurrency')}",
            None, "effective_io_concurrency",
        )  # fmt: skip
    if s.has("io_max_concurrency"):
        value = int(s.number("io_max_concurrency"))
        if 0 < value < 16:
            yield Finding(
                "io_max_concurrency", "warn",
                f"io_max_concurrency = {value}: each process keeps few reads in flight (small "
                f"shared_buffers or a very large max_connections caps it)",
                "raise shared_buffers, or ALTER SYSTEM SET io_max_concurrency = 64 (restart)",
                "io_max_concurrency",
            )  # fmt: skip
    if s.has("io_combine_limit") and s.has("io_max_combine_limit"):
        combine, most = s.bytes("io_combine_limit"), s.bytes("io_max_combine_limit")
        if combine < 128 * 1024 or combine > most:
            yield Finding(
                "io_combine_limit", "warn",
                f"io_combine_limit = {_size(combine)} (at most {_size(most)} applies): reads "
                f"are combined less than the 128kB default",
                "ALTER SYSTEM RESET io_combine_limit; ALTER SYSTEM RESET io_max_combine_limit "
                "(restart)",
                "io_combine_limit",
            )  # fmt: skip


def _io_method(s: _Settings, facts: ServerFacts) -> Finding:
    method = s.text("io_method")
    waits = max((sample.aio_waits for sample in facts.connections), default=0)
    if method == "worker" and s.has("io_workers"):
        count = int(s.number("io_workers"))
        if count < 3:
            return Finding(
                "io_method", "warn",
                f"io_method = worker with io_workers = {count}: cold scattered reads measured "
                f"about 3x slower than with 6 workers (or sync) on 2 vCPU",
                "ALTER SYSTEM SET io_workers = 6" + RELOAD,
                "io_workers",
            )  # fmt: skip
        if waits:
            return Finding(
                "io_method", "warn",
                f"io_method = worker: {waits} backend(s) waited for an I/O worker "
                f"(AioIoCompletion) with io_workers = {count}; the pool is the bottleneck",
                f"ALTER SYSTEM SET io_workers = {min(32, count * 2)}" + RELOAD,
                "io_workers",
            )  # fmt: skip
        return Finding(
            "io_method", "ok",
            f"io_method = worker, io_workers = {count} (6 matched sync on 2 vCPU; the stock 3 "
            f"was 1.3-1.7x slower on cold scattered reads)",
            None, "io_workers",
        )  # fmt: skip
    if method == "io_uring":
        return Finding(
            "io_method", "ok",
            "io_method = io_uring: each process has its own ring; a restart after raising "
            "max_connections needs a matching open-file limit (ulimit -n)",
            None, "io_method",
        )  # fmt: skip
    return Finding(
        "io_method", "ok",
        f"io_method = {method}: reads done by each backend; equal to io_uring here, and "
        f"commits do not depend on it",
        None, "io_method",
    )  # fmt: skip


def _durability(s: _Settings) -> Iterator[Finding]:
    for name in ("fsync", "full_page_writes"):
        if s.has(name) and not s.on(name):
            yield Finding(
                name, "fail",
                f"{name} = off: a crash of the server can corrupt the cluster, losing "
                f"checkpoints that were acknowledged",
                f"ALTER SYSTEM SET {name} = on" + RELOAD,
                name,
            )  # fmt: skip
    mode = s.text("synchronous_commit")
    if mode == "off":
        yield Finding(
            "synchronous_commit", "warn",
            "synchronous_commit = off: a commit returns before it is on disk, so a server "
            "crash can lose the last checkpoints (their steps then run again)",
            "ALTER SYSTEM SET synchronous_commit = on" + RELOAD,
            "synchronous_commit",
        )  # fmt: skip
    else:
        yield Finding(
            "synchronous_commit", "ok",
            f"synchronous_commit = {mode}: a checkpoint is durable when its commit returns",
            None, "synchronous_commit",
        )  # fmt: skip


def _wal(s: _Settings) -> Iterator[Finding]:
    level = s.text("wal_level")
    note = {
        "minimal": "the least WAL; no replicas or point-in-time recovery",
        "replica": "enough for replicas and backups",
        "logical": "the most WAL, for logical decoding",
    }.get(level, "")
    yield Finding("wal_level", "ok", f"wal_level = {level}: {note}".rstrip(": "), None, "wal_level")
    size = s.bytes("max_wal_size")
    if size < 1024**3:
        yield Finding(
            "max_wal_size", "warn",
            f"max_wal_size = {_size(size)}: bursts of steps force checkpoints (and full-page "
            f"images after each)",
            "ALTER SYSTEM SET max_wal_size = '2GB'" + RELOAD,
            "max_wal_size",
        )  # fmt: skip
    else:
        yield Finding("max_wal_size", "ok", f"max_wal_size = {_size(size)}", None, "max_wal_size")
    every = s.seconds("checkpoint_timeout")
    if every < 300:
        yield Finding(
            "checkpoint_timeout", "warn",
            f"checkpoint_timeout = {_span(every)}: frequent checkpoints, and more full-page "
            f"images in the WAL after each",
            "ALTER SYSTEM SET checkpoint_timeout = '15min'" + RELOAD,
            "checkpoint_timeout",
        )  # fmt: skip
    else:
        yield Finding(
            "checkpoint_timeout", "ok", f"checkpoint_timeout = {_span(every)}", None,
            "checkpoint_timeout",
        )  # fmt: skip


def _memory(s: _Settings) -> Iterator[Finding]:
    size = s.bytes("shared_buffers")
    if size < 128 * 1024**2:
        yield Finding(
            "shared_buffers", "warn",
            f"shared_buffers = {_size(size)}: durably's hot tables and indexes do not stay "
            f"cached",
            "ALTER SYSTEM SET shared_buffers = '256MB' (or about a quarter of RAM; restart)",
            "shared_buffers",
        )  # fmt: skip
    else:
        yield Finding(
            "shared_buffers", "ok", f"shared_buffers = {_size(size)}", None, "shared_buffers"
        )


# --------------------------------------------------------------------------- the schema


def _autovacuum(s: _Settings, facts: ServerFacts, schema: str) -> Iterator[Finding]:
    for name in ("autovacuum", "track_counts"):
        if not s.on(name):
            yield Finding(
                "autovacuum", "fail",
                f"{name} = off: dead rows of finished steps and claims are never cleaned up "
                f"automatically, and tables and indexes grow without end",
                f"ALTER SYSTEM SET {name} = on" + RELOAD,
                name,
            )  # fmt: skip
    for table in facts.tables:
        yield from _table(table, schema)


def _table(table: TableHealth, schema: str) -> Iterator[Finding]:
    qualified = f"{_ident(schema)}.{_ident(table.name)}"
    subject = f"{schema}.{table.name}"
    total = table.live_rows + table.dead_rows
    ratio = table.dead_rows / total if total else 0.0
    vacuumed = _ago(table.vacuumed_at)
    figures = (
        f"{table.live_rows} live, {table.dead_rows} dead rows ({ratio:.0%}), last vacuum "
        f"{vacuumed}, {_size(table.table_bytes)} + {_size(table.index_bytes)} of indexes"
    )
    if not table.autovacuum_enabled:
        yield Finding(
            "autovacuum", "fail",
            f"autovacuum is off for table {subject} (autovacuum_enabled = false): its dead "
            f"rows are never cleaned up; {figures}",
            f"ALTER TABLE {qualified} RESET (autovacuum_enabled)",
            subject,
        )  # fmt: skip
        return
    if table.dead_rows >= DEAD_ROWS and ratio > DEAD_RATIO:
        yield Finding(
            "vacuum", "warn",
            f"table {subject} has {ratio:.0%} dead rows: autovacuum falls behind; {figures}",
            f"VACUUM (ANALYZE) {qualified}; then ALTER TABLE {qualified} SET "
            f"(autovacuum_vacuum_scale_factor = 0.02), or raise autovacuum_max_workers",
            subject,
        )  # fmt: skip
        return
    if table.index_bytes > 4 * table.table_bytes and table.index_bytes > BLOAT_MIN_BYTES:
        yield Finding(
            "bloat", "warn",
            f"the indexes of {subject} are {table.index_bytes / max(1, table.table_bytes):.0f}x "
            f"its size: bloated after deletes; {figures}",
            f"REINDEX TABLE CONCURRENTLY {qualified}",
            subject,
        )  # fmt: skip
        return
    per_row = table.table_bytes / max(1, table.live_rows)
    if table.table_bytes > BLOAT_MIN_BYTES and per_row > 16 * 1024:
        yield Finding(
            "bloat", "warn",
            f"table {subject} takes {_size(per_row)} per live row: mostly empty space after "
            f"deletes; {figures}",
            f"VACUUM FULL {qualified} (locks the table), or pg_repack",
            subject,
        )  # fmt: skip
        return
    if table.name in HOT_TABLES:
        yield Finding("vacuum", "ok", f"table {subject}: {figures}", None, subject)


def _ago(moment: datetime | None) -> str:
    return "never" if moment is None else moment.isoformat(timespec="seconds")


def _connections(
    s: _Settings, facts: ServerFacts, workers: int | None, pool_size: int | None
) -> Iterator[Finding]:
    most = int(s.number("max_connections"))
    reserved = sum(
        int(s.number(name))
        for name in ("superuser_reserved_connections", "reserved_connections")
        if s.has(name)
    )
    available = most - reserved
    live = len(facts.executors or [])
    count = workers if workers is not None else max(1, live)
    per = pool_size if pool_size is not None else CONNECTIONS_PER_WORKER
    need = count * per
    open_now = max((sample.connections for sample in facts.connections), default=0)
    source = "planned" if workers is not None else f"{live} live in the schema"
    reason = (
        f"{count} worker(s) ({source}) x {per} connections = {need} of {available} "
        f"available (max_connections = {most}, {reserved} reserved); {open_now} open now"
    )
    fix = (
        f"ALTER SYSTEM SET max_connections = {max(most, need + reserved + 20)} (restart), or "
        f"fewer or smaller pools (a pooler such as PgBouncer in session mode)"
    )
    if need > available:
        yield Finding(
            "connections", "fail", f"too few connections: {reason}", fix, "max_connections"
        )
    elif need > 0.8 * available or open_now > 0.9 * available:
        yield Finding(
            "connections", "warn", f"close to the limit: {reason}", fix, "max_connections"
        )
    else:
        yield Finding("connections", "ok", reason, None, "max_connections")


def _sessions(facts: ServerFacts, session_age: float) -> Iterator[Finding]:
    if not facts.sessions:
        yield Finding(
            "sessions", "ok",
            f"no transaction has been open longer than {_span(session_age)}",
            None, "idle_in_transaction_session_timeout",
        )  # fmt: skip
        return
    for session in facts.sessions:
        who = (
            f"pid {session.pid} ({session.user_name or '?'}@{session.database or '?'}"
            f"{', ' + session.application_name if session.application_name else ''})"
        )
        held = _span(session.transaction_seconds)
        if session.state.startswith("idle in transaction"):
            yield Finding(
                "sessions", "warn",
                f"{who} has been idle in a transaction for {held}: it holds back what vacuum "
                f"may clean up",
                f"end it (SELECT pg_terminate_backend({session.pid})) and ALTER SYSTEM SET "
                f"idle_in_transaction_session_timeout = '1min'" + RELOAD,
                f"pid {session.pid}",
            )  # fmt: skip
        else:
            yield Finding(
                "sessions", "warn",
                f"{who} has run one transaction for {held} ({session.state}): it holds back "
                f"what vacuum may clean up",
                f"find what runs it ({session.query or 'query not visible'}); split the work, "
                f"or SET transaction_timeout / statement_timeout for its role",
                f"pid {session.pid}",
            )  # fmt: skip


def _schema_version(facts: ServerFacts, schema: str) -> Iterator[Finding]:
    migrate = f"durably migrate --schema {schema}"
    if not facts.schema.schema_exists or facts.applied is None:
        yield Finding(
            "schema_version", "fail",
            f"schema {schema} "
            + ("has no durably tables" if facts.schema.schema_exists else "does not exist"),
            migrate, schema,
        )  # fmt: skip
        return
    missing = sorted(set(facts.known) - facts.applied)
    newer = sorted(facts.applied - set(facts.known))
    if missing:
        names = ", ".join(facts.known[v] for v in missing)
        yield Finding(
            "schema_version", "fail", f"schema {schema} lacks migrations {names}", migrate, schema
        )
    elif newer:
        yield Finding(
            "schema_version", "warn",
            f"schema {schema} has migrations this durably does not know ({newer}): a newer "
            f"version migrated it",
            "upgrade durably where this runs", schema,
        )  # fmt: skip
    else:
        latest = facts.known[max(facts.known)]
        yield Finding(
            "schema_version", "ok", f"schema {schema} is up to date ({latest})", None, schema
        )


def _indexes(facts: ServerFacts, schema: str) -> Iterator[Finding]:
    if not facts.schema.schema_exists or facts.applied is None:
        return
    tables = {table.name for table in facts.tables}
    missing = [
        (key, migration)
        for key, migration in sorted(facts.expected_indexes.items())
        if key not in facts.indexes and key[0] in tables
    ]
    for (table, index), migration in missing:
        yield Finding(
            "indexes", "fail",
            f"index {index} of table {schema}.{table} is missing: the queries it serves scan "
            f"the table",
            f"create it again as migrations/{migration} does (CREATE INDEX CONCURRENTLY {index} "
            f"ON {_ident(schema)}.{_ident(table)} ...)",
            f"{schema}.{table}",
        )  # fmt: skip
    if not missing:
        present = len([key for key in facts.expected_indexes if key[0] in tables])
        yield Finding(
            "indexes", "ok", f"all {present} indexes of the migrations are present", None, schema
        )


def _clocks(facts: ServerFacts) -> Iterator[Finding]:
    if facts.executors is None:
        if facts.applied is not None:
            yield Finding(
                "clock_skew", "warn",
                f"clock skew cannot be measured: the schema lacks migration "
                f"{CLOCK_MIGRATION:04d} (workers' clocks are not recorded)",
                "durably migrate", None,
            )  # fmt: skip
        return
    measured = [e for e in facts.executors if e.skew_seconds is not None]
    if not measured:
        yield Finding(
            "clock_skew", "ok",
            f"no live worker to compare ({len(facts.executors)} live, none reporting its clock)",
            None, None,
        )  # fmt: skip
        return
    worst = max(measured, key=lambda e: abs(e.skew_seconds or 0.0))
    offset = worst.skew_seconds or 0.0
    skews = [e.skew_seconds or 0.0 for e in measured]
    spread = max(skews) - min(skews)
    reason = (
        f"{len(measured)} live worker(s); the furthest, {worst.id} on {worst.hostname}, is "
        f"{offset:+.3f}s from the database's clock (spread between workers {spread:.3f}s)"
    )
    fix = f"synchronise the clock of {worst.hostname} (chrony or systemd-timesyncd, NTP)"
    if abs(offset) >= SKEW_FAIL:
        yield Finding("clock_skew", "fail", reason, fix, worst.id)
    elif abs(offset) >= SKEW_WARN:
        yield Finding("clock_skew", "warn", reason, fix, worst.id)
    else:
        yield Finding("clock_skew", "ok", reason, None, worst.id)


def _ident(name: str) -> str:
    """A name as SQL text for a suggested fix (quoted when it needs to be)."""
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'
