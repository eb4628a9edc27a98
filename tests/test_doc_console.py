"""Every ```console transcript of README.md and docs/**/*.md runs: one test per page.

A transcript is a ```console block of ``$ durably ...`` lines, each followed by what
the command prints (stdout and stderr, in the order written) until the next ``$`` line
or the fence; a command continues onto the next line after a trailing ``\\``. Each
command runs as the real ``durably`` command line (``python -m durably.cli``), in page
order, on one fresh schema of the test server per page, so what one command changes the
next sees. ``DURABLY_DATABASE_URL`` and ``DURABLY_SCHEMA`` name them (a shown command
needs no ``--database-url``), ``TZ`` is UTC and the terminal 120 columns wide.
``--schema durably`` names the page's schema, and another ``--schema NAME`` a schema of
the test's own (dropped after it); in what a command prints, those names read
``durably`` and ``NAME`` again.

Before a page's commands, tests/doc_console_data.py makes the data they show (the
workflows, queues and schedules of docs/cli.md, ...); a page without a function there
gets an empty, migrated schema.

What is printed is compared doctest-like: a line ``...`` matches any number of lines,
``...`` within a line any text, and the spaces on either side of it one space or more
(a column of a table stays aligned on the page whatever the width of its value);
trailing whitespace and trailing blank lines do not count. Every mismatch of the page
is reported, with its file:line, the command, and what was expected and printed. The
exit code is not compared (a refusal shows its one line on stderr).

A console block that shows no ``durably`` command (a shell recipe, ``pip install``,
``psql``) is marked ``<!-- not-run: why -->`` on the line before its fence, as in
tests/test_doc_blocks.py; an unmarked console block must be a transcript. A list of
commands with no output is better written as a ```sh block, which nothing runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import durably
from doc_console_data import SETUPS
from test_doc_blocks import FENCE, MARKER, ROOT, pages, shown

# The seconds one command may take.
COMMAND_DEADLINE = 60.0
# The width of the pretend terminal: tables wrap their long cells to it.
COLUMNS = "120"
PROMPT = "$ "
ELLIPSIS = "..."


@dataclass(frozen=True)
class Command:
    """One ``$ durably ...`` of a transcript and what the page shows it prints."""

    line: int  # 1-based, the line of the ``$``
    text: str  # as shown, continuation lines joined
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Transcript:
    """One ```console block: its commands, or why it is not run."""

    line: int  # 1-based, the line of the opening fence
    commands: tuple[Command, ...]
    not_run: str | None = None


def transcripts_of(page: Path) -> list[Transcript]:
    """The console blocks of ``page``; ValueError for one that is neither marked
    not-run nor a transcript of ``durably`` commands."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Transcript] = []
    at = 0
    while at < len(lines):
        opening = FENCE.match(lines[at])
        if opening is None:
            at += 1
            continue
        ticks = opening["ticks"]
        end = at + 1
        while end < len(lines) and not re.fullmatch(
            rf"[ \t]*{re.escape(ticks[0])}{{{len(ticks)},}}\s*", lines[end]
        ):
            end += 1
        if opening["lang"] == "console":
            where = f"{shown(page)}:{at + 1}"
            marker = MARKER.match(lines[at - 1]) if at else None
            body = [_dedent(text, opening["indent"]) for text in lines[at + 1 : end]]
            if marker is not None:
                if marker["kind"] != "not-run" or not marker["what"].strip():
                    raise ValueError(
                        f"{where}: a console block takes only a not-run marker, with its why"
                    )
                found.append(Transcript(at + 1, (), marker["what"].strip()))
            else:
                found.append(Transcript(at + 1, _commands(where, at + 2, body)))
        at = end + 1
    return found


def _dedent(text: str, indent: str) -> str:
    return text[len(indent) :] if text.startswith(indent) else text.lstrip()


def _commands(where: str, first: int, body: list[str]) -> tuple[Command, ...]:
    """The ``$`` commands of a block whose first line is line ``first`` of the page."""
    commands: list[Command] = []
    at = 0
    while at < len(body):
        text = body[at]
        if not text.startswith(PROMPT):
            if text.strip() and not commands:
                raise ValueError(
                    f"{where}: a console block starts with a '$ durably ...' line; mark one "
                    f"that is not a transcript <!-- not-run: why --> (or make it ```sh)"
                )
            at += 1
            continue
        start = at
        shown_text = text[len(PROMPT) :]
        while shown_text.endswith("\\") and at + 1 < len(body):
            at += 1
            shown_text = shown_text[:-1].rstrip() + " " + body[at].strip()
        at += 1
        output_end = at
        while output_end < len(body) and not body[output_end].startswith(PROMPT):
            output_end += 1
        if shlex.split(shown_text)[:1] != ["durably"]:
            raise ValueError(
                f"{where}: line {first + start}: '{shown_text}' is not a durably command; "
                f"mark the block <!-- not-run: why --> (or make it ```sh)"
            )
        commands.append(Command(first + start, shown_text, tuple(body[at:output_end])))
        at = output_end
    if not commands:
        raise ValueError(
            f"{where}: a console block with no '$ durably ...' line; mark it "
            f"<!-- not-run: why --> (or make it ```sh)"
        )
    return tuple(commands)


