"""``app.kafka_consumer(...)``: one workflow per Kafka message, run exactly once.

A background thread polls a batch of messages, records one queued workflow per message
in one transaction (its ID is made of the group, topic, partition and offset), and
only then commits the batch's offsets. A crash between the two delivers the batch
again, and enqueueing an ID that exists changes nothing: no message is lost, none runs
twice. Workers of the app run the workflows from the queue, under its limits.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from durably import codec as codec_module
from durably.app_core import AppCore
from durably.errors import ConfigurationError
from durably.execution.effects import Atomic
from durably.execution.effects import Protocol as Effects
from durably.kafka.deadletter import declare_dead_letter
from durably.kafka.message import (
    KafkaMessage,
    PartitionLag,
    check_group,
    check_topics,
    from_confluent,
    message_id,
)
from durably.queue_spec import QueueSpec
from durably.queues import Queue
from durably.runtime.drivers import drive_sync
from durably.store.statements import Statement
from durably.workflow import Step, Workflow, declare_workflow

if TYPE_CHECKING:
    from durably.runtime.engine import Engine

log = logging.getLogger("durably.kafka")

# Settings durably owns: offsets are committed by the consumer, after the batch's
# workflows are recorded, never by librdkafka on its own schedule.
FORCED_OFF = ("enable.auto.commit", "enable.auto.offset.store")
MAX_BATCH = 100_000
# How much of a decoding error a dead letter keeps.
ERROR_CHARS = 2000


class KafkaOptions(TypedDict, total=False):
    """The keyword options of ``app.kafka_consumer``."""

    queue: Queue | str | None
    ordered: bool
    value_decoder: Callable[[bytes | None], Any] | None
    batch_size: int
    poll_timeout: float


class KafkaApp(AppCore, Protocol):
    """What a consumer uses of its ``App``: its engine, workflows and queues."""

    _queues: dict[str, QueueSpec]

    def queue(
        self,
        name: str,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: tuple[int, float] | None = None,
        priority: bool = False,
        partition_concurrency: int | None = None,
    ) -> Queue: ...


def kafka_consumer(
    app: KafkaApp,
    config: Mapping[str, Any],
    topics: Sequence[str] | str,
    workflow: Workflow[..., Any] | Callable[..., Any] | None = None,
    **options: Any,
) -> KafkaConsumer | Callable[[Callable[..., Any]], KafkaConsumer]:
    """A consumer of ``topics`` running ``workflow`` per message; without ``workflow``,
    a decorator that makes the function it decorates the consumer's workflow."""
    if workflow is None:

        def decorate(fn: Callable[..., Any]) -> KafkaConsumer:
            return KafkaConsumer(app, config, topics, fn, **options)

        return decorate
    return KafkaConsumer(app, config, topics, workflow, **options)


