"""Names of the data directory's files, and of the database the embedded server serves."""

from __future__ import annotations

DEFAULT_DIR = ".durably"
"""The data directory used when none is given, relative to the current directory."""

PG_SUBDIR = "pg"
LOCK_FILE = "lock"
USERS_FILE = "users.json"
LOG_FILE = "pg.log"
CONF_FILE = "durably.conf"

DATABASE = "durably"
"""The database created in the embedded server; ``EmbeddedServer.url`` points at it."""

SUPERUSER = "postgres"
"""The PostgreSQL role made by initdb; the URL connects as it."""
