"""Every ```python and ```sql block of README.md and docs/**/*.md runs: one test per page.

A page's blocks run in order, python ones in one namespace, in one fresh Python process whose
``DURABLY_DATABASE_URL`` and ``DURABLY_SCHEMA`` name the test server and this test's
schema (so ``durably.App()`` uses them), whose working directory is a temporary one, and
whose ``search_path`` (``PGOPTIONS``) is that schema, so tables a page makes for its
examples stay in the schema and go with it. A block may ``await`` at its top level, as in
``python -m asyncio``: it then runs in an event loop of its own. A sql block runs as one
script on a connection of its own, the schema ``durably`` it names being the test's.

The line before a block's opening fence may hold a marker:

- ``<!-- not-run: why -->``: the block is not run (it needs a Kafka broker, it is a
  signature, it creates a role of the whole server); the why is required and reported;
- ``<!-- raises: ExceptionName -->``: the block must raise exactly that exception (by its
  class name; for sql, psycopg's, e.g. ``RaiseException``), which is then caught and the
  page goes on;
- ``<!-- runs-with: dbos==3.4.0 -->``: the block is another framework's program (the
  pinned pip requirements it needs, separated by spaces); it is not run here, in
  durably's process, but by tests/test_doc_competitors.py, in a virtual environment of
  its own made for those requirements.

A failure names the block's file and line; the traceback's lines are the page's own.
``python tests/test_doc_blocks.py --summary`` prints each page's count of blocks run
and not run.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The seconds one page's blocks may take together, start of the process included.
PAGE_DEADLINE = 60.0

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not-run|raises|runs-with)\s*:?(?P<what>.*?)-->\s*$")
# One pinned pip requirement of a runs-with marker: name, extras, ``==`` and a version.
PINNED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!_-]+")
# The languages of the blocks that run.
RUN = ("python", "sql")
# Blocks of commands or of other languages: each is run by a test of its own
# (``console`` transcripts of ``$ durably``: tests/test_doc_console.py; the ``js`` block
# of docs/sql-api.md: tests/test_doc_node.py) or says why it is not.
COMMANDS = ("sh", "bash", "shell", "console", "go", "js")
RUN_ELSEWHERE = {"console": "test_doc_console.py", "js": "test_doc_node.py"}
# What the driver writes on stderr before each block, so a deadline names the block.
PROGRESS = "doc-block> "


@dataclass(frozen=True)
class Block:
    """One fenced python block: where it is, its code, and what its marker asks."""

    path: str  # absolute, so tracebacks can show the page's own lines
    line: int  # the 1-based line of the block's first line of code
    source: str  # dedented to the fence's indentation; as many lines as on the page
    not_run: str | None = None  # the why of a not-run marker
    raises: str | None = None  # the exception's class name of a raises marker
    lang: str = "python"  # or "sql"
    runs_with: str | None = None  # the requirements of a runs-with marker, space-separated

    @property
    def where(self) -> str:
        return f"{shown(Path(self.path))}:{self.line}"


def shown(page: Path) -> str:
    """A page's path as a person finds it: from the repository's root."""
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def pages() -> list[Path]:
    """README.md and every page of the site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(page: Path) -> list[Block]:
    """The python blocks of ``page`` with their markers; ValueError for a malformed one."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for number, text in enumerate(lines, 1):
        following = FENCE.match(lines[number]) if number < len(lines) else None
        if MARKER.match(text) and following is None:
            raise ValueError(
                f"{shown(page)}:{number}: a marker must be on the line just before its "
                f"block's opening fence"
            )
    found: list[Block] = []
    at = 0
    while at < len(lines):
        opening = FENCE.match(lines[at])
        if opening is None:
            at += 1
            continue
        indent, ticks, lang = opening["indent"], opening["ticks"], opening["lang"]
        end = at + 1
        while end < len(lines) and not re.fullmatch(
            rf"[ \t]*{re.escape(ticks[0])}{{{len(ticks)},}}\s*", lines[end]
        ):
            end += 1
        if end == len(lines):
            raise ValueError(f"{shown(page)}:{at + 1}: a fence that never closes")
        marker = MARKER.match(lines[at - 1]) if at else None
        # Commands and other languages may be marked not-run (test_every_command_block_
        # is_run_or_says_why); only the blocks run here can be expected to raise.
        not_run = marker is not None and marker["kind"] == "not-run" and lang in COMMANDS
        if marker is not None and lang not in RUN and not not_run:
            raise ValueError(
                f"{shown(page)}:{at}: a {marker['kind']} marker before a "
                f"{lang or 'plain'} block: only python and sql blocks run (and a command "
                f"block, {', '.join(COMMANDS)}, may be marked not-run)"
            )
        if lang in ("py", "python3", "pycon", "ipython"):
            raise ValueError(
                f"{shown(page)}:{at + 1}: write ```python (a {lang} block would not be run)"
            )
        if lang in RUN:
            body = [_dedent(text, indent) for text in lines[at + 1 : end]]
            found.append(_block(page, at, body, marker, lang))
        at = end + 1
    return found


def unexplained_commands(page: Path) -> list[str]:
    """Where ``page`` has a command block no test runs and no marker explains."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    fenced: str | None = None  # the fence of the block we are in
    for number, text in enumerate(lines, 1):
        opening = FENCE.match(text)
        if fenced is not None:
            if re.fullmatch(rf"[ \t]*{re.escape(fenced[0])}{{{len(fenced)},}}\s*", text):
                fenced = None
            continue
        if opening is None:
            continue
        fenced = opening["ticks"]
        lang = opening["lang"]
        marker = MARKER.match(lines[number - 2]) if number > 1 else None
        if lang not in COMMANDS or (marker is not None and marker["kind"] == "not-run"):
            continue
        if lang == "console" and any(line.startswith("$ durably") for line in lines[number:]):
            continue  # test_doc_console.py runs it, or refuses it with its reason
        if lang == "js" and page.name == "sql-api.md":
            continue  # test_doc_node.py
        found.append(
            f"{shown(page)}:{number}: a ```{lang} block no test runs: run it, or say why "
            f"not with <!-- not-run: why --> on the line before"
        )
    return found


