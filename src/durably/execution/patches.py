"""Patch markers: which side of a code change a replayed workflow takes (``durably.patched``).

A marker is an operation of kind ``patch`` named after the change. A run past its
history writes one where it first asks about the change, and takes the new code; a
replay takes the new code only where the marker was recorded. An execution recorded
before the change has something else at that position: it takes the old code, and
the question consumes no position, so the old code's operations keep their numbers.
"""

from __future__ import annotations

from durably.execution.context import WorkflowContext
from durably.execution.effects import Protocol
from durably.execution.protocol import guard, record
from durably.names import check_name
from durably.options import now

KIND = "patch"


def check_patch_name(name: object) -> str:
    """A patch name (such as 'new-pricing'): a name as ``durably.names`` allows."""
    return check_name(name, "patch name")


def decide(ctx: WorkflowContext, name: str) -> tuple[bool, int | None]:
    """Whether the workflow takes the new code of change ``name``, decided when the call
    is made; and the position to record the marker at (None: nothing to write)."""
    found = ctx.peek()
    if found is not None and found.kind == KIND and found.name == name:
        ctx.take_step()  # recorded by an earlier run of the new code
        return True, None
    if not ctx.past_history():
        # Recorded before the change (something else here, or a gap left by an operation
        # that never finished while later ones did): the old code, numbered as it was.
        return False, None
    return True, ctx.take_step()


def patched(ctx: WorkflowContext, name: str) -> Protocol[bool]:
    """``durably.patched``: decide now; write the marker (fenced) when this run is live."""
    answer, position = decide(ctx, name)
    return _mark(ctx, position, name, answer)


def _mark(ctx: WorkflowContext, position: int | None, name: str, answer: bool) -> Protocol[bool]:
    if position is not None:
        yield from guard(ctx)
        yield from record(ctx, position, name, KIND, now())
    return answer


def deprecate(ctx: WorkflowContext, name: str) -> bool:
    """``durably.deprecate_patch``: consume the marker of ``name`` if recorded at the
    next position; never write one. Whether a marker was consumed."""
    found = ctx.peek()
    if found is not None and found.kind == KIND and found.name == name:
        ctx.take_step()
        return True
    return False
