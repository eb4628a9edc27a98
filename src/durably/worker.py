"""``durably worker MODULE:APP``: a process that runs an app's workflows and queued work.

It recovers and takes over workflows, claims from the app's queues (or those named),
fires schedules, and on SIGTERM or SIGINT stops claiming, lets running workflows finish
within a grace period (a second signal ends it), then releases the rest: its lease ends
in the database, so other workers take them over at their next heartbeat instead of
after the lease.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from durably.app import App
from durably.errors import ConfigurationError
from durably.runtime.engine import Engine


def load_app(target: str) -> App:
    """Import ``package.module:attribute`` (attribute defaults to ``app``)."""
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise ConfigurationError(
            f"expected MODULE:APP (e.g. myproject.workers:app), got {target!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a missing module, or one that fails while importing
        raise ConfigurationError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, App):
        raise ConfigurationError(
            f"{module_name}:{attribute or 'app'} is not a durably.App (found {type(app).__name__})"
        )
    return app


# The levels ``--log-level`` accepts (in any case).
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_level(text: str) -> int:
    """The logging level named ``text`` (DEBUG, INFO, WARNING, ERROR or CRITICAL)."""
    name = text.strip().upper()
    if name not in LEVELS:
        raise ConfigurationError(f"--log-level must be one of {', '.join(LEVELS)} (got {text!r})")
    return logging.getLevelNamesMapping()[name]


def set_up_logging(level: int) -> None:
    """durably's loggers log from ``level`` on; if the app set up no logging, records
    go to stderr, one line each (the app's own configuration, if any, is kept)."""
    logging.getLogger("durably").setLevel(level)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)


def run_worker(
    target: str,
    queues: Sequence[str] | None,
    grace: float,
    log_level: str = "INFO",
    executor_id: str | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> int:
    """Run a worker until SIGTERM or SIGINT; returns the exit code."""
    level = parse_level(log_level)
    app = load_app(target)
    if executor_id is not None:
        app.use_executor_id(executor_id)
    set_up_logging(level)
    if metrics_port is not None:
        try:
            app.serve_metrics(metrics_port, metrics_host)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}"
            ) from exc
        print(
            f"durably worker: metrics at http://{metrics_host}:{metrics_port}/metrics", flush=True
        )
    stop = threading.Event()
    engines: list[Engine] = []  # the launched engine, for a second signal to hurry

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            # A second signal: stop waiting for running workflows, release them now.
            print(f"durably worker: {name} again, releasing running workflows", file=sys.stderr)
            for engine in engines:
                engine.cut_grace()
            return
        print(f"durably worker: {name}, stopping", file=sys.stderr)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app.launch(queues=list(queues) if queues else None)
    engines.append(app.engine)
    listened = ", ".join(queues) if queues else "all"
    print(
        f"durably worker: executor {app.executor_id} ready (pid {os.getpid()}, queues: {listened})",
        flush=True,
    )
    while not stop.wait(3600):
        pass
    app.shutdown(grace=grace)
    print("durably worker: stopped", flush=True)
    return 0