def test_every_command_block_is_run_or_says_why() -> None:
    missing = [where for page in pages() for where in unexplained_commands(page)]
    assert not missing, "\n".join(missing)


def _dedent(text: str, indent: str) -> str:
    return text[len(indent) :] if text.startswith(indent) else text.lstrip()


def _block(
    page: Path, fence_at: int, body: list[str], marker: re.Match[str] | None, lang: str
) -> Block:
    where = f"{shown(page)}:{fence_at}"
    not_run = raises = runs_with = None
    if marker is not None:
        what = marker["what"].strip()
        if marker["kind"] == "not-run":
            if not what:
                raise ValueError(f"{where}: a not-run marker must say why")
            not_run = what
        elif marker["kind"] == "runs-with":
            if lang != "python" or not what or not all(map(PINNED.fullmatch, what.split())):
                raise ValueError(
                    f"{where}: a runs-with marker goes before a python block and names "
                    f"pinned pip requirements (name==version), got {what!r}"
                )
            runs_with = " ".join(what.split())
        elif not re.fullmatch(r"[A-Za-z_][\w.]*", what):
            raise ValueError(f"{where}: a raises marker names one exception class, got {what!r}")
        else:
            raises = what.rpartition(".")[2]
    source = "\n".join(body) + "\n"
    return Block(str(page), fence_at + 2, source, not_run, raises, lang, runs_with)


def _pages_with_blocks() -> list[Path]:
    with_blocks = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        if re.search(r"^[ \t]*(`{3,}|~{3,})\s*(python|sql)\s*$", text, re.M):
            with_blocks.append(page)
    return with_blocks


