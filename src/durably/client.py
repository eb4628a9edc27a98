"""``durably.Client``: enqueue, send and observe from a process with no workflow code.

A web server or a script usually does not import the workers' code: it only starts work
and looks at it. The Client never runs a workflow; it shares every method of ``App``
that works by ID (``handle``, listings, ``send``, events, streams, ``cancel``,
``resume``, ``fork``, ``set_delay``, ``wait_first``: one implementation, in
``durably.control``), and enqueues by queue and workflow name. It lists and steers
schedules too, and triggers or backfills their ticks for the workers to run
(``durably.schedule_control``).
"""

from __future__ import annotations

import atexit
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from durably import codec as codec_module
from durably.batch import Run, as_runs, encode_runs, stamped
from durably.control import Control
from durably.errors import ConfigurationError
from durably.execution.effects import Protocol
from durably.execution.observe import stamp
from durably.execution.protocol import Started
from durably.execution.queueing import enqueue as enqueue_protocol
from durably.execution.queueing import enqueue_many as enqueue_many_protocol
from durably.execution.specs import WorkflowSpec
from durably.names import schema_or_default
from durably.options import WorkflowOptions, check_name
from durably.outbox import Outbox
from durably.retention import Retention
from durably.runtime.connect import open_database
from durably.runtime.engine import Engine
from durably.runtime.served import check_enqueued
from durably.schedule_control import ScheduleHandOver
from durably.store.redaction import database_shown
from durably.store.sqlfile import check_schema
from durably.twins import Job, twins
from durably.versions import Versions, client_scope
from durably.workflow import WorkflowHandle


