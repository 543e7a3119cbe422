"""One numbered schema migration, the unit of both engines' schema lists (`gateway.store.sqlite_schema`,
`gateway.store.postgres.schema`).

Owns: `Migration`. Version N is the N-th entry of an engine's list, with the same name and the same tables and
columns on both engines; a released migration is never edited.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    """A script of statements, run inside the caller's transaction (no BEGIN or COMMIT of its own)."""
