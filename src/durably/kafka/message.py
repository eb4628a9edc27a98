"""What a workflow receives of a Kafka message, and the workflow ID a message is run under."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from durably.errors import ConfigurationError

# Kafka's own rule for topic names; it also keeps ':' out of them, so the parts of a
# message's workflow ID can be told apart from the right (see ``message_id``).
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
# Leaves room in a workflow ID (512 characters) for the longest topic and two offsets.
MAX_GROUP_LENGTH = 200

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """One consumed message, as stored in its workflow's input (bytes stay bytes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    # When the producer (or the broker, per the topic's settings) stamped it; UTC.
    timestamp: datetime | None = None

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (Kafka allows repeats), or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far a consumer group is behind on one partition: ``lag`` messages are
    between its committed offset (None: it never committed) and the high watermark."""

    topic: str
    partition: int
    committed: int | None
    high: int
    lag: int


def message_id(group: str, topic: str, partition: int, offset: int) -> str:
    """The workflow ID of a message for a consumer group.

    A message is identified by its topic, partition and offset, and a group processes
    it once: the ID is the same however often the message is delivered again (after a
    crash, a restart, a rebalance), so it is enqueued once. Topic names have no ':',
    so the ID cannot be read two ways even when the group's name has one.
    """
    return f"kafka:{group}:{topic}:{partition}:{offset}"


def from_confluent(message: Any) -> KafkaMessage:
    """A ``confluent_kafka.Message`` (one without an error) as a ``KafkaMessage``."""
    kind, millis = message.timestamp()
    # 0 is TIMESTAMP_NOT_AVAILABLE: no time was recorded with the message.
    stamp = datetime.fromtimestamp(millis / 1000, UTC) if kind != 0 and millis >= 0 else None
    raw_headers = message.headers() or ()
    return KafkaMessage(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value(),
        headers=tuple((str(name), value) for name, value in raw_headers),
        timestamp=stamp,
    )


def check_topics(topics: object) -> tuple[str, ...]:
    """One topic name or a sequence of them, each a literal Kafka topic name."""
    names = (topics,) if isinstance(topics, str) else topics
    if not isinstance(names, list | tuple) or not names:
        raise ConfigurationError(
            f"topics must be a topic name or a non-empty list of them, got {topics!r}"
        )
    for name in names:
        if not isinstance(name, str) or not _TOPIC.fullmatch(name):
            raise ConfigurationError(
                f"{name!r} is not a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -; "
                f"patterns are not supported: list the topics)"
            )
    return tuple(dict.fromkeys(names))


def check_group(config: dict[str, Any]) -> str:
    """The consumer group of a consumer's configuration (``group.id``, required)."""
    group = config.get("group.id")
    if not isinstance(group, str) or not group or "\x00" in group:
        raise ConfigurationError(
            f"the consumer configuration needs 'group.id' (a non-empty string), got {group!r}: "
            f"the group names the workflows of its messages"
        )
    if len(group) > MAX_GROUP_LENGTH:
        raise ConfigurationError(
            f"'group.id' is {len(group)} characters; at most {MAX_GROUP_LENGTH} fit in the "
            f"workflow IDs of its messages"
        )
    return group
