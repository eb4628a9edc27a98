"""Log context: records logged while a workflow or step runs say which (a logging filter).

Add ``durably.log_context()`` (a ``ContextFilter``) to a handler, and every record it
handles gets ``workflow_id``, ``workflow_name``, ``step`` (the step's number) and
``step_name`` attributes: those of the workflow and step running where the record was
logged, or None outside one. A record that already has one of them (durably's own, which
pass them as ``extra``) keeps it. Formatters use them as ``%(workflow_id)s``; structlog,
rendering standard-library records through ``ProcessorFormatter``, finds them on the
record (``ExtraAdder``). Works without any optional extra.
"""

from __future__ import annotations

import logging

from durably.execution.context import current_workflow, in_step, step_name

FIELDS = ("workflow_id", "workflow_name", "step", "step_name")


class ContextFilter(logging.Filter):
    """Adds the running workflow's ID and name and the running step's number and name to
    each record (None outside a workflow); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_workflow.get()
        position = in_step.get() if ctx is not None else None
        values = (
            ctx.workflow_id if ctx is not None else None,
            ctx.name if ctx is not None else None,
            position,
            step_name.get() if position is not None else None,
        )
        for field, value in zip(FIELDS, values, strict=True):
            if not hasattr(record, field):
                setattr(record, field, value)
        return True


def log_context() -> ContextFilter:
    """A logging filter that adds ``workflow_id``, ``workflow_name``, ``step`` and
    ``step_name`` to every record logged in a workflow or step (None elsewhere), for a
    format to show: ``handler.addFilter(durably.log_context())``."""
    return ContextFilter()
