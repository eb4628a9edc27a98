"""Per-call options of a workflow start, validated before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from durably.errors import InvalidArgument

MAX_ID_LENGTH = 512


@dataclass(frozen=True, slots=True)
class WorkflowOptions:
    """Options set with ``wf.options(...)`` for the next start."""

    id: str | None = None
    timeout: float | None = None

    def validate(self) -> None:
        if self.id is not None:
            check_workflow_id(self.id)
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not self.timeout > 0
        ):
            raise InvalidArgument(
                f"timeout must be a positive number of seconds, got {self.timeout!r}"
            )


def check_workflow_id(workflow_id: object) -> str:
    """A workflow ID must be a non-empty string of printable text."""
    if not isinstance(workflow_id, str):
        raise InvalidArgument(f"a workflow id must be a string, got {type(workflow_id).__name__}")
    if not workflow_id or len(workflow_id) > MAX_ID_LENGTH:
        raise InvalidArgument(
            f"a workflow id must have 1 to {MAX_ID_LENGTH} characters, got {len(workflow_id)}"
        )
    if "\x00" in workflow_id:
        raise InvalidArgument("a workflow id cannot contain NUL characters")
    return workflow_id
