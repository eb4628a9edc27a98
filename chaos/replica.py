"""A primary and a streaming standby of it, on this machine: failover on demand.

Two ``Cluster``s, each in its own directory with its own unix socket: the standby is a
``pg_basebackup -R`` of the primary, streaming its WAL, synchronous
(``synchronous_standby_names = '*'`` on the primary: a commit returns once the standby
has flushed it) or asynchronous. Clients use ``url``, naming both sockets with
``target_session_attrs=read-write``: libpq connects to whichever accepts writes.
``fail_over`` crashes the primary and promotes the standby; ``rebuild`` makes the old
primary a standby of the new one (a fresh base backup), so that it can happen again.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from chaos.pg import DATABASE, SUPERUSER, Cluster, ClusterError
from durably.embedded.binaries import binary, run

# What a primary needs to feed a standby (the suite's own clusters log minimal WAL).
REPLICATION = {
    "wal_level": "replica",
    "max_wal_senders": "5",
    "hot_standby": "on",
    "wal_keep_size": "'256MB'",
    "wal_sender_timeout": "'10s'",
    "wal_receiver_status_interval": "'1s'",
    # A standby whose primary restarted streams again within a fraction of a second (the
    # default waits 5 s, and a synchronous primary's commits wait as long).
    "wal_retrieve_retry_interval": "'200ms'",
}
_CATCH_UP_TIMEOUT = 60.0


class Pair:
    """Clusters ``a`` and ``b`` under ``root``: ``primary`` and ``standby`` name their
    current roles. Use as a context manager: both are stopped and deleted at the end."""

    def __init__(
        self, root: Path, *, synchronous: bool, settings: Mapping[str, str] | None = None
    ) -> None:
        merged = {**(settings or {}), **REPLICATION}
        self.synchronous = synchronous
        self.primary = Cluster(root / "a", merged)
        self.standby = Cluster(root / "b", merged)
        self.failovers = 0

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        """Both servers, in the order a..b; libpq takes the one that accepts writes."""
        hosts = ",".join(quote(str(c.socket_dir), safe="") for c in sorted(self._both(), key=_name))
        return f"postgresql://{SUPERUSER}@/{database}?host={hosts}&target_session_attrs=read-write"

    def _both(self) -> tuple[Cluster, Cluster]:
        return self.primary, self.standby

    # As a ``Cluster``, the pair is its primary (a pg_restart crashes and restarts it).

    def crash(self) -> None:
        self.primary.crash()

    def start(self) -> None:
        self.primary.start()

    def is_running(self) -> bool:
        return self.primary.is_running()

    # ------------------------------------------------------------------ lifecycle

    def create(self) -> None:
        """The primary (initdb, its database), then its standby."""
        self.primary.create()
        self._attach(self.standby)

    def _attach(self, standby: Cluster) -> None:
        """Make ``standby`` a base backup of the primary, start it streaming, and (when
        synchronous) have the primary wait for it at every commit."""
        shutil.rmtree(standby.data, ignore_errors=True)
        standby.prepare()
        source = f"host={self.primary.socket_dir} user={SUPERUSER}"
        source += f" application_name={_name(standby)}"
        args = [binary("pg_basebackup"), "-D", str(standby.data), "-R", "-X", "stream"]
        args += ["-c", "fast", "--no-sync", "-d", source]
        done = run(args, standby.run_as, standby.data, timeout=300)
        if done.returncode != 0:
            raise ClusterError(f"pg_basebackup failed:\n{done.stdout}")
        standby.configure()
        standby.start()
        names = sql.Literal("*" if self.synchronous else "")
        with psycopg.connect(self.primary.url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(names))
            conn.execute("SELECT pg_reload_conf()")
        self.wait_streaming()

    def wait_streaming(self, timeout: float = _CATCH_UP_TIMEOUT) -> None:
        """Until the primary sees its standby streaming (and, when synchronous, as its
        synchronous standby)."""
        want = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.primary.url_for("postgres"), autocommit=True) as conn:
            while True:
                rows = conn.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchall()
                if any(row[0] == want for row in rows):
                    return
                if time.monotonic() > deadline:
                    raise ClusterError(f"the standby is not streaming ({want}): {rows}")
                time.sleep(0.05)

    def replayed(self, query: str) -> object:
        """``query``'s first value, read on the standby (a hot standby answers reads)."""
        with psycopg.connect(self.standby.url_for(DATABASE), autocommit=True) as conn:
            row = conn.execute(query).fetchone()
        return None if row is None else row[0]

    def caught_up(self, timeout: float = _CATCH_UP_TIMEOUT) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary.url_for("postgres"), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.standby.url_for("postgres"), autocommit=True) as conn:
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
                ).fetchone()
                if done is not None and done[0]:
                    return
                if time.monotonic() > deadline:
                    raise ClusterError(f"the standby did not replay up to {target}")
                time.sleep(0.02)

    def cut_replication(self) -> None:
        """The standby stops receiving WAL (its ``primary_conninfo`` emptied): from now on
        the primary's commits exist only on the primary, as with a standby that lags.
        Only for an asynchronous pair: a synchronous primary would wait at every commit."""
        assert not self.synchronous, "a synchronous primary would block every commit"
        with psycopg.connect(self.standby.url_for("postgres"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + _CATCH_UP_TIMEOUT
        with psycopg.connect(self.primary.url_for("postgres"), autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone() != (0,):
                if time.monotonic() > deadline:
                    raise ClusterError("the standby still streams after its conninfo was cut")
                time.sleep(0.02)

    def fail_over(self) -> None:
        """The primary crashes (``pg_ctl stop -m immediate``) and the standby is promoted;
        the roles swap. The old primary stays down until ``rebuild``."""
        self.primary.crash()
        self.standby.promote()
        self.primary, self.standby = self.standby, self.primary
        self.failovers += 1

    def switch_over(self) -> None:
        """A planned switchover: the primary is made read-only (and keeps running, its
        sessions open), the standby catches up and is promoted; the roles swap. Only
        for an asynchronous pair (a synchronous primary would wait for its standby)."""
        assert not self.synchronous, "a synchronous primary would wait for its standby"
        with psycopg.connect(self.primary.url_for("postgres"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + _CATCH_UP_TIMEOUT
        while True:
            with psycopg.connect(self.primary.url_for("postgres"), autocommit=True) as conn:
                if conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",):
                    break
            if time.monotonic() > deadline:
                raise ClusterError("the primary did not become read-only")
            time.sleep(0.02)
        self.caught_up()
        self.standby.promote()
        self.primary, self.standby = self.standby, self.primary
        self.failovers += 1

    def rebuild(self) -> None:
        """The old primary, down since ``fail_over``, becomes a standby of the new one."""
        with contextlib.suppress(ClusterError):
            if self.standby.is_running():
                self.standby.crash()
        self._attach(self.standby)

    def destroy(self) -> None:
        for cluster in self._both():
            cluster.destroy()

    def __enter__(self) -> Pair:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _name(cluster: Cluster) -> str:
    return cluster.root.name
