"""The app of ``durably worker queueprocs.worker_app:app``, configured by environment:
QP_DATABASE_URL, QP_SCHEMA, QP_GATES, QP_EFFECTS, and optionally QP_EXECUTOR_ID,
QP_LEASE (seconds, default 15) and QP_POLL (poll interval, default 0.5)."""

from __future__ import annotations

import os
from pathlib import Path

import durably
from queueprocs.jobs import register

app = durably.App(
    os.environ["QP_DATABASE_URL"],
    schema=os.environ["QP_SCHEMA"],
    executor_id=os.environ.get("QP_EXECUTOR_ID") or None,
    lease=float(os.environ.get("QP_LEASE", "15")),
    poll_interval=float(os.environ.get("QP_POLL", "0.5")),
)
jobs = register(app, Path(os.environ["QP_GATES"]), Path(os.environ["QP_EFFECTS"]))
not_an_app = "just a string"
