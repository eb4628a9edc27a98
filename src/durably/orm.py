"""``durably.orm.session(conn)``: a SQLAlchemy ORM Session inside a transaction step.

The Session works on the connection the step received; its ``commit()`` and
``rollback()`` act on a savepoint within the step's transaction, which durably commits
together with the step's checkpoint. Needs SQLAlchemy 2 (``pip install
'durably[sqlalchemy]'``).
"""

from __future__ import annotations

import contextvars
import functools
from typing import TYPE_CHECKING, Any

from durably.errors import MissingDependency
from durably.store.orm_bridge import BorrowedConnection

try:
    import sqlalchemy
    import sqlalchemy.orm
    import sqlalchemy.pool
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise MissingDependency(
        "durably.orm needs SQLAlchemy 2: pip install 'durably[sqlalchemy]'"
    ) from exc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_current: contextvars.ContextVar[BorrowedConnection] = contextvars.ContextVar("durably_orm")


@functools.cache
def _engine() -> sqlalchemy.Engine:
    """One engine that never opens a connection of its own: each checkout is the
    connection of the session being made (NullPool: nothing is kept or reused)."""
    return sqlalchemy.create_engine(
        "postgresql+psycopg://",
        creator=_current.get,
        poolclass=sqlalchemy.pool.NullPool,
        # Its type lookups on connect check for a real psycopg connection; not needed.
        use_native_hstore=False,
    )


def session(conn: Any, **options: Any) -> Session:
    """A Session (``sqlalchemy.orm.Session(**options)``) on ``conn``, the connection a
    transaction step received. Use it as usual (``session.commit()`` and
    ``session.rollback()`` included), inside the step only."""
    _current.set(BorrowedConnection(conn))
    return sqlalchemy.orm.Session(_engine(), **options)
