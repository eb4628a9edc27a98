"""A griffe extension for the API reference: the methods made by ``x, x_async = twins(_x)``.

``durably.twins`` (and ``durably.outbox.in_transaction``, whose methods take the caller's
connection first) make a public method and its ``_async`` twin from one private builder
at import time. Griffe reads the source without importing it, so it sees neither method;
this extension adds both to their class with the builder's parameters and docstring, and
the result type that the builder's ``Job[T]`` names (an ``async`` method for the twin).
"""

from __future__ import annotations

import ast
from typing import Any

import griffe

# What each factory adds before the builder's own parameters (after ``self``): the
# connection of ``in_transaction``'s methods, blocking for one and async for the other.
FACTORIES: dict[str, tuple[str | None, str | None]] = {
    "twins": (None, None),
    "in_transaction": ("psycopg.Connection", "psycopg.AsyncConnection"),
}


class Twins(griffe.Extension):
    """Add the two methods of each ``twins(_builder)`` assignment in a class body."""

    def on_class_members(
        self, *, node: ast.AST | griffe.ObjectNode, cls: griffe.Class, **_: Any
    ) -> None:
        if not isinstance(node, ast.ClassDef):
            return
        for statement in node.body:
            made = _twin_names(statement)
            if made is None:
                continue
            sync_name, async_name, builder_name, factory = made
            builder = cls.members.get(builder_name)
            if not isinstance(builder, griffe.Function):
                continue
            returns = _job_result(builder.returns)
            for name, is_async in ((sync_name, False), (async_name, True)):
                doc = (
                    f"Async twin of [`{sync_name}`][{cls.path}.{sync_name}]."
                    if is_async
                    else (builder.docstring.value if builder.docstring else "")
                )
                connection = FACTORIES[factory][is_async]
                method = griffe.Function(
                    name,
                    parameters=_with_connection(builder.parameters, connection),
                    returns=returns,
                    lineno=statement.lineno,
                    endlineno=statement.end_lineno,
                    docstring=griffe.Docstring(doc, parent=None) if doc else None,
                )
                if is_async:
                    method.labels.add("async")
                cls.set_member(name, method)
                if method.docstring is not None:
                    method.docstring.parent = method


def _twin_names(statement: ast.stmt) -> tuple[str, str, str, str] | None:
    """``(x, x_async, _x, factory)`` for ``x, x_async = factory(_x)``, else None."""
    if not (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Tuple)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Name)
        and statement.value.func.id in FACTORIES
        and len(statement.value.args) == 1
        and isinstance(statement.value.args[0], ast.Name)
    ):
        return None
    names = [t.id for t in statement.targets[0].elts if isinstance(t, ast.Name)]
    if len(names) != 2:
        return None
    return names[0], names[1], statement.value.args[0].id, statement.value.func.id


def _with_connection(parameters: griffe.Parameters, annotation: str | None) -> griffe.Parameters:
    """The builder's parameters, with a positional-only ``conn`` after ``self`` if asked."""
    if annotation is None:
        return parameters
    listed = list(parameters)
    conn = griffe.Parameter(
        "conn", annotation=annotation, kind=griffe.ParameterKind.positional_only
    )
    first = listed[0]
    self_only = griffe.Parameter(
        first.name, annotation=first.annotation, kind=griffe.ParameterKind.positional_only
    )
    return griffe.Parameters(self_only, conn, *listed[1:])


def _job_result(returns: Any) -> Any:
    """``T`` of a builder's ``Job[T]`` or ``Borrowing[T]`` (what both twins return)."""
    if isinstance(returns, griffe.ExprSubscript) and str(returns.left) in ("Job", "Borrowing"):
        return returns.slice
    return returns
