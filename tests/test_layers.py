"""The layer contract (DESIGN.md section 3, docs in README's Development section): imports
only point down, API -> runtime -> execution -> store -> codec -> shared values. An
upward import fails here, naming the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "durably"

# Top to bottom. A module may import from its own layer and any layer below it.
LAYERS = ("api", "runtime", "embedded", "execution", "store", "codec", "values")
PACKAGES = {"runtime", "execution", "store", "embedded", "codec"}
VALUES = {"errors", "status", "options", "queue_spec", "names"}

# Modules allowed to talk to the database driver outside the store: none.
DRIVER_OUTSIDE_STORE: set[str] = set()


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    if len(parts) > 1 and parts[1] in VALUES:
        return "values"
    return "api"


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(SRC).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imports(path: Path) -> list[tuple[str, int]]:
    """Every durably or psycopg module ``path`` imports (also under TYPE_CHECKING and
    inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            if node.module == "durably":  # from durably import codec: the subpackage
                found += [(f"durably.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_imports_only_point_down() -> None:
    upward = []
    for path in sources():
        here = module_name(path)
        for target, line in imports(path):
            if not target.startswith("durably.") or target.split(".")[1] not in (PACKAGES | VALUES):
                continue  # the API layer, or the package root: importable by nobody below
            if LAYERS.index(layer(target)) < LAYERS.index(layer(here)):
                upward.append(f"{path.relative_to(SRC)}:{line}: {here} -> {target}")
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_nothing_below_the_api_imports_the_api() -> None:
    api = {module_name(p) for p in sources() if layer(module_name(p)) == "api"}
    upward = []
    for path in sources():
        here = module_name(path)
        if layer(here) == "api":
            continue
        for target, line in imports(path):
            if target in api and target != "durably":
                upward.append(f"{path.relative_to(SRC)}:{line}: {here} -> {target}")
    assert not upward, "modules below the API that import it:\n" + "\n".join(upward)


def test_only_the_store_knows_the_driver() -> None:
    outside = []
    for path in sources():
        here = module_name(path)
        if layer(here) == "store" or here in DRIVER_OUTSIDE_STORE:
            continue
        for target, line in imports(path):
            if target.split(".")[0] in ("psycopg", "psycopg_pool"):
                outside.append(f"{path.relative_to(SRC)}:{line}: {here} imports {target}")
    assert not outside, "the database driver used outside the store:\n" + "\n".join(outside)


def test_the_contract_can_fail(tmp_path: Path) -> None:
    """The checks see a real upward import (so a passing run means something)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from durably.runtime.engine import Engine\nimport psycopg\n")
    targets = [target for target, _ in imports(bad)]
    assert "durably.runtime.engine" in targets and "psycopg" in targets
    assert LAYERS.index(layer("durably.runtime.engine")) < LAYERS.index(
        layer("durably.execution.protocol")
    )


def test_notification_kinds_are_spelled_once() -> None:
    """The .sql files take every notification kind from ``store.notifications.Kind``
    (``{kind_queued}``), never as a literal of their own."""
    import re

    spelled = []
    for path in sorted((PACKAGE / "store").rglob("*.sql")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"pg_notify\([^,]+,\s*'", line) or re.search(r"'[a-z]:'\s*\|\|", line):
                spelled.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not spelled, "notification kinds spelled in SQL:\n" + "\n".join(spelled)


def test_no_import_circle() -> None:
    """No module reaches itself through imports (also those only for type checking): a
    circle inside a layer makes its modules one lump that cannot be read in order."""
    modules = {module_name(p): p for p in sources()}

    def targets(name: str) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(modules[name].read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    # ``from durably.x import y`` names the module durably.x.y if there is one
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        return {t for t in found if t in modules and t != "durably"}

    graph = {name: targets(name) - {name} for name in modules}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    circles: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_every_module_says_what_it_owns() -> None:
    """Each module opens with a docstring whose first line says what it owns."""
    silent = [
        str(path.relative_to(SRC))
        for path in sources()
        if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    ]
    assert not silent, "modules without an opening docstring:\n" + "\n".join(silent)
