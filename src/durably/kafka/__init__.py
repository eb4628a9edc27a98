"""Kafka, exactly once: one workflow per consumed message, and publishing from steps.

Needs the optional extra: ``pip install 'durably[kafka]'`` (confluent-kafka). See
``docs/kafka.md``. ``app.kafka_consumer(...)`` builds a ``KafkaConsumer``; steps publish
with ``publish(producer(config), topic, value)``.
"""

from __future__ import annotations

try:
    import confluent_kafka  # noqa: F401  (only to say clearly what is missing)
except ImportError as exc:  # pragma: no cover - depends on the environment
    from durably.errors import MissingDependency

    raise MissingDependency(
        "durably.kafka needs the confluent-kafka package: pip install 'durably[kafka]'"
    ) from exc

from durably.kafka.consumer import KafkaConsumer, KafkaOptions
from durably.kafka.deadletter import DEAD_LETTER
from durably.kafka.message import KafkaMessage, PartitionLag, message_id
from durably.kafka.producing import IDEMPOTENCY_HEADER, producer, publish, publish_async

__all__ = [
    "DEAD_LETTER",
    "IDEMPOTENCY_HEADER",
    "KafkaConsumer",
    "KafkaMessage",
    "KafkaOptions",
    "PartitionLag",
    "message_id",
    "producer",
    "publish",
    "publish_async",
]
