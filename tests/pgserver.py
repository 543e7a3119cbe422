"""A real, throw-away PostgreSQL for tests: the demo's cluster (`gateway.demo.pgcluster`), plus one fresh
database per test.

Owns: creating and dropping those databases. It does not decide whether a missing PostgreSQL skips or fails a
test: `tests.conftest.require_service` does.
"""

from __future__ import annotations

import uuid

import psycopg

from gateway.demo.pgcluster import PgCluster, PostgresUnavailable, start_cluster

__all__ = ["PgServer", "PostgresUnavailable", "start_server"]


class PgServer(PgCluster):
    """A running test cluster. `url(dbname)` is a libpq URL for one of its databases."""

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_server() -> PgServer:
    """initdb a fresh cluster in a temp dir and start it on a free loopback port. Raises PostgresUnavailable
    when it cannot run here, RuntimeError when it fails to start (with its log)."""
    return start_cluster(PgServer)