def _unregistered(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("a Client never runs workflows")


class Client(Control, ScheduleHandOver, Outbox, Retention, Versions):
    """Start and observe workflows by name, from any process (sync, with ``_async`` twins).

    ``url``: a PostgreSQL URL; without one, ``$DURABLY_DATABASE_URL``, else the embedded
    server of ``data_dir`` (default ``./.durably``), exactly as for ``App``. ``schema`` and
    ``codec`` must be those of the workers' App (defaults: ``$DURABLY_SCHEMA``, else
    ``durably``; ``JsonCodec()``). Close it with ``close()`` or a ``with`` block.
    ``migrate=False``: never create or upgrade the schema (a ``ConfigurationError`` names
    a schema that is missing or behind); the command line opens its Clients so.
    ``app_version``: pin what this client enqueues to workers recovering that version
    (default: unpinned, the first worker to start it records its own; docs/upgrades.md).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        schema: str | None = None,
        codec: codec_module.Codec | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        migrate: bool = True,
        app_version: str | None = None,
    ) -> None:
        schema = check_schema(schema_or_default(schema))
        if url is not None and not isinstance(url, str):
            raise ConfigurationError(f"url must be a string, got {type(url).__name__}")
        self._url = url
        self.schema = schema
        """The PostgreSQL schema of durably's tables."""
        self._data_dir = data_dir
        self._migrate = migrate
        self.codec: codec_module.Codec = codec or codec_module.JsonCodec()
        """How values are stored: the same codec as the workers' App."""
        self._registry: dict[str, WorkflowSpec] = {}
        self._specs: dict[str, WorkflowSpec] = {}
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._version_scope = client_scope(app_version)

    @property
    def engine(self) -> Engine:
        """The client's connection to the database (opened on first use)."""
        engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                db, release = open_database(
                    self._url, self._data_dir, self.schema, migrate=self._migrate
                )
                engine = Engine(
                    db=db,
                    app_name=None,
                    executor_id=f"client-{uuid.uuid4().hex[:8]}",
                    codec=self.codec,
                    lease=15.0,
                    registry=self._registry,
                    max_threads=1,
                    park_after=0.0,
                    poll_interval=5.0,
                    on_release=release,
                    serves=False,
                    versions=lambda: self._version_scope,
                )
                # Only the notification listener runs: waits wake on NOTIFY.
                engine.launch()
                self._engine = engine
                # A script that never closes its client still leaves quietly: closed
                # before an embedded server it shares stops (atexit runs last-first).
                atexit.register(self.close)
            return self._engine

    def close(self) -> None:
        """Close the client's connections (and release an embedded server)."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            atexit.unregister(self.close)
            engine.shutdown(grace=0)

    def __repr__(self) -> str:
        database = database_shown(self._url or os.environ.get("DURABLY_DATABASE_URL"))
        return f"<durably.Client schema={self.schema!r} on {database}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- enqueue

    def _enqueue(
        self,
        queue_name: str,
        workflow_name: str,
        *args: Any,
        id: str | None = None,
        priority: int | None = None,
        dedup_key: str | None = None,
        partition_key: str | None = None,
        delay: float | timedelta | datetime | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Job[WorkflowHandle[Any]]:
        """Put workflow ``workflow_name`` on queue ``queue_name``; the options mean what
        they mean on ``wf.options(...)``. A name no worker has registered yet is accepted:
        it waits ENQUEUED until a worker that knows it runs (a warning, once per name and
        queue, says when no live worker serves it; the queue need not be declared yet).

        The client has no workflow code, so unlike ``App`` it cannot check the arguments
        against the function's signature: arguments it cannot take fail the workflow
        with a TypeError when a worker runs it (enqueue from an ``App`` to be told at once).
        """
        check_name(workflow_name, "workflow_name")
        options = WorkflowOptions(
            id=id,
            timeout=timeout,
            queue=queue_name,
            priority=priority,
            dedup_key=dedup_key,
            partition_key=partition_key,
            delay=delay,
        )
        options.validate()
        engine = self.engine
        inputs = codec_module.dumps_args(engine.codec, args, kwargs)  # before any write
        spec = self._spec(workflow_name)
        workflow_id = id or str(uuid.uuid4())
        if engine.observers:
            inputs = stamp(engine, workflow_id, workflow_name, "enqueue", inputs, queue_name)
        starting = enqueue_protocol(engine, spec, options, workflow_id, inputs)
        # Whether the queue is declared yet is covered by the warning about work no live
        # worker serves (``_as_handle``): one warning, not two.
        return engine, _as_handle(engine, starting, workflow_name, queue_name)

    enqueue, enqueue_async = twins(_enqueue)

    def _spec(self, workflow_name: str) -> WorkflowSpec:
        """The stand-in spec of a workflow this client enqueues by name (made once a name:
        making one reads the signature of its stand-in function)."""
        spec = self._specs.get(workflow_name)
        if spec is None:
            spec = self._specs[workflow_name] = WorkflowSpec(_unregistered, workflow_name)
        return spec

    def _enqueue_many(
        self,
        queue_name: str,
        workflow_name: str,
        runs: Iterable[Run],
        *,
        ids: Sequence[str] | None = None,
        priority: int | None = None,
        partition_key: str | None = None,
        delay: float | timedelta | datetime | None = None,
        timeout: float | None = None,
    ) -> Job[list[WorkflowHandle[Any]]]:
        """Put many runs of ``workflow_name`` on ``queue_name`` at once; their handles, in
        order. Each run is a tuple of positional arguments or a dict of keyword
        arguments; ``ids`` gives each its ID; the options apply to all (as on
        ``enqueue``). A thousand runs go in one statement and one commit."""
        check_name(workflow_name, "workflow_name")
        options = WorkflowOptions(
            timeout=timeout, queue=queue_name, priority=priority,
            partition_key=partition_key, delay=delay,
        )  # fmt: skip
        options.validate()
        given = as_runs(runs)
        engine = self.engine
        encoded = encode_runs(given, ids, options, engine.codec)  # before any write
        spec = self._spec(workflow_name)
        encoded = stamped(engine, encoded, workflow_name, queue_name)
        queued = enqueue_many_protocol(engine, spec, options, encoded)
        return engine, _as_handles(engine, queued, workflow_name, queue_name)

    enqueue_many, enqueue_many_async = twins(_enqueue_many)


def _as_handles(
    engine: Engine, queued: Protocol[list[Started]], name: str, queue: str
) -> Protocol[list[WorkflowHandle[Any]]]:
    started = yield from queued
    if name not in engine.registry:
        yield from check_enqueued(engine, name, queue)
    return [WorkflowHandle(engine, one.workflow_id) for one in started]


def _as_handle(
    engine: Engine, starting: Protocol[Started], name: str, queue: str
) -> Protocol[WorkflowHandle[Any]]:
    started = yield from starting
    if name not in engine.registry:
        yield from check_enqueued(engine, name, queue)
    # No hint: the client does not know the workflow's code, so results come back as stored.
    return WorkflowHandle(engine, started.workflow_id)
