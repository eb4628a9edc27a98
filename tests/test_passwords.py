"""A wrong password at launch, against a real server that asks for one.

The shared test server (the embedded PostgreSQL) takes no TCP connections and trusts its
owner on its unix socket, so it cannot refuse a password. This test starts a second,
throwaway PostgreSQL from the same binaries with ``scram-sha-256`` for TCP, and shows a
wrong password is one clear line that never shows the password, and the right one works.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import durably
from durably.embedded.binaries import binary, make_install_usable, run
from durably.embedded.run_as import chown, make_traversable, server_user

PASSWORD = "Right-pw-7f3a"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def password_server(tmp_path: Path) -> Iterator[int]:
    """The port of a PostgreSQL on 127.0.0.1 whose superuser ``postgres`` needs PASSWORD."""
    run_as = server_user(tmp_path)
    if run_as is not None:  # running as root: the server runs as durably's system user
        make_install_usable(run_as)
        make_traversable(tmp_path, run_as)
    data, log, pwfile = (tmp_path / n for n in ("data", "pg.log", "pw"))
    data.mkdir(mode=0o700)
    # A socket's path holds at most 107 bytes: pytest's directories are too deep for it.
    sockets = Path(tempfile.mkdtemp(prefix="durably-pw-"))
    for directory in (data, sockets):
        chown(directory, run_as)
    pwfile.write_text(PASSWORD + "\n")
    log.touch()
    for path in (pwfile, log):
        chown(path, run_as)
    initdb = [binary("initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile)]
    initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-locale"]
    done = run(initdb, run_as, tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {sockets} -c fsync=off"
    pg_ctl = [binary("pg_ctl"), "-D", str(data), "-w", "-t", "60"]
    done = run([*pg_ctl, "-l", str(log), "-o", options, "start"], run_as, tmp_path, timeout=90)
    assert done.returncode == 0, done.stdout + log.read_text()
    try:
        yield port
    finally:
        run([*pg_ctl, "-m", "immediate", "stop"], run_as, tmp_path, timeout=90)
        shutil.rmtree(sockets, ignore_errors=True)


def test_a_wrong_password_at_launch_is_one_clear_line(password_server: int, cli: Any) -> None:
    base = f"127.0.0.1:{password_server}/postgres?connect_timeout=5"
    for user, password in (("postgres", "Wrong-pw-91c2"), ("nobody", "Nobody-pw-5e1d")):
        url = f"postgresql://{user}:{password}@{base}"
        for make in (
            lambda url=url: durably.App(url).launch(),
            lambda url=url: durably.Client(url).list_workflows(),
        ):
            with pytest.raises(durably.DatabaseUnavailable) as refused:
                make()
            message = str(refused.value)
            assert "password authentication failed" in message, message
            assert "\n" not in message and password not in message, message
            assert refused.value.__cause__ is None
        line = cli.refused("workflows", "list", "--database-url", url, database=False)
        assert "password authentication failed" in line and password not in line

    # The right password: the same server stores and runs workflows.
    app = durably.App(f"postgresql://postgres:{PASSWORD}@{base}", schema="passworded")
    greet = app.workflow(name="greet")(lambda who: f"hello {who}")
    with app:
        assert greet("you") == "hello you"
