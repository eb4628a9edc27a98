"""Ready-to-run statements of code versions (versions.sql, migration 0012).

Like ``statements.Statements``: the version methods of App and Client, and the census,
ask for these by name and never see SQL.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from durably.store import sqlfile
from durably.store.statements import Statement, bound

if TYPE_CHECKING:
    from durably.store.dialect import Dialect


class VersionStatements:
    """Builds the version statements for one schema; the SQL text is rendered once."""

    def __init__(self, schema: str, dialect: Dialect | None = None) -> None:
        self._sql = {
            name: sqlfile.statement(name, schema, dialect)
            for name in ("set_version", "stranded_versions")
        }

    def set_version(
        self,
        to_version: str,
        *,
        ids: Sequence[str] | None,
        from_version: str | None,
        status: Sequence[str] | None,
        name: str | None,
    ) -> Statement:
        """Move the unfinished workflows matching every filter given to ``to_version``;
        returns the IDs moved."""
        return bound(
            self._sql["set_version"],
            {
                "to_version": to_version,
                "ids": None if ids is None else list(ids),
                "from_version": from_version,
                "status": None if status is None else list(status),
                "name": name,
            },
        )

    def stranded_versions(self, names: Sequence[str], versions: Sequence[str]) -> Statement:
        """Versions of unfinished work of ``names``, outside ``versions``, that no live
        executor recovers, with how many workflows each."""
        return bound(
            self._sql["stranded_versions"], {"names": list(names), "versions": list(versions)}
        )


@functools.cache
def version_statements(schema: str, dialect: Dialect | None = None) -> VersionStatements:
    """The (shared, immutable) version statements of ``schema``."""
    return VersionStatements(schema, dialect)
