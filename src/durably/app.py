"""``durably.App``: declare workflows and steps, run them, and look at what ran."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from math import inf
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, Unpack, overload

from durably import codec as codec_module
from durably.control import Control
from durably.errors import ConfigurationError
from durably.execution.retention import rules_of
from durably.execution.specs import StepSpec, WorkflowSpec
from durably.keywords import RetryPolicy, TransactionSettings, check_keywords
from durably.names import check_name, schema_or_default
from durably.options import check_seconds
from durably.outbox import Outbox
from durably.queue_spec import QueueSpec
from durably.queues import Queue
from durably.retention import Retention
from durably.runtime.connect import open_database
from durably.runtime.engine import Engine
from durably.scheduling import Scheduling
from durably.store.database import Database
from durably.store.redaction import database_shown
from durably.store.sqlfile import check_schema
from durably.store.statements import Statement
from durably.telemetry import Observer, observers_for
from durably.transaction import Transaction, declare_transaction
from durably.versions import AppVersions, RecoverVersions, Versions
from durably.workflow import Step, Workflow, declare_step, declare_workflow

if TYPE_CHECKING:
    from durably.kafka.consumer import KafkaConsumer, KafkaOptions

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_LEASE = 15.0


class App(Control, Scheduling, Outbox, Retention, Versions):
    """A durably application: its workflows and steps, bound to one Postgres schema.

    ``url`` is a PostgreSQL URL; without one, ``$DURABLY_DATABASE_URL`` is used, else an
    embedded PostgreSQL 18 is started in ``data_dir`` (default ``./.durably``).
    ``schema``: where durably's tables are (default ``$DURABLY_SCHEMA``, else ``durably``),
    created or upgraded on first use. ``name``: a label recorded with this process's
    executor. ``executor_id``: this process's identity, under which its unfinished work is
    recovered (default: a new one per process; docs/concepts/leases-and-fencing.md).
    ``codec``: how values are stored (default ``JsonCodec()``). ``lease``: seconds after
    which another worker takes over the work of a process that stopped renewing (default
    15). ``max_threads``: sync workflows run at once on background threads (default 64;
    more wait for one). ``park_after``: a wait longer than this many seconds parks the
    workflow in the database instead of holding a thread (default 10;
    docs/concepts/parking.md). ``poll_interval``: seconds between looks for work, the
    fallback for a lost notification (default 5). ``telemetry``: an observer, a list of
    them, or True for every installed kind (docs/telemetry.md).
    ``app_db``: the URL of another database that transaction steps run in by default
    (their checkpoints then go into a small table there; see docs/transactions.md).
    ``retention``: finished workflows older than this (a timedelta, or one per finished
    status, e.g. ``{"SUCCESS": timedelta(days=7), "ERROR": timedelta(days=90)}``) are
    deleted by one worker of the fleet at a time (see docs/retention.md).
    ``app_version``: the version recorded on the workflows this app starts (default
    ``$DURABLY_APP_VERSION``, else a hash of the registered workflow code). With a
    version given, it recovers only work of that version and of ``recover_versions``
    ("any": every version); with a hash, every version unless ``recover_versions`` is
    given. See docs/upgrades.md.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str | None = None,
        schema: str | None = None,
        executor_id: str | None = None,
        codec: codec_module.Codec | None = None,
        lease: float = DEFAULT_LEASE,
        data_dir: str | os.PathLike[str] | None = None,
        max_threads: int = 64,
        park_after: float = 10.0,
        poll_interval: float = 5.0,
        app_db: str | None = None,
        retention: timedelta | Mapping[str, timedelta] | None = None,
        telemetry: Any = None,
        app_version: str | None = None,
        recover_versions: RecoverVersions | None = None,
    ) -> None:
        schema = check_schema(schema_or_default(schema))
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease < inf:
            raise ConfigurationError(
                f"lease must be a positive, finite number of seconds, got {lease!r}"
            )
        for label, given in (("name", name), ("executor_id", executor_id)):
            if given is not None:
                check_name(given, label, error=ConfigurationError)
        if url is not None and not isinstance(url, str):
            raise ConfigurationError(f"url must be a string, got {type(url).__name__}")
        if not isinstance(max_threads, int) or max_threads < 1:
            raise ConfigurationError(f"max_threads must be >= 1, got {max_threads!r}")
        for label, value in (("park_after", park_after), ("poll_interval", poll_interval)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value < inf
            ):
                raise ConfigurationError(
                    f"{label} must be a finite number of seconds >= 0, got {value!r}"
                )
        if app_db is not None and (not isinstance(app_db, str) or not app_db):
            raise ConfigurationError(
                f"app_db must be the PostgreSQL URL of the database transaction steps write "
                f"to, got {type(app_db).__name__}"
            )
        # Finished workflows older than this are deleted by one worker at a time.
        self._retention = rules_of(retention)
        # Where transaction steps run when they name no database (None: the app's own).
        self.app_db = app_db
        """The URL transaction steps run in when they name no database (None: the app's)."""
        self.park_after = float(park_after)
        """Seconds of wait past which a workflow parks in the database (``App(park_after=)``)."""
        self.poll_interval = max(0.05, float(poll_interval))
        """Seconds between looks for work when no notification comes (at least 0.05)."""
        self.name = name
        """The label given as ``App(name=...)``, recorded with this process's executor."""
        self.schema = schema
        """The PostgreSQL schema of durably's tables."""
        self._url = url
        self._data_dir = data_dir
        self._executor_id = executor_id
        self.codec: codec_module.Codec = codec or codec_module.JsonCodec()
        """How values are stored (``JsonCodec`` unless ``App(codec=...)``)."""
        self.lease = float(lease)
        """Seconds an executor's lease lasts after its last renewal (``App(lease=...)``)."""
        self._max_threads = max_threads
        self._registry: dict[str, WorkflowSpec] = {}
        self._step_specs: dict[str, StepSpec] = {}  # by name: two functions may not share one
        self._queues: dict[str, QueueSpec] = {}
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        # Telemetry observers (docs/telemetry.md): True, one observer or a list of them.
        self._observers: list[Observer] = observers_for(telemetry)
        self._versions = AppVersions(
            app_version, recover_versions, self._registry, self._step_specs
        )

    # ------------------------------------------------------------- decorators

    @overload
    def workflow(self, fn: Callable[P, R], /) -> Workflow[P, R]: ...
    @overload
    def workflow(
        self, fn: None = None, /, *, name: str | None = None, max_recovery_attempts: int = 50
    ) -> Callable[[Callable[P, R]], Workflow[P, R]]: ...

    def workflow(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        max_recovery_attempts: int = 50,
    ) -> Workflow[P, R] | Callable[[Callable[P, R]], Workflow[P, R]]:
        """Declare a durable workflow (``@app.workflow`` or ``@app.workflow(...)``).

        It is registered and recorded under ``name``, by default the function's qualified
        name (``process_order``, ``Billing.charge``): the same whether its module is
        imported or run as a script, and the name a ``Client`` enqueues it by.
        ``max_recovery_attempts``: how often in a row it may be recovered after its worker
        died without recording a step in between, before it is set aside as DEAD_LETTER.
        """

        def decorate(func: Callable[P, R]) -> Workflow[P, R]:
            return declare_workflow(self, func, name, max_recovery_attempts)

        return decorate(fn) if fn is not None else decorate

    @overload
    def step(self, fn: Callable[P, R], /) -> Step[P, R]: ...
    @overload
    def step(
        self, fn: None = None, /, *, name: str | None = None, **retry: Unpack[RetryPolicy]
    ) -> Callable[[Callable[P, R]], Step[P, R]]: ...

    def step(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        **retry: Unpack[RetryPolicy],
    ) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
        """Declare a step: its result is recorded, and replayed instead of recomputed.

        ``retries`` more attempts (default 0) follow a failure, ``interval`` seconds
        (default 1) after the first and ``backoff`` times longer (default 2) after each
        next one, at most ``max_delay`` (default 60); ``retry_on`` decides from the
        exception whether to retry at all (default: always). Its ``name`` (default: the
        function's qualified name) is recorded with its result, and compared on replay.
        """
        check_keywords(retry, RetryPolicy, "step")

        def decorate(func: Callable[P, R]) -> Step[P, R]:
            return declare_step(self, self._step_specs, func, name, retry)

        return decorate(fn) if fn is not None else decorate

    @overload
    def transaction(self, fn: Callable[Concatenate[Any, P], R], /) -> Transaction[P, R]: ...
    @overload
    def transaction(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        **settings: Unpack[TransactionSettings],
    ) -> Callable[[Callable[Concatenate[Any, P], R]], Transaction[P, R]]: ...

    def transaction(
        self,
        fn: Callable[Concatenate[Any, P], R] | None = None,
        /,
        *,
        name: str | None = None,
        **settings: Unpack[TransactionSettings],
    ) -> Transaction[P, R] | Callable[[Callable[Concatenate[Any, P], R]], Transaction[P, R]]:
        """Declare a transaction step: its first parameter receives an open psycopg
        connection (async for an ``async def``), and what it writes there commits in one
        transaction with its checkpoint, so it happens exactly once.

        ``isolation`` is 'serializable' (default), 'repeatable read' or 'read committed';
        a serialization failure or deadlock runs it again in a fresh transaction (up to
        ``conflict_retries`` times, default 10); any other error rolls it back and is the
        step's error (``retries`` and the rest of the step's retry policy apply).
        ``database`` names another database to run in (default: the app's ``app_db``,
        else its own). Never commit, roll back or close the connection inside.
        """
        check_keywords(settings, TransactionSettings, "transaction")
        merged: dict[str, Any] = {"database": self.app_db, **settings}

        def decorate(func: Callable[Concatenate[Any, P], R]) -> Transaction[P, R]:
            return declare_transaction(self, self._step_specs, func, name, merged)

        return decorate(fn) if fn is not None else decorate

    # ------------------------------------------------------------- lifecycle

    @property
    def engine(self) -> Engine:
        """The live engine, connecting to (or starting) the database on first use."""
        engine = self._engine
        if engine is not None:
            return engine
        with self._engine_lock:
            if self._engine is None:
                self._engine = self._connect()
            return self._engine

    def _connect(self) -> Engine:
        db, release = open_database(self._url, self._data_dir, self.schema)
        engine = Engine(
            db=db,
            app_name=self.name,
            executor_id=self._executor_id,
            codec=self.codec,
            lease=self.lease,
            registry=self._registry,
            max_threads=self._max_threads,
            park_after=self.park_after,
            poll_interval=self.poll_interval,
            queues=self._queues,
            on_release=release,
            retention=self._retention,
            versions=self._versions.scope,
        )
        if self._observers:
            engine.set_observers(tuple(self._observers))
        for spec in self._queues.values():
            db.run_settled(_declare(db, spec))
        engine.scheduler = self._make_scheduler(engine)
        atexit.register(self._at_exit)
        return engine

    def _at_exit(self) -> None:
        engine = self._engine
        if engine is not None:
            engine.shutdown(grace=0)

    @property
    def app_version(self) -> str:
        """The version recorded on the workflows this app starts: the one given, or
        ``code-`` and a hash of the registered workflow code (docs/upgrades.md)."""
        current = self._versions.scope().current
        assert current is not None
        return current

    @property
    def executor_id(self) -> str:
        """This process's executor ID (its workflows are recovered under it)."""
        return self.engine.executor_id

    def use_executor_id(self, executor_id: str) -> None:
        """Run under ``executor_id`` (``durably worker --executor-id``); only before the
        app first connects, since its engine is named once."""
        check_name(executor_id, "executor_id", error=ConfigurationError)
        with self._engine_lock:
            if self._engine is not None and self._engine.executor_id != executor_id:
                raise ConfigurationError(
                    f"this app already runs as executor {self._engine.executor_id!r}; set the "
                    f"executor ID before it first connects (App(executor_id=...))"
                )
            self._executor_id = executor_id

    def launch(self, *, queues: Sequence[str] | None = None) -> None:
        """Start this process's executor: heartbeat, recover its own unfinished workflows,
        take over those of executors whose lease expired, and claim queued work (from
        ``queues`` only, when given; from every queue of the app otherwise)."""
        engine = self.engine
        if queues is not None:
            unknown = [q for q in queues if q not in self._queues]
            if unknown:
                raise ConfigurationError(
                    f"cannot listen to undeclared queue(s) {unknown}; declare them with "
                    f"app.queue(...) first"
                )
            engine.listen_queues = frozenset(queues)
        engine.launch()

    # ------------------------------------------------------------- telemetry

    def add_telemetry(self, *observers: Observer) -> None:
        """Report to ``observers`` too from now on (see ``App(telemetry=...)``)."""
        added = observers_for(list(observers))
        with self._engine_lock:
            self._observers += added
            engine = self._engine
        if engine is not None:
            engine.set_observers(tuple(self._observers))

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve Prometheus metrics at ``http://host:port/metrics`` from a daemon thread
        (the ``prometheus`` extra); a Prometheus observer on the global registry is added
        unless the app has one. Returns the server (``shutdown()`` stops it)."""
        from durably.telemetry.prometheus import Prometheus, serve

        found = [o for o in self._observers if isinstance(o, Prometheus)]
        if not found:
            found = [Prometheus()]
            self.add_telemetry(found[0])
        return serve(port, host, found[0].registry)

    # ------------------------------------------------------------- queues

    def queue(
        self,
        name: str,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: tuple[int, float] | None = None,
        priority: bool = False,
        partition_concurrency: int | None = None,
    ) -> Queue:
        """Declare a queue. Its limits hold across every worker on every machine:
        ``concurrency`` running at once, ``worker_concurrency`` per worker process,
        ``rate_limit=(n, seconds)`` starts per window, ``partition_concurrency`` per
        partition key; ``priority=True`` accepts priorities (lower runs first)."""
        spec = QueueSpec(
            name,
            concurrency=concurrency,
            worker_concurrency=worker_concurrency,
            rate_limit=rate_limit,
            priority=priority,
            partition_concurrency=partition_concurrency,
        )
        existing = self._queues.get(name)
        if existing is not None and existing != spec:
            raise ConfigurationError(
                f"queue {name!r} is already declared on this app with other settings"
            )
        self._queues[name] = spec
        engine = self._engine
        if engine is not None:
            engine.db.run_settled(_declare(engine.db, spec))
        return Queue(self, spec)

    @overload
    def kafka_consumer(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str] | str,
        workflow: Workflow[..., Any] | Callable[..., Any],
        **options: Unpack[KafkaOptions],
    ) -> KafkaConsumer: ...
    @overload
    def kafka_consumer(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str] | str,
        workflow: None = None,
        **options: Unpack[KafkaOptions],
    ) -> Callable[[Callable[..., Any]], KafkaConsumer]: ...

    def kafka_consumer(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str] | str,
        workflow: Workflow[..., Any] | Callable[..., Any] | None = None,
        **options: Unpack[KafkaOptions],
    ) -> KafkaConsumer | Callable[[Callable[..., Any]], KafkaConsumer]:
        """Run ``workflow`` once per message of ``topics`` (a ``durably.kafka.KafkaConsumer``;
        ``start()`` it). ``config`` is the librdkafka consumer configuration, with
        ``group.id``; options: ``queue``, ``ordered``, ``value_decoder``, ``batch_size``,
        ``poll_timeout``. Without ``workflow``, a decorator. Needs ``durably[kafka]``;
        see docs/kafka.md."""
        from durably.kafka.consumer import kafka_consumer  # the optional extra, on use

        return kafka_consumer(self, config, topics, workflow, **options)

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop claiming work, wait up to ``grace`` s for running workflows, then release
        the unfinished ones to other workers (the end of ``with app:`` does this)."""
        grace = check_seconds(grace, "shutdown's grace")
        with self._engine_lock:
            engine = self._engine
        if engine is not None:
            atexit.unregister(self._at_exit)
            # The engine stays the app's while workflows finish within ``grace``: their
            # steps must still be recorded as steps, their children started as children.
            engine.shutdown(grace)
            with self._engine_lock:
                if self._engine is engine:
                    self._engine = None

    def __repr__(self) -> str:
        database = database_shown(self._url or os.environ.get("DURABLY_DATABASE_URL"))
        return f"<durably.App name={self.name!r} schema={self.schema!r} on {database}>"

    def __enter__(self) -> App:
        self.launch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _declare(db: Database, spec: QueueSpec) -> Statement:
    rate, period = spec.rate_limit if spec.rate_limit is not None else (None, None)
    return db.queue_statements.declare_queue(
        name=spec.name,
        concurrency=spec.concurrency,
        worker_concurrency=spec.worker_concurrency,
        rate_limit=rate,
        rate_period=period,
        priority=spec.priority,
        partition_concurrency=spec.partition_concurrency,
    )