@pytest.mark.parametrize("page", _pages_with_blocks(), ids=lambda page: str(page.relative_to(ROOT)))
def test_page_blocks_run(page: Path, pg_url: str, schema: str, tmp_path: Path) -> None:
    blocks = blocks_of(page)
    runnable = [block for block in blocks if block.not_run is None and block.runs_with is None]
    elsewhere = [block for block in blocks if block.runs_with is not None]
    for block in blocks:
        if block.not_run is not None:
            print(f"not run: {block.where}: {block.not_run}")
        elif block.runs_with is not None:
            print(f"run by test_doc_competitors.py: {block.where}: {block.runs_with}")
    print(f"{shown(page)}: {_counts(len(blocks), len(runnable), len(elsewhere))}")
    if not runnable:
        return
    # The page's own tables go into the test's schema: it must exist before durably
    # makes its tables there.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(schema))
        )
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps([asdict(block) for block in runnable]), encoding="utf-8")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = dict(os.environ)
    for name in ("DURABLY_APP_VERSION", "DURABLY_RECOVER_VERSIONS", "DURABLY_DASHBOARD_TOKEN"):
        env.pop(name, None)
    env["DURABLY_DATABASE_URL"] = pg_url
    env["DURABLY_SCHEMA"] = schema
    env["PGOPTIONS"] = f"-c search_path={schema}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(spec)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=PAGE_DEADLINE)
    except subprocess.TimeoutExpired:
        # The whole group: a block may have started processes of its own.
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        started = [line for line in err.splitlines() if line.startswith(PROGRESS)]
        running = started[-1][len(PROGRESS) :] if started else "(before the first block)"
        pytest.fail(
            f"{shown(page)}: the blocks did not finish within {PAGE_DEADLINE:.0f} s; "
            f"running: {running}\n{_tail(out, err)}"
        )
    assert child.returncode == 0, _tail(out, err)
    print(_tail(out, err))  # shown with -rP: what the blocks printed and logged


def _counts(blocks: int, run: int, elsewhere: int) -> str:
    other = f", {elsewhere} run with another framework" if elsewhere else ""
    return f"{run} run{other}, {blocks - run - elsewhere} not run"


def _tail(out: str, err: str) -> str:
    # The progress lines stay: they say which block logged what.
    return f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-12000:]}"


def test_markers_are_well_formed() -> None:
    """Every page parses: fences close, markers sit before python blocks and say why."""
    for page in pages():
        blocks_of(page)


def run_spec(spec: Path) -> subprocess.CompletedProcess[str]:
    """This file run as the runner on the blocks listed in ``spec``, in its directory."""
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(spec)],
        cwd=spec.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_runner_reads_markers_and_names_the_failing_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\nx = 1\n```\n\n<!-- not-run: needs a broker -->\n"
        "```python\nconnect()\n```\n\n1. A list:\n\n   <!-- raises: ZeroDivisionError -->\n"
        "   ```python\n   x / 0\n   ```\n\n```sh\nls\n```\n\n```python\n\ny = x + 1\n"
        "assert y == 3, y\n```\n\n<!-- runs-with: celery[sqlalchemy]==5.7.0  kombu==5.7.0 -->\n"
        "```python\nfrom celery import Celery\n```\n",
        encoding="utf-8",
    )
    blocks = blocks_of(page)
    assert [(b.line, b.not_run, b.raises, b.runs_with) for b in blocks] == [
        (4, None, None, None),
        (9, "needs a broker", None, None),
        (16, None, "ZeroDivisionError", None),
        (24, None, None, None),
        (31, None, None, "celery[sqlalchemy]==5.7.0 kombu==5.7.0"),
    ]
    assert blocks[2].source == "x / 0\n"
    spec = tmp_path / "blocks.json"
    # As the page's test does: a runs-with block is left to tests/test_doc_competitors.py.
    spec.write_text(
        json.dumps([asdict(b) for b in blocks if b.not_run is None and b.runs_with is None])
    )
    done = run_spec(spec)
    assert done.returncode == 1
    assert f'File "{page}", line 26' in done.stderr, done.stderr
    assert "assert y == 3, y" in done.stderr  # the page's own line, shown
    assert f"the block at {page}:24 failed" in done.stderr
    # A raises marker whose block raises nothing, or something else, fails the page.
    for code, said in (("pass\n", "should raise KeyError"), ("1 / 0\n", "(expected KeyError)")):
        wrong = Block(str(page), 1, code, raises="KeyError")
        spec.write_text(json.dumps([asdict(wrong)]))
        done = run_spec(spec)
        assert done.returncode == 1 and said in done.stderr, done.stderr
    for bad, why in (
        ("<!-- not-run: -->\n```python\npass\n```\n", "must say why"),
        ("<!-- raises: -->\n```python\npass\n```\n", "one exception class"),
        ("<!-- raises: KeyError -->\n```sh\nls\n```\n", "only python and sql blocks run"),
        ("<!-- not-run: shell -->\n```text\nls\n```\n", "only python and sql blocks run"),
        ("```python\npass\n", "never closes"),
        ("<!-- not-run: far -->\n\n```python\npass\n```\n", "the line just before"),
        ("```py\npass\n```\n", "write ```python"),
        ("<!-- runs-with: celery -->\n```python\npass\n```\n", "pinned pip requirements"),
        ("<!-- runs-with: -->\n```python\npass\n```\n", "pinned pip requirements"),
        ("<!-- runs-with: dbos==3.4.0 -->\n```sql\nSELECT 1;\n```\n", "before a python block"),
    ):
        page.write_text(bad, encoding="utf-8")
        with pytest.raises(ValueError, match=why):
            blocks_of(page)


