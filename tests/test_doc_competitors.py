"""The other frameworks' programs of docs/migrating/*.md run too, each with its framework.

A page that sets durably beside another framework shows the same program written with
both. The other framework's block carries a ``<!-- runs-with: REQUIREMENTS -->`` marker
(tests/test_doc_blocks.py leaves it out of durably's process); this test runs it for
real, in a virtual environment made for exactly those pinned requirements, and checks
that it ends by printing the line that durably's version of the page ends with.

The virtual environments are built once per machine, from PyPI, in a cache directory
(``$DURABLY_VENV_CACHE``, default ``~/.cache/durably-tests/venvs``), one directory per
set of requirements and Python version (the name holds a digest of both), so changing a
pin makes a new one. The first test that needs them builds all of them at once, in
parallel; a file lock per directory lets the other pytest workers (and sessions) wait for
a build instead of repeating it, and a directory whose build did not finish is made anew.
None of these frameworks is a dependency of durably.

Each program is written as ``shop.py`` in a temporary directory (its lines at the page's
line numbers, so a traceback points into the page) and runs on a database of the test
server that the test creates and drops (``WITH (FORCE)``, so nothing is left behind):

- DBOS Transact: ``python shop.py`` with ``DBOS_SYSTEM_DATABASE_URL`` naming that database.
- Celery: the worker of the block's ``# shell:`` comment (``celery -A shop worker ...``) as
  a real process, with kombu's SQLAlchemy transport as the broker and Celery's database
  result backend, both on that database; once it logs that it is ready (it has made
  kombu's tables then: made by two processes at once, they can collide), ``python
  shop.py``. The worker's process group is killed at the end.
- Procrastinate: the block's ``schema --apply`` command, ``python shop.py`` (which defers
  the first job), then the block's worker command as a real process, until it prints the
  line (the last job prints it); the worker is killed at the end.

durably's version of the page runs too (its python blocks, the way test_doc_blocks.py runs
them, on this test's schema), for the line to compare with.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

import test_doc_blocks
from test_doc_blocks import Block, blocks_of, pages, shown

CACHE = Path(
    os.environ.get("DURABLY_VENV_CACHE", Path.home() / ".cache" / "durably-tests" / "venvs")
)
# The seconds one venv's creation and pip install may take (a cold one took ~20 s here).
BUILD_DEADLINE = 240.0
# The seconds one program, or one worker reaching its line, may take.
RUN_DEADLINE = 90.0


def competitor_blocks() -> list[Block]:
    """Every block of the pages with a runs-with marker."""
    return [block for page in pages() for block in blocks_of(page) if block.runs_with]


def framework(block: Block) -> str:
    """The project name of the block's first requirement: ``dbos``, ``celery``, ..."""
    assert block.runs_with is not None
    return re.split(r"[\[=]", block.runs_with.split()[0])[0].lower()


# ------------------------------------------------------------------ the venvs


