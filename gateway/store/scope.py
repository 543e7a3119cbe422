"""Who may see which rows: the one SQL filter every listing of the store shares (jobs, reservations, receipts).

Owns: turning a caller's visible tenants, joint projects and an optional project filter into WHERE clauses
and their parameters, in either engine's placeholder style (`?` for SQLite, `%s` for PostgreSQL). It does not
decide who may see what (`gateway.trust.access` does) nor run any query.
"""

from __future__ import annotations

from collections.abc import Collection


def _in(column: str, values: Collection[str], mark: str) -> str:
    """`column IN (...)`; for no values a clause that is false in both engines (PostgreSQL refuses `IN ()`)."""
    return f"{column} IN ({','.join([mark] * len(values))})" if values else "1 = 0"


def scope_clauses(
    tenants: Collection[str] | None, project: str = "", or_projects: Collection[str] = (), mark: str = "?"
) -> tuple[list[str], list[object]]:
    """Clauses (to AND together) and their parameters: rows of `tenants` (None: every tenant) or of the joint
    `or_projects` whichever tenant owns them, and of `project` only when it is given. Each table filtered
    this way has `tenant` and `project` columns. `mark` is the engine's parameter placeholder."""
    clauses: list[str] = []
    params: list[object] = []
    if tenants is not None:
        scope = _in("tenant", tenants, mark)
        params.extend(tenants)
        if or_projects:
            scope = f"({scope} OR {_in('project', or_projects, mark)})"
            params.extend(or_projects)
        clauses.append(scope)
    if project:
        clauses.append(f"project = {mark}")
        params.append(project)
    return clauses, params
