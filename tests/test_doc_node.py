"""The ```js block of docs/sql-api.md runs under Node.js with node-postgres, for real.

The block's functions are called by a small driver appended to it: it enqueues a welcome
on the ``emails`` queue twice (the second finds the first by its dedup key), waits for
the workflow's ``stage`` event, approves it, and approves a workflow that does not exist.
A worker of this test's own runs the workflow, which waits for that approval and returns
it. node-postgres is installed once per machine with npm from the npm registry into a
cache directory (``$DURABLY_NODE_CACHE``, default ``~/.cache/durably-tests/node``); the
machine's ``node`` and ``npm`` are used as they are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg

import durably
from test_doc_blocks import ROOT

PAGE = ROOT / "docs" / "sql-api.md"
PG_NODE = "pg@8"
NODE_DEADLINE = 60.0

DRIVER = """
(async () => {
  const id = await enqueueWelcome("ada@example.com");
  const again = await enqueueWelcome("ada@example.com");
  const deadline = Date.now() + 30000;
  let seen = await stage(id);
  while (seen.stage === null && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    seen = await stage(id);
  }
  await approve(id);
  let unknown = null;
  try {
    await approve("no-such-workflow");
  } catch (err) {
    unknown = err.message;
  }
  console.log(JSON.stringify({ id, again, seen, unknown }));
  await pool.end();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
"""


def js_block() -> str:
    """The one js block of the page, its ``durably.`` calls left to the caller."""
    text = PAGE.read_text(encoding="utf-8")
    found = re.findall(r"^```js\n(.*?)^```$", text, re.M | re.S)
    assert len(found) == 1, f"{PAGE.name} should hold one ```js block, found {len(found)}"
    return str(found[0])


def node_modules() -> Path:
    """A node_modules holding node-postgres, installed by npm on first use."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is needed to run the js block of {PAGE.name}"
    cache = Path(
        os.environ.get("DURABLY_NODE_CACHE", Path.home() / ".cache" / "durably-tests" / "node")
    )
    modules = cache / "node_modules"
    if not (modules / "pg" / "package.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), PG_NODE],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return modules


def libpq_env(url: str) -> dict[str, str]:
    """The PG* variables node-postgres reads, for the server of ``url``."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD"}
    env = {var: str(params[key]) for key, var in names.items() if params.get(key)}
    env["PGDATABASE"] = str(params.get("dbname") or "postgres")
    return env


def test_js_block_runs(pg_url: str, schema: str, tmp_path: Path) -> None:
    app = durably.App(pg_url, schema=schema)
    app.queue("emails")

    @app.workflow(name="send_welcome")
    def send_welcome(email: str) -> Any:
        durably.set_event("stage", {"name": "welcomed", "email": email})
        return durably.recv("approval", timeout=60)

    modules = node_modules()
    script = tmp_path / "sql_api.js"
    script.write_text(js_block().replace("durably.", f"{schema}.") + DRIVER, encoding="utf-8")
    env = {**os.environ, **libpq_env(pg_url), "NODE_PATH": str(modules)}
    with app:
        done = subprocess.run(
            ["node", str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_DEADLINE,
            check=False,
        )
        assert done.returncode == 0, f"node failed:\n{done.stdout}\n{done.stderr}"
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["again"] == seen["id"], "the dedup key should find the first enqueue"
        assert seen["seen"] == {
            "stage": {"name": "welcomed", "email": "ada@example.com"},
            "status": "PENDING",
        }
        assert seen["unknown"] == "no workflow no-such-workflow"
        result = app.handle(seen["id"]).result(timeout=30)
    assert result == {"approved": True}