def venv_home(requirements: str) -> Path:
    """The cache directory of the venv for ``requirements`` on this Python."""
    key = f"{sys.base_prefix} {sys.implementation.cache_tag} {platform.machine()} {requirements}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    name = re.split(r"[\[=]", requirements.split()[0])[0].lower()
    return CACHE / f"{name}-{digest}"


def ensure_venv(requirements: str) -> Path:
    """The interpreter of the venv for ``requirements``, built the first time (under a
    lock, so that a concurrent caller waits for it rather than building it too)."""
    home = venv_home(requirements)
    python = home / "bin" / "python"
    complete = home / ".complete"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{home.name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists() and python.exists():
            return python
        shutil.rmtree(home, ignore_errors=True)  # a build that was cut short
        # The venv gets no pip of its own when this interpreter has one to lend
        # (pip --python), which saves seconds per venv.
        if importlib.util.find_spec("pip") is not None:
            create = [sys.executable, "-m", "venv", "--without-pip", str(home)]
            pip = [sys.executable, "-m", "pip", "--python", str(python)]
        else:
            create = [sys.executable, "-m", "venv", str(home)]
            pip = [str(python), "-m", "pip"]
        install = [*pip, "install", "--quiet", "--disable-pip-version-check"]
        started = time.monotonic()
        for argv in (create, [*install, *requirements.split()]):
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=BUILD_DEADLINE, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"building the venv for {requirements} failed: {shlex.join(argv)}\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                )
        complete.write_text(requirements + "\n", encoding="utf-8")
        print(f"built {home} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return python


@pytest.fixture(scope="session")
def venvs() -> dict[str, Path]:
    """The interpreter for each runs-with marker's requirements, all built in parallel."""
    wanted = sorted({block.runs_with for block in competitor_blocks() if block.runs_with})
    with ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
        return dict(zip(wanted, pool.map(ensure_venv, wanted), strict=True))


# ------------------------------------------------------------------ processes


class Process:
    """A program's process in a session of its own; its stdout lines are collected by a
    thread (so they can be waited for), its stderr goes to a file, or to stdout too with
    ``merged``."""

    def __init__(
        self, argv: list[str], cwd: Path, env: dict[str, str], log: Path, merged: bool
    ) -> None:
        self.argv = argv
        self.log = log
        self.lines: list[str] = []
        self._fresh: queue.Queue[str | None] = queue.Queue()
        self._stderr = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed by kill)
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else self._stderr,
            text=True,
            start_new_session=True,
        )
        assert self.popen.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._fresh.put(line.rstrip("\n"))
        self._fresh.put(None)

    def wait_for(self, wanted: Callable[[str], bool], deadline: float) -> bool:
        """True once the process has printed a line that is ``wanted``; False at its exit
        or the deadline."""
        while not any(map(wanted, self.lines)):
            try:
                line = self._fresh.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if line is None:
                return False
            self.lines.append(line)
        return True

    def finish(self, deadline: float) -> int | None:
        """Its exit code once it has ended and printed everything; None at the deadline."""
        try:
            code = self.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=max(0.0, deadline - time.monotonic()))
        while not self._fresh.empty():
            line = self._fresh.get()
            if line is not None:
                self.lines.append(line)
        return code

    def kill(self) -> None:
        """Kill its whole process group (a worker's children too) and reap it."""
        with contextlib.suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self._stderr.close()

    def report(self) -> str:
        err = self.log.read_text(encoding="utf-8", errors="replace")
        out = "\n".join(self.lines)
        return f"$ {shlex.join(self.argv)}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-6000:]}"


