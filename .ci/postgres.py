#!/usr/bin/env python3
"""A throwaway PostgreSQL server of a given version for one command (CI's second server).

    python3 .ci/postgres.py [--version 15] [--bin DIR] -- COMMAND [ARGS...]

Initialises a cluster in a temporary directory from the binaries of Debian's
``postgresql-VERSION`` package (/usr/lib/postgresql/VERSION/bin) or of ``--bin DIR``
(such as .ci/npm_postgres.py's, for versions Debian does not package), starts it on a free
TCP port of 127.0.0.1 with password (scram-sha-256) authentication, creates the database
``durably``, runs COMMAND with ``DURABLY_TEST_DATABASE_URL`` pointing at it (the tests'
conftest.py then uses it instead of the embedded PostgreSQL 18), stops the server and
removes the directory. Exits with COMMAND's exit code.

PostgreSQL refuses to run as root: run as root (as CI does), the server runs as the
system user ``durably`` (created if missing), as ``durably.embedded`` does.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

SERVER_USER = "durably"
DATABASE = "durably"
SUPERUSER = "postgres"
SETTINGS = {
    # Room for the suite's pools and worker processes (the embedded server has 200).
    "max_connections": "200",
    "listen_addresses": "127.0.0.1",
    # Warnings and worse only, as the embedded server logs.
    "log_min_messages": "warning",
}
START_TIMEOUT = 60


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="15", help="PostgreSQL major version (15)")
    parser.add_argument("--bin", help="directory of initdb/pg_ctl (default: Debian's)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    bindir = Path(args.bin or f"/usr/lib/postgresql/{args.version}/bin")
    if not (bindir / "initdb").exists():
        print(
            f"postgres.py: {bindir}/initdb is missing; install the server "
            f"(apt-get install -y postgresql-{args.version}) or pass --bin",
            file=sys.stderr,
        )
        return 2
    # A SIGTERM (CI cancelling the job) still stops the server and removes its files.
    signal.signal(signal.SIGTERM, _interrupted)
    with Server(bindir) as url:
        env = dict(os.environ, DURABLY_TEST_DATABASE_URL=url)
        version = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"postgres.py: {version} on {_shown(url)}", file=sys.stderr)
        return subprocess.run(command, env=env, check=False).returncode


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _shown(url: str) -> str:
    """The URL without its password (it is a throwaway one, but logs keep no secrets)."""
    head, _, tail = url.partition("@")
    return f"{head.rpartition(':')[0]}:***@{tail}"


class Server:
    """A cluster in a temporary directory, started on entry and removed on exit."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="durably-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.password = secrets.token_urlsafe(18)
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = _system_user()
            self.user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.started = False

    def __enter__(self) -> str:
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
            **self.user,
        )
        if check and done.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise SystemExit(f"postgres.py: {args[0]} failed:\n{done.stdout}{done.stderr}{log}")
        return done

    def _start(self) -> str:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user:
            os.chown(pwfile, self.user["user"], self.user["group"])
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=scram-sha-256",
            f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        pwfile.unlink()
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# postgres.py\n")
            conf.write(f"unix_socket_directories = '{self.root}'\n")
            for name, value in SETTINGS.items():
                conf.write(f"{name} = '{value}'\n")
        psql = self.bindir / "psql"
        if not psql.exists():
            # A bare server build (initdb, pg_ctl, postgres: the npm package's) has no
            # psql: the database is made by the server in single-user mode, before start.
            self._run(
                "postgres", "--single", "-D", str(self.data), "postgres",
                stdin=f"CREATE DATABASE {DATABASE};\n",
            )  # fmt: skip
        for _attempt in range(3):  # another process may take the free port first
            port = _free_port()
            done = self._run(
                "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                "-t", str(START_TIMEOUT), "-o", f"-p {port}", check=False,
            )  # fmt: skip
            if done.returncode == 0:
                break
        else:
            self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log))
        self.started = True
        base = f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{port}"
        if not psql.exists():
            return f"{base}/{DATABASE}"
        # pg_ctl -w returned once the server accepts connections.
        psql_command = [str(psql), f"{base}/postgres", "-v", "ON_ERROR_STOP=1", "-qc"]
        done = subprocess.run(
            [*psql_command, f"CREATE DATABASE {DATABASE}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"postgres.py: CREATE DATABASE failed: {done.stderr}")
        return f"{base}/{DATABASE}"


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        shell = "/usr/sbin/nologin"
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", shell, SERVER_USER], check=True
        )
        return pwd.getpwnam(SERVER_USER)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


if __name__ == "__main__":
    sys.exit(main())
