"""Publishing from a step: an idempotent producer, and messages that carry the step's key.

A step runs at least once: after a crash before its checkpoint it runs again, and
publishes again. librdkafka's idempotence removes duplicates of one producer session
(its retries); a step that runs again in a new process is a new session, so each
message also carries the step's idempotency key in a header, the same on every run of
the step, for consumers to deduplicate by.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from durably.errors import ConfigurationError, InvalidArgument, PublishFailed
from durably.operations import step_key, workflow_id

# The header holding ``"<workflow id>:<step number>"`` (and ``":<part>"`` when given).
IDEMPOTENCY_HEADER = "durably-idempotency-key"


def producer(config: Mapping[str, Any]) -> Producer:
    """A ``confluent_kafka.Producer`` with idempotence on (``enable.idempotence``):
    retried sends are written once, in order. Make one per process and share it."""
    if not isinstance(config, Mapping):
        raise ConfigurationError(
            f"config must be a mapping of librdkafka settings, got {type(config).__name__}"
        )
    out = dict(config)
    given = out.get("enable.idempotence", True)
    if str(given).lower() not in ("true", "1"):
        raise ConfigurationError(
            "durably.kafka.producer() is idempotent: leave 'enable.idempotence' out "
            "(or make a confluent_kafka.Producer yourself)"
        )
    out["enable.idempotence"] = True
    try:
        return Producer(out)
    except KafkaException as exc:
        raise ConfigurationError(f"the Kafka producer configuration is refused: {exc}") from None


def publish(
    producer: Producer,
    topic: str,
    value: bytes | str | None,
    key: bytes | str | None = None,
    *,
    headers: Sequence[tuple[str, bytes | str | None]] = (),
    part: str | int | None = None,
    timeout: float = 30.0,
) -> str:
    """Send one message from inside a step and wait until the broker has it.

    The message key defaults to the workflow's ID (its messages stay in one partition,
    in order). The header ``durably-idempotency-key`` is ``durably.step_key()``, the same
    each time the step runs: a consumer that has seen it skips the message. A step that
    publishes several messages gives each a different ``part`` (say its index), which
    is appended to the key. Returns the key. Raises ``PublishFailed`` if the message is
    not acknowledged within ``timeout`` seconds (the step's retries then apply).
    """
    idempotency_key = step_key()  # NotInWorkflow outside a step: its key is the point
    if part is not None:
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise InvalidArgument(f"part must be a string or an integer, got {part!r}")
        idempotency_key = f"{idempotency_key}:{part}"
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgument(f"timeout must be a number of seconds above 0, got {timeout!r}")
    all_headers: list[tuple[str, bytes | str | None]] = [
        *headers,
        (IDEMPOTENCY_HEADER, idempotency_key.encode()),
    ]
    done = threading.Event()
    outcome: list[KafkaError | None] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        outcome.append(error)
        done.set()

    producer.produce(
        topic,
        value=value,
        key=workflow_id() if key is None else key,
        headers=all_headers,
        on_delivery=delivered,
    )
    producer.flush(timeout)
    # Another thread's flush may be running the report right now: wait for it a moment.
    if not done.wait(min(timeout, 5.0)):
        raise PublishFailed(
            f"the message to {topic!r} (idempotency key {idempotency_key!r}) was not "
            f"acknowledged within {timeout} s; the step fails and, if it has retries, "
            f"publishes it again under the same key"
        )
    error = outcome[0]
    if error is not None:
        raise PublishFailed(
            f"the message to {topic!r} (idempotency key {idempotency_key!r}) was refused: "
            f"{error.str()}"
        )
    return idempotency_key


async def publish_async(
    producer: Producer,
    topic: str,
    value: bytes | str | None,
    key: bytes | str | None = None,
    *,
    headers: Sequence[tuple[str, bytes | str | None]] = (),
    part: str | int | None = None,
    timeout: float = 30.0,
) -> str:
    """Async twin of ``publish``, for async steps: waiting for the broker happens in a
    thread (which sees the step's context, so its key), not on the event loop."""
    return await asyncio.to_thread(
        publish, producer, topic, value, key, headers=headers, part=part, timeout=timeout
    )
