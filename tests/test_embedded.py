"""durably.embedded with real PostgreSQL servers and real processes (no mocks)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psycopg
import pytest

from durably import embedded
from durably.errors import DatabaseUnavailable

# A user of the server in its own process. It prints one JSON line once it has acquired
# the server and connected, then follows stdin: "release" releases explicitly; end of
# input returns normally, so the atexit hook releases.
CHILD = r"""
import json, os, sys, time
from durably import embedded
import psycopg

if sys.argv[2] == "wait-go":
    print(json.dumps({"waiting": os.getpid()}), flush=True)
    sys.stdin.readline()
started = time.perf_counter()
server = embedded.acquire(sys.argv[1])
took = time.perf_counter() - started
with psycopg.connect(server.url) as conn:
    sysid = conn.execute("select system_identifier from pg_control_system()").fetchone()[0]
postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
print(json.dumps({"pid": os.getpid(), "postmaster": postmaster, "sysid": str(sysid),
                  "acquire_s": took}), flush=True)
for line in sys.stdin:
    if line.strip() == "release":
        server.release()
        print(json.dumps({"released": os.getpid()}), flush=True)
"""

TIMEOUT = 60.0


class Child:
    """A CHILD process, with its stdout lines read by a thread so reads can time out."""

    def __init__(self, data_dir: Path, mode: str = "now") -> None:
        env = dict(os.environ)
        # The child must import the same durably as this process.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data_dir), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def message(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"child {self.proc.pid} said nothing for {timeout}s") from None
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        """Close stdin (the child returns normally) and wait for it to exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=TIMEOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.02)


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid in postmaster.pid if that process is alive (not a zombie), else None."""
    try:
        pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state in ("Z", "X") else pid


def is_running(data_dir: Path) -> bool:
    return postmaster_pid(data_dir) is not None


def is_stopped(data_dir: Path) -> bool:
    return not (data_dir / "pg" / "postmaster.pid").exists() and not postgres_processes(data_dir)


def postgres_processes(data_dir: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-af", str(data_dir)], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "postgres" in line]


def registered_pids(data_dir: Path) -> list[int]:
    try:
        return [u["pid"] for u in json.loads((data_dir / "users.json").read_text())]
    except FileNotFoundError:
        return []


def can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("select 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "durably-data"
    try:
        yield path
    finally:
        embedded.stop(path)
        assert postgres_processes(path) == []


@pytest.fixture
def spawn(data_dir: Path) -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def start(mode: str = "now") -> Child:
        child = Child(data_dir, mode)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            child.kill()


def test_acquire_applies_settings_and_last_release_stops(data_dir: Path) -> None:
    server = embedded.acquire(data_dir)
    assert server.data_dir == data_dir
    assert is_running(data_dir)
    with psycopg.connect(server.url) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"show {name}").fetchone()
            assert row is not None
            return str(row[0])

        assert show("io_method") == "worker"
        assert show("io_workers") == "6"
        assert show("listen_addresses") == ""
        assert show("synchronous_commit") == "on"
        assert show("fsync") == "on"
        assert show("full_page_writes") == "on"
        assert show("wal_level") == "minimal"
        assert show("max_connections") == "200"
        assert show("shared_buffers") == "256MB"
        assert show("unix_socket_permissions") == "0700"
        assert conn.execute("select current_database()").fetchone() == ("durably",)
    assert registered_pids(data_dir) == [os.getpid()]

    again = embedded.acquire(str(data_dir))  # same process: the same object, one more ref
    assert again is server
    again.release()
    assert is_running(data_dir) and can_connect(server.url)

    server.release()
    assert is_stopped(data_dir)
    assert registered_pids(data_dir) == []
    server.release()  # idempotent past zero
    assert not embedded.stop(data_dir)


def test_second_process_reuses_and_outlives_it(data_dir: Path, spawn: Callable[..., Child]) -> None:
    child = spawn()
    first = child.message()
    postmaster = first["postmaster"]

    server = embedded.acquire(data_dir)
    assert postmaster_pid(data_dir) == postmaster  # reused, not restarted
    assert sorted(registered_pids(data_dir)) == sorted([first["pid"], os.getpid()])

    assert child.finish() == 0  # returns normally: its atexit hook releases
    assert registered_pids(data_dir) == [os.getpid()]
    assert postmaster_pid(data_dir) == postmaster
    assert can_connect(server.url)

    server.release()
    assert is_stopped(data_dir)


def test_explicit_release_in_other_process_keeps_server_for_us(
    data_dir: Path, spawn: Callable[..., Child]
) -> None:
    server = embedded.acquire(data_dir)
    child = spawn()
    assert child.message()["postmaster"] == postmaster_pid(data_dir)
    child.send("release")
    assert "released" in child.message()
    assert can_connect(server.url)
    assert child.finish() == 0
    assert can_connect(server.url)
    server.release()
    assert is_stopped(data_dir)


def test_sigkilled_user_is_pruned(data_dir: Path, spawn: Callable[..., Child]) -> None:
    child = spawn()
    first = child.message()
    child.proc.send_signal(signal.SIGKILL)
    child.proc.wait(timeout=TIMEOUT)

    # Its only user died without releasing: the server keeps running.
    assert postmaster_pid(data_dir) == first["postmaster"]
    assert registered_pids(data_dir) == [first["pid"]]

    server = embedded.acquire(data_dir)  # reuses it; prunes the dead pid
    assert postmaster_pid(data_dir) == first["postmaster"]
    assert registered_pids(data_dir) == [os.getpid()]
    server.release()
    assert is_stopped(data_dir)


def test_concurrent_acquire_on_fresh_dir_makes_one_cluster(
    data_dir: Path, spawn: Callable[..., Child]
) -> None:
    children = [spawn("wait-go") for _ in range(3)]
    for child in children:
        assert "waiting" in child.message()
    for child in children:
        child.send("go")
    reports = [child.message() for child in children]

    assert len({r["postmaster"] for r in reports}) == 1
    assert len({r["sysid"] for r in reports}) == 1
    assert postmaster_pid(data_dir) == reports[0]["postmaster"]
    assert sorted(registered_pids(data_dir)) == sorted(r["pid"] for r in reports)
    assert not (data_dir / "pg.initdb").exists()

    for child in children:
        assert child.finish() == 0
    wait_for(lambda: is_stopped(data_dir), "the last user's exit stops the server")


def test_warm_acquire_is_cheap(data_dir: Path, spawn: Callable[..., Child]) -> None:
    server = embedded.acquire(data_dir)
    timings = []
    for _ in range(3):
        child = spawn()
        timings.append(child.message()["acquire_s"])
        assert child.finish() == 0
    print(f"warm acquire in another process: {[round(t * 1000, 1) for t in timings]} ms")
    assert min(timings) < 0.1
    started = time.perf_counter()
    embedded.acquire(data_dir).release()
    print(f"in-process acquire+release: {(time.perf_counter() - started) * 1000:.1f} ms")
    server.release()
    assert is_stopped(data_dir)


def test_killed_postmaster_leaves_stale_pid_file_that_does_not_block(data_dir: Path) -> None:
    server = embedded.acquire(data_dir)
    old = postmaster_pid(data_dir)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not is_running(data_dir), "the postmaster is dead")
    assert (data_dir / "pg" / "postmaster.pid").exists()  # stale

    again = embedded.acquire(data_dir)  # this process's second reference: restarts it
    assert again is server
    new = postmaster_pid(data_dir)
    assert new is not None and new != old
    assert can_connect(server.url)
    server.release()
    server.release()
    assert is_stopped(data_dir)


def test_stop_stops_whoever_uses_it(data_dir: Path, spawn: Callable[..., Child]) -> None:
    child = spawn()
    child.message()
    assert embedded.stop(data_dir)
    assert is_stopped(data_dir)
    assert not embedded.stop(data_dir)
    server = embedded.acquire(data_dir)  # starts it again
    assert can_connect(server.url)
    server.release()  # the child is still registered and alive: keeps it up
    assert is_running(data_dir)
    assert child.finish() == 0
    wait_for(lambda: is_stopped(data_dir), "the child's release stops it")


def test_long_path_puts_socket_in_short_private_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 40)
    deep.parent.mkdir()
    try:
        server = embedded.acquire(deep)
        host = Path(unquote(server.url.split("host=", 1)[1]))
        assert str(host).startswith("/tmp/durably-")
        assert host.stat().st_mode & 0o777 == 0o700
        assert can_connect(server.url)
        server.release()
        assert is_stopped(deep)
    finally:
        embedded.stop(deep)
    assert postgres_processes(deep) == []


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    with pytest.raises(DatabaseUnavailable, match="not-a-dir"):
        embedded.acquire(path)


def test_data_dir_without_parent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "data"
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        embedded.acquire(path)
    assert not path.parent.exists()


def test_stop_of_unused_dir_is_false(tmp_path: Path) -> None:
    assert not embedded.stop(tmp_path / "nothing-here")
    assert not (tmp_path / "nothing-here").exists()


def test_unwritable_data_dir_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "read-only"
    path.mkdir(mode=0o500)
    # Root writes through file modes: make the directory immutable instead (chattr +i
    # binds root too).
    as_root = os.geteuid() == 0
    if as_root:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        with pytest.raises(DatabaseUnavailable, match=r"read-only|not writable"):
            embedded.acquire(path)
        assert list(path.iterdir()) == []
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o700)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_under_root_server_runs_as_durably_user(data_dir: Path) -> None:
    import pwd
    import stat

    server = embedded.acquire(data_dir)
    try:
        owner = pwd.getpwuid((data_dir / "pg").stat().st_uid).pw_name
        assert owner == embedded.SERVER_USER
        pid = postmaster_pid(data_dir)
        assert pid is not None and pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name == owner
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        assert mode == 0o701  # made 0700, then only the search bit for others
        assert (data_dir / "lock").stat().st_uid == 0
    finally:
        server.release()
    assert is_stopped(data_dir)


def test_a_script_that_never_closes_its_client_leaves_quietly(data_dir: Path) -> None:
    """The client is closed at exit before the embedded server it started stops, so no
    warning of an unreachable database is printed on the way out."""
    script = (
        "import sys, durably\n"
        "client = durably.Client(data_dir=sys.argv[1])\n"
        "print(client.get_event('nobody', 'key', timeout=0))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(data_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "None\n"), done.stderr
    assert "unreachable" not in done.stderr, done.stderr
    assert is_stopped(data_dir)
