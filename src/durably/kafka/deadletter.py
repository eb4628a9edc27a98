"""Dead letters: a message whose value cannot be decoded becomes a failed workflow.

The consumer enqueues it under the message's own workflow ID, on the same queue (and
partition key) as the messages around it, as a run of ``dead_letter``: the workflow
fails at once with ``UndecodableMessage``, so the message is kept, with its raw bytes,
in a workflow in ERROR that ``app.list_workflows(status="ERROR", name=DEAD_LETTER)``
shows, and its partition flows on. Nothing is lost and nothing blocks.
"""

from __future__ import annotations

from typing import Any

from durably.app_core import AppCore
from durably.errors import UndecodableMessage
from durably.kafka.message import KafkaMessage
from durably.workflow import Workflow, declare_workflow

# The registered name of dead letters (the same in every app: workers find it by name).
DEAD_LETTER = "durably.kafka.dead_letter"


def dead_letter(message: KafkaMessage, error: str) -> None:
    """The run of a message that could not be decoded: fail, keeping the message."""
    raise UndecodableMessage(message.topic, message.partition, message.offset, error)


def declare_dead_letter(app: AppCore) -> Workflow[Any, None]:
    """The dead-letter workflow of ``app`` (registered once, for every consumer)."""
    return declare_workflow(app, dead_letter, DEAD_LETTER, max_recovery_attempts=50)