class Run:
    """The processes of one program run, killed at its end."""

    def __init__(self, python: Path, workdir: Path, env: dict[str, str]) -> None:
        self.python = python
        self.workdir = workdir
        self.env = env
        self.procs: list[Process] = []

    def start(self, *args: str, merged: bool = False) -> Process:
        log = self.workdir / f"stderr-{len(self.procs)}.log"
        proc = Process([str(self.python), *args], self.workdir, self.env, log, merged)
        self.procs.append(proc)
        return proc

    def complete(self, *args: str) -> Process:
        """Run to its end, which must be a success within the deadline."""
        proc = self.start(*args)
        code = proc.finish(time.monotonic() + RUN_DEADLINE)
        assert code == 0, f"exit {code}:\n{self.report()}"
        return proc

    def report(self) -> str:
        return "\n\n".join(proc.report() for proc in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()


def shell_commands(block: Block) -> list[list[str]]:
    """The commands of the block's trailing ``# shell:`` comment, each as an argv; a
    note in parentheses after a command is left out."""
    found: list[list[str]] = []
    inside = False
    for line in block.source.splitlines():
        if line.startswith("# shell:"):
            inside = True
            line = line[len("# shell:") :]
        elif inside and line.startswith("#"):
            line = line[1:]
        else:
            inside = False
            continue
        found.append(shlex.split(re.sub(r"\(.*\)\s*$", "", line)))
    assert found, f"{block.where}: the block should end with a '# shell:' comment"
    return found


def command(block: Block, tool: str, subcommand: str) -> list[str]:
    """The arguments after ``tool`` of the block's shell command with ``subcommand``."""
    for argv in shell_commands(block):
        if argv[0] == tool and subcommand in argv:
            return argv[1:]
    raise AssertionError(f"{block.where}: no '{tool} ... {subcommand}' in its shell comment")


# ------------------------------------------------------------------ the frameworks


def sqlalchemy_url(url: str) -> str:
    """``url`` for SQLAlchemy with psycopg 3 (``postgresql+psycopg://``)."""
    scheme, sep, rest = url.partition("://")
    assert sep and scheme in ("postgresql", "postgres"), f"not a postgresql URL: {scheme}"
    return f"postgresql+psycopg://{rest}"


def run_dbos(block: Block, run: Run, database_url: str, wanted: str) -> None:
    run.env["DBOS_SYSTEM_DATABASE_URL"] = database_url
    lines = run.complete("shop.py").lines
    assert lines and lines[-1] == wanted, run.report()
    # What get_event saw: the status set before the charge, or the one after it.
    assert lines[0] in ("charging", "waiting for approval"), run.report()


def run_celery(block: Block, run: Run, database_url: str, wanted: str) -> None:
    run.env["CELERY_BROKER_URL"] = "sqla+" + sqlalchemy_url(database_url)
    run.env["CELERY_RESULT_BACKEND"] = "db+" + sqlalchemy_url(database_url)
    worker = run.start("-m", "celery", *command(block, "celery", "worker"), merged=True)
    # Ready: it has made kombu's tables in the empty database. (Made by the program
    # and the worker at once, they can collide: kombu does not retry.)
    ready = worker.wait_for(lambda line: line.endswith(" ready."), time.monotonic() + RUN_DEADLINE)
    assert ready, f"the worker did not start:\n{run.report()}"
    lines = run.complete("shop.py").lines
    assert worker.popen.poll() is None, f"the worker stopped:\n{run.report()}"
    assert lines and lines[-1] == wanted, run.report()


def run_procrastinate(block: Block, run: Run, database_url: str, wanted: str) -> None:
    run.env["DATABASE_URL"] = database_url
    run.complete("-m", "procrastinate", *command(block, "procrastinate", "schema"))
    run.complete("shop.py")
    worker = run.start("-m", "procrastinate", *command(block, "procrastinate", "worker"))
    assert worker.wait_for(wanted.__eq__, time.monotonic() + RUN_DEADLINE), run.report()


RUNNERS: dict[str, Callable[[Block, Run, str, str], None]] = {
    "dbos": run_dbos,
    "celery": run_celery,
    "procrastinate": run_procrastinate,
}


# ------------------------------------------------------------------ the tests


@pytest.fixture
def database(pg_url: str) -> Iterator[str]:
    """The URL of a database of the test server made for this test, dropped after it."""
    name = f"doc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(pg_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def durably_last_line(page: Path, pg_url: str, schema: str, tmp_path: Path) -> str:
    """The last line printed by the page's own python blocks, run as test_doc_blocks.py
    runs them (the other framework's block left out)."""
    own = [
        block
        for block in blocks_of(page)
        if block.lang == "python" and block.not_run is None and block.runs_with is None
    ]
    assert own, f"{shown(page)} has no durably block to compare with"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    spec = tmp_path / "durably-blocks.json"
    spec.write_text(json.dumps([asdict(block) for block in own]), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    env["DURABLY_DATABASE_URL"] = pg_url
    env["DURABLY_SCHEMA"] = schema
    env["PGOPTIONS"] = f"-c search_path={schema}"
    src = str(test_doc_blocks.ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    workdir = tmp_path / "durably"
    workdir.mkdir()
    done = subprocess.run(
        [sys.executable, test_doc_blocks.__file__, str(spec)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=test_doc_blocks.PAGE_DEADLINE,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    lines = done.stdout.splitlines()
    assert lines, f"{shown(page)}: durably's version printed nothing"
    return lines[-1]


@pytest.mark.timeout(BUILD_DEADLINE + 3 * RUN_DEADLINE)
@pytest.mark.parametrize(
    "block", competitor_blocks(), ids=lambda block: f"{shown(Path(block.path))}:{block.line}"
)
def test_the_other_frameworks_program_runs(
    block: Block,
    venvs: dict[str, Path],
    database: str,
    pg_url: str,
    schema: str,
    tmp_path: Path,
) -> None:
    runner = RUNNERS.get(framework(block))
    assert runner is not None, f"{block.where}: no runner for {framework(block)} here"
    wanted = durably_last_line(Path(block.path), pg_url, schema, tmp_path)
    assert block.runs_with is not None
    workdir = tmp_path / framework(block)
    workdir.mkdir()
    # The page's line numbers: blank lines before the block's first one.
    (workdir / "shop.py").write_text("\n" * (block.line - 1) + block.source, encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DURABLY_", "PG")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(PYTHONPATH=str(workdir), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    run = Run(venvs[block.runs_with], workdir, env)
    try:
        runner(block, run, database, wanted)
    finally:
        run.close()


def test_every_migrating_page_runs_its_other_program() -> None:
    """Each page of docs/migrating/ has one runs-with block, with a runner here."""
    migrating = sorted((test_doc_blocks.ROOT / "docs" / "migrating").glob("*.md"))
    assert migrating
    for page in migrating:
        marked = [block for block in blocks_of(page) if block.runs_with]
        assert len(marked) == 1, f"{shown(page)}: {len(marked)} runs-with blocks, not 1"
        assert framework(marked[0]) in RUNNERS, marked[0].where


def test_a_venv_is_keyed_by_its_requirements() -> None:
    one = venv_home("dbos==3.4.0")
    assert one == venv_home("dbos==3.4.0")
    assert one != venv_home("dbos==3.3.0")
    assert one.parent == CACHE and one.name.startswith("dbos-")
    assert venv_home("celery[sqlalchemy]==5.7.0 psycopg[binary]==3.3.9").name.startswith("celery-")
