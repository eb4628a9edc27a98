"""The documentation site builds with warnings as errors, offline, and its API reference
names everything ``durably`` exports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import durably

ROOT = Path(__file__).resolve().parent.parent


def _build(site: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Material's banner about its future on stderr; it is no warning of the build's.
    env["NO_MKDOCS_2_WARNING"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_site_builds_strictly_with_a_complete_offline_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    built = _build(site)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "WARNING" not in built.stderr, built.stderr

    # Every public name has its entry (an anchor named by its public path).
    anchors: set[str] = set()
    for page in (site / "reference").rglob("*.html"):
        anchors |= set(re.findall(r'id="(durably\.[\w.]+)"', page.read_text(encoding="utf-8")))
    missing = [name for name in durably.__all__ if f"durably.{name}" not in anchors]
    assert not missing, f"not in the API reference: {missing}"
    # Sync methods come with their async twins.
    for twin in ("durably.App.send_async", "durably.Client.enqueue_async", "durably.recv_async"):
        assert twin in anchors, twin

    # Nothing is fetched from elsewhere when a page is read: no web fonts, no remote
    # scripts or stylesheets.
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in text, page
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', text)
        assert not remote, (page, remote)