# ----------------------------------------------------------------- the driver process


def _drive(spec: Path) -> int:
    """Run the blocks listed in ``spec`` in order in one namespace; 0 if all went well."""
    blocks = [Block(**fields) for fields in json.loads(spec.read_text(encoding="utf-8"))]
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for block in blocks:
        print(f"{PROGRESS}{block.where}", file=sys.stderr, flush=True)
        try:
            _run(block, namespace)
        except BaseException as error:
            if block.raises is not None and type(error).__name__ == block.raises:
                continue
            traceback.print_exc()
            expected = f" (expected {block.raises})" if block.raises else ""
            print(f"\nthe block at {block.where} failed{expected}", file=sys.stderr)
            return 1
        if block.raises is not None:
            print(f"\nthe block at {block.where} should raise {block.raises}", file=sys.stderr)
            return 1
    return 0


def _run(block: Block, namespace: dict[str, Any]) -> None:
    if block.lang == "sql":
        _run_sql(block)
        return
    # Blank lines in front: the code's line numbers are the page's.
    code = compile(
        "\n" * (block.line - 1) + block.source,
        block.path,
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))  # top-level await: a coroutine to run
    else:
        exec(code, namespace)


def _run_sql(block: Block) -> None:
    """The block as one script (several statements, one round trip), in autocommit, on
    the test's database; ``durably.`` and ``SCHEMA durably`` name the test's schema."""
    schema = '"' + os.environ["DURABLY_SCHEMA"].replace('"', '""') + '"'
    script = re.sub(r"\bdurably\.(?=\w)", schema + ".", block.source)
    script = re.sub(r"\bSCHEMA durably\b", "SCHEMA " + schema, script)
    with psycopg.connect(os.environ["DURABLY_DATABASE_URL"], autocommit=True) as conn:
        try:
            conn.execute(script.encode())
        except psycopg.Error as error:
            print(f"{block.where}: {type(error).__name__}: {error}", file=sys.stderr)
            raise


def _summary() -> None:
    for page in pages():
        blocks = blocks_of(page)
        if blocks:
            skipped = sum(block.not_run is not None for block in blocks)
            elsewhere = sum(block.runs_with is not None for block in blocks)
            run = len(blocks) - skipped - elsewhere
            print(f"{shown(page)}: {_counts(len(blocks), run, elsewhere)}")
            for block in blocks:
                if block.not_run is not None:
                    print(f"  not run: {block.where}: {block.not_run}")
                elif block.runs_with is not None:
                    print(f"  run with {block.runs_with}: {block.where}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        _summary()
    else:
        sys.exit(_drive(Path(sys.argv[1])))