class KafkaConsumer:
    """Consumes Kafka messages into workflows, one per message, exactly once.

    Build it in every process of the app (it declares the queue and the dead-letter
    workflow the workers need); ``start()`` it where messages should be polled.
    """

    def __init__(
        self,
        app: KafkaApp,
        config: Mapping[str, Any],
        topics: Sequence[str] | str,
        workflow: Workflow[..., Any] | Callable[..., Any],
        *,
        queue: Queue | str | None = None,
        ordered: bool = False,
        value_decoder: Callable[[bytes | None], Any] | None = None,
        batch_size: int = 500,
        poll_timeout: float = 0.5,
    ) -> None:
        self._config = consumer_config(config)
        self.group = check_group(self._config)
        self.topics = check_topics(topics)
        if not isinstance(ordered, bool):
            raise ConfigurationError(f"ordered must be True or False, got {ordered!r}")
        if value_decoder is not None and not callable(value_decoder):
            raise ConfigurationError(
                f"value_decoder must be a function of the value's bytes, got {value_decoder!r}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise ConfigurationError(f"batch_size must be a whole number, got {batch_size!r}")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ConfigurationError(f"batch_size must be 1 to {MAX_BATCH}, got {batch_size}")
        if (
            isinstance(poll_timeout, bool)
            or not isinstance(poll_timeout, int | float)
            or not 0 < poll_timeout <= 60
        ):
            raise ConfigurationError(
                f"poll_timeout must be a number of seconds above 0 and at most 60, "
                f"got {poll_timeout!r}"
            )
        self.workflow = _own_workflow(app, workflow)
        try:
            self.workflow.spec.check_args((None,), {})
        except TypeError as exc:
            raise ConfigurationError(
                f"a Kafka consumer's workflow takes one argument, the message (or its decoded "
                f"value): {exc}"
            ) from None
        self.ordered = ordered
        self.value_decoder = value_decoder
        self.batch_size = batch_size
        self.poll_timeout = float(poll_timeout)
        self.queue = _queue_name(app, queue, self.group, ordered)
        self._dead_letter = declare_dead_letter(app)
        self._app = app
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # A client that joins no group, for lag(): it reads the group's committed offsets.
        self._probe: Consumer | None = None
        self._probe_lock = threading.Lock()
        # Next offsets of recorded messages whose commit has not succeeded yet.
        self._uncommitted: dict[tuple[str, int], int] = {}
        #: Messages recorded by this consumer (a message delivered again counts again).
        self.recorded = 0
        #: The error that stopped the polling thread, if one did.
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"<durably Kafka consumer group={self.group!r} topics={list(self.topics)} "
            f"workflow={self.workflow.name!r} queue={self.queue!r}>"
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """Whether the polling thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> KafkaConsumer:
        """Join the consumer group and poll in a background thread (launches the app if
        it was not). It stops with ``stop()``, or when the app shuts down."""
        with self._lock:
            if self.running:
                return self
            engine = self._app.engine
            engine.ensure_launched()
            try:
                consumer = Consumer(self._config)
            except KafkaException as exc:
                raise ConfigurationError(
                    f"the Kafka consumer configuration is refused: {exc}"
                ) from None
            consumer.subscribe(
                list(self.topics), on_assign=self._assigned, on_revoke=self._revoked,
                on_lost=self._lost,
            )  # fmt: skip
            self._stopping.clear()
            self.error = None
            self._thread = threading.Thread(
                target=self._run,
                args=(engine, consumer),
                name=f"durably-kafka-{self.group}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling and leave the group: the batch under way is recorded and its
        offsets committed first (within ``timeout`` seconds)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._probe_lock:
            probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()

    def __enter__(self) -> KafkaConsumer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the thread

    def _live(self, engine: Engine) -> bool:
        # ``app.shutdown()`` closes the engine: the consumer stops with it.
        return not self._stopping.is_set() and engine.holds_its_id

    def _run(self, engine: Engine, consumer: Consumer) -> None:
        try:
            while self._live(engine):
                batch = [from_confluent(message) for message in self._usable(self._poll(consumer))]
                if batch:
                    if not self._record(engine, batch):
                        break  # stopping: the batch is delivered again, to whoever polls
                    self._note_recorded(batch)
                if self._uncommitted:
                    self._commit(consumer)
        except Exception as exc:
            self.error = exc
            log.error(
                "durably: Kafka consumer of group %r stopped: %s: %s",
                self.group, type(exc).__name__, exc, exc_info=exc,
            )  # fmt: skip
        finally:
            with contextlib.suppress(Exception):
                if self._uncommitted:
                    self._commit(consumer)
                consumer.close()
            # What could not be committed is another member's to deliver again (a
            # later start must not commit it over that member's newer offsets).
            self._uncommitted.clear()

    def _poll(self, consumer: Consumer) -> list[Message]:
        """The next batch: up to ``batch_size`` messages, as soon as one is there.

        ``consume(n, timeout)`` alone waits for all ``n`` messages or the whole timeout,
        so a lone message would wait ``poll_timeout``; instead the first message is
        waited for, and the rest of the batch is what has arrived meanwhile.
        """
        first = consumer.poll(self.poll_timeout)
        if first is None:
            return []
        if self.batch_size == 1:
            return [first]
        return [first, *consumer.consume(self.batch_size - 1, 0)]

    def _usable(self, messages: list[Message]) -> list[Message]:
        """The messages of a poll; the errors it reported are logged (a fatal one ends
        the consumer: librdkafka cannot go on after it)."""
        usable = []
        for message in messages:
            error = message.error()
            if error is None:
                usable.append(message)
            elif error.fatal():
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("durably: Kafka consumer of group %r: %s", self.group, error)
        return usable

    def _record(self, engine: Engine, batch: list[KafkaMessage]) -> bool:
        """Enqueue the batch's workflows in one transaction, trying again while the
        database is away; False if the consumer stops before they are recorded."""
        statements = tuple(self._enqueue(engine, message) for message in batch)
        pause = 0.05
        while True:
            try:
                drive_sync(engine, _at_once(statements))
            except Exception as exc:
                if not self._live(engine):
                    return False
                log.warning(
                    "durably: Kafka consumer of group %r could not record %d message(s), "
                    "trying again in %.2f s: %s: %s",
                    self.group, len(statements), pause, type(exc).__name__, exc,
                )  # fmt: skip
                self._stopping.wait(pause)
                pause = min(pause * 2, 5.0)
            else:
                self.recorded += len(statements)
                return True

    def _enqueue(self, engine: Engine, message: KafkaMessage) -> Statement:
        """The enqueue of one message's workflow (or of its dead letter)."""
        workflow_id = message_id(self.group, message.topic, message.partition, message.offset)
        spec = self.workflow.spec
        try:
            value: Any = message
            if self.value_decoder is not None:
                value = self.value_decoder(message.value)
            inputs = codec_module.dumps_args(engine.codec, (value,), {})
        except Exception as exc:
            spec = self._dead_letter.spec
            inputs = self._dead_letter_inputs(engine, message, exc)
        return engine.queue_statements.enqueue(
            workflow_id=workflow_id,
            name=spec.name,
            inputs=inputs,
            max_recovery_attempts=spec.max_recovery_attempts,
            codec=engine.codec.name,
            timeout=None,
            queue=self.queue,
            priority=None,
            dedup_key=None,
            # One at a time per Kafka partition, in offset order (enqueue order).
            partition_key=f"{message.topic}:{message.partition}" if self.ordered else None,
            available_at=None,
        )

    def _dead_letter_inputs(self, engine: Engine, message: KafkaMessage, exc: Exception) -> str:
        error = f"{type(exc).__name__}: {exc}"
        if len(error) > ERROR_CHARS:
            error = error[: ERROR_CHARS - 3] + "..."
        log.warning(
            "durably: Kafka message %s[%d]@%d of group %r could not be decoded, it is "
            "dead-lettered (a workflow in ERROR named %r): %s",
            message.topic, message.partition, message.offset, self.group,
            self._dead_letter.name, error,
        )  # fmt: skip
        return codec_module.dumps_args(engine.codec, (message, error), {})

    def _note_recorded(self, batch: list[KafkaMessage]) -> None:
        """The batch is recorded: its offsets are the next to commit."""
        for message in batch:
            key = (message.topic, message.partition)
            offset = message.offset + 1
            if offset > self._uncommitted.get(key, -1):
                self._uncommitted[key] = offset

    def _commit(self, consumer: Consumer, only: set[tuple[str, int]] | None = None) -> None:
        """Commit the recorded offsets (synchronously). A commit that fails is tried
        again after the next poll; meanwhile a message delivered again, here or to the
        member that took its partition over, is enqueued under its existing ID: nothing."""
        pending = {
            key: offset for key, offset in self._uncommitted.items() if only is None or key in only
        }
        if not pending:
            return
        offsets = [TopicPartition(topic, part, offset) for (topic, part), offset in pending.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning(
                "durably: Kafka consumer of group %r could not commit offsets %s: %s",
                self.group, pending, exc,
            )  # fmt: skip
            return
        for key, offset in pending.items():
            if self._uncommitted.get(key) == offset:
                del self._uncommitted[key]

    # ------------------------------------------------------------------ rebalances
    # Callbacks run in the polling thread, inside consume(), between two batches: every
    # batch polled so far is recorded, so a revoke only has offsets to commit if the
    # last commit failed; a lost partition's offsets are dropped (the group moved on).

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("durably: Kafka consumer of group %r assigned %s", self.group, _names(partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("durably: Kafka consumer of group %r revoked %s", self.group, _names(partitions))
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._commit(consumer, only=revoked)
        for key in revoked:
            self._uncommitted.pop(key, None)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("durably: Kafka consumer of group %r lost %s", self.group, _names(partitions))
        for tp in partitions:
            self._uncommitted.pop((tp.topic, tp.partition), None)

    # ------------------------------------------------------------------ lag

    def lag(self, timeout: float = 10.0) -> list[PartitionLag]:
        """Per partition of the consumer's topics: the high watermark, the group's
        committed offset and how many messages lie between (not yet recorded as
        workflows). Works whether or not this consumer runs, for the whole group."""
        with self._probe_lock:
            if self._probe is None:
                self._probe = Consumer(dict(self._config))  # never subscribes: joins nothing
            probe = self._probe
            metadata = probe.list_topics(timeout=timeout)
            partitions = [
                TopicPartition(topic, part)
                for topic in self.topics
                if topic in metadata.topics
                for part in sorted(metadata.topics[topic].partitions)
            ]
            if not partitions:
                return []
            out = []
            for tp in probe.committed(partitions, timeout=timeout):
                low, high = probe.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=timeout, cached=False
                )
                committed = tp.offset if tp.offset >= 0 else None
                behind = high - (committed if committed is not None else low)
                out.append(PartitionLag(tp.topic, tp.partition, committed, high, max(0, behind)))
            return out


def consumer_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The librdkafka configuration of a consumer: the user's, with automatic offset
    commits off and, unless set, reading a new group's topics from their start."""
    if not isinstance(config, Mapping):
        raise ConfigurationError(
            f"config must be a mapping of librdkafka settings, got {type(config).__name__}"
        )
    out = dict(config)
    for key in FORCED_OFF:
        if key in out and str(out[key]).lower() not in ("false", "0"):
            raise ConfigurationError(
                f"{key!r} must be off: durably commits a batch's offsets itself, once the "
                f"batch's workflows are recorded (remove it from the configuration)"
            )
        out[key] = False
    # A new group starts at the oldest message: messages sent before it first polled
    # are processed, not skipped (librdkafka's default is the newest).
    out.setdefault("auto.offset.reset", "earliest")
    check_group(out)
    return out


def _at_once(statements: tuple[Statement, ...]) -> Effects[None]:
    """Record a batch's enqueues in one transaction (one round trip, one commit)."""
    yield Atomic(statements)


def _own_workflow(app: KafkaApp, workflow: object) -> Workflow[..., Any]:
    """The consumer's workflow: a workflow of ``app``, or a function declared one now."""
    if isinstance(workflow, Workflow):
        if app._registry.get(workflow.spec.name) is not workflow.spec:
            raise ConfigurationError(
                f"{workflow!r} is a workflow of another app; declare it on this one"
            )
        return workflow
    if isinstance(workflow, Step) or not callable(workflow):
        raise ConfigurationError(
            f"a Kafka consumer runs a workflow (or a function to declare as one), got {workflow!r}"
        )
    return declare_workflow(app, workflow, None, 50)


def _queue_name(app: KafkaApp, queue: Queue | str | None, group: str, ordered: bool) -> str:
    """The queue the workflows go on: ``kafka:<group>`` (declared here) unless given;
    ordered consumption needs one workflow at a time per partition key."""
    if queue is None:
        return app.queue(f"kafka:{group}", partition_concurrency=1 if ordered else None).name
    name = queue.name if isinstance(queue, Queue) else queue
    if not isinstance(name, str):
        raise ConfigurationError(f"queue must be a Queue or a queue name, got {queue!r}")
    spec = app._queues.get(name)
    if spec is None or (isinstance(queue, Queue) and queue.spec != spec):
        raise ConfigurationError(
            f"queue {name!r} is not declared on this app: declare it with app.queue({name!r}, "
            f"...) in every process of the app"
        )
    if ordered and spec.partition_concurrency != 1:
        raise ConfigurationError(
            f"ordered=True runs one message per Kafka partition at a time, so queue {name!r} "
            f"needs partition_concurrency=1 (got {spec.partition_concurrency})"
        )
    return name


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