def matches(expected: tuple[str, ...] | list[str], printed: str) -> bool:
    """Whether ``printed`` is what ``expected`` shows: a line ``...`` stands for any
    lines, ``...`` within a line for any text, and the spaces on either side of it for
    one or more (so a table's columns stay aligned); trailing whitespace does not count."""
    pattern = []
    for line in _trimmed(list(expected)):
        if line.strip() == ELLIPSIS:
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            # text, spaces before, spaces after, text, ...
            pieces = re.split(r"( *)\.\.\.( *)", line)
            regex = re.escape(pieces[0])
            for at in range(1, len(pieces), 3):
                before, after, text = pieces[at : at + 3]
                regex += (" +" if before else "") + "[^\n]*?" + (" +" if after else "")
                regex += re.escape(text)
            pattern.append(regex + "\n")
    got = "".join(line + "\n" for line in _trimmed(printed.splitlines()))
    return re.fullmatch("".join(pattern), got) is not None


def _trimmed(lines: list[str]) -> list[str]:
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _pages_with_transcripts() -> list[Path]:
    return [page for page in pages() if any(t.commands for t in transcripts_of(page))]


class Schemas:
    """The page's schema (``durably`` in what it shows) and the others its commands name."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.named: dict[str, str] = {"durably": schema}  # as shown -> as run

    def run_name(self, name: str) -> str:
        return self.named.setdefault(name, f"{self.schema}_{name}")

    def as_shown(self, printed: str) -> str:
        for shown_name, run_name in sorted(self.named.items(), key=lambda kv: -len(kv[1])):
            printed = printed.replace(run_name, shown_name)
        return printed

    def argv(self, text: str) -> list[str]:
        words = shlex.split(text)
        for at, word in enumerate(words):
            if at and words[at - 1] == "--schema":
                words[at] = self.run_name(word)
            elif word.startswith("--schema="):
                words[at] = "--schema=" + self.run_name(word.partition("=")[2])
        return [sys.executable, "-m", "durably.cli", *words[1:]]

    def drop_others(self, pg_url: str) -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for name in self.named.values():
                if name != self.schema:
                    conn.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                    )


def _environment(pg_url: str, schema: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DURABLY_APP_VERSION", "DURABLY_RECOVER_VERSIONS", "DURABLY_DASHBOARD_TOKEN"):
        env.pop(name, None)
    env.update(
        DURABLY_DATABASE_URL=pg_url,
        DURABLY_SCHEMA=schema,
        TZ="UTC",
        COLUMNS=COLUMNS,
        PYTHONUNBUFFERED="1",  # stdout and stderr interleave as written
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p),
    )
    env.pop("LINES", None)
    return env


@pytest.mark.parametrize(
    "page", _pages_with_transcripts(), ids=lambda page: str(page.relative_to(ROOT))
)
def test_page_transcripts_print_what_they_show(
    page: Path, pg_url: str, schema: str, tmp_path: Path
) -> None:
    transcripts = transcripts_of(page)
    for transcript in transcripts:
        if transcript.not_run is not None:
            print(f"not run: {shown(page)}:{transcript.line}: {transcript.not_run}")
    setup = SETUPS.get(shown(page))
    if setup is not None:
        setup(pg_url, schema)
    else:
        with durably.Client(pg_url, schema=schema) as client:
            client.list_workflows(limit=1)  # an empty, migrated schema
    schemas = Schemas(schema)
    env = _environment(pg_url, schema)
    wrong: list[str] = []
    try:
        for transcript in transcripts:
            for command in transcript.commands:
                done = subprocess.run(
                    schemas.argv(command.text),
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=COMMAND_DEADLINE,
                    check=False,
                )
                printed = schemas.as_shown(done.stdout)
                if not matches(command.expected, printed):
                    wrong.append(
                        f"{shown(page)}:{command.line}: $ {command.text}\n"
                        f"--- expected\n" + "\n".join(command.expected) + "\n"
                        f"--- printed (exit code {done.returncode})\n{printed}"
                    )
    finally:
        schemas.drop_others(pg_url)
    assert not wrong, f"{len(wrong)} transcript(s) differ:\n\n" + "\n\n".join(wrong)


def test_console_blocks_are_transcripts_or_marked() -> None:
    """Every page parses: each console block is a transcript of durably commands or is
    marked not-run with a why."""
    for page in pages():
        transcripts_of(page)


def test_the_matcher_and_the_parser(tmp_path: Path) -> None:
    assert matches(["a", "...", "z"], "a\nb\nc\nz\n")
    assert matches(["a", "...", "z"], "a\nz")
    assert matches(["took ... ms", "done"], "took 12 ms  \ndone\n\n")
    assert not matches(["a", "z"], "a\nb\nz")
    assert not matches(["took ... ms"], "took 12 s")
    assert matches(["a  ...     b"], "a  1234567  b")  # the column's padding varies
    assert matches(["a  ...  b"], "a      12b  b")  # right-aligned
    assert not matches(["a  ...  b"], "a  1234567b")
    assert not matches(["a ...b"], "a1b")
    assert not matches(["a"], "a\nb")
    assert matches([], "")
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```console\n$ durably queues \\\n    --minutes 5\nQUEUE\n...\n"
        "$ durably gc --older-than 1d\n```\n\n<!-- not-run: a shell -->\n```console\n"
        "$ ls\n```\n\n- a list:\n\n  ```console\n  $ durably doctor\n  LEVEL\n  ```\n",
        encoding="utf-8",
    )
    found = transcripts_of(page)
    assert [(t.line, t.not_run) for t in found] == [(3, None), (12, "a shell"), (18, None)]
    assert found[0].commands == (
        Command(4, "durably queues --minutes 5", ("QUEUE", "...")),
        Command(8, "durably gc --older-than 1d", ()),
    )
    assert found[2].commands == (Command(19, "durably doctor", ("LEVEL",)),)
    schemas = Schemas("t_1")
    assert schemas.argv("durably migrate --schema billing")[3:] == [
        "migrate",
        "--schema",
        "t_1_billing",
    ]
    assert schemas.as_shown("schema t_1_billing; schema t_1") == "schema billing; schema durably"
    for bad, why in (
        ("```console\nls\n```\n", "starts with a '\\$ durably"),
        ("```console\n$ ls -l\nx\n```\n", "not a durably command"),
        ("```console\n```\n", "no '\\$ durably"),
        ("<!-- raises: ValueError -->\n```console\n$ durably x\n```\n", "only a not-run"),
    ):
        page.write_text(bad, encoding="utf-8")
        with pytest.raises(ValueError, match=why):
            transcripts_of(page)
