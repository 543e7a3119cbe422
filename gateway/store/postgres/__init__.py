"""The PostgreSQL store (psycopg 3): the `Store` contract for federations that outgrow one machine.

Owns: nothing beyond its modules: `store` (the class and the jobs' SQL), `schema` (numbered migrations),
`connection` (one connection, its lock and error mapping), and the table mixins `reservations`, `receipts`
and `security`. Opened by `gateway.store.open_store` for `postgresql://` URLs; only this package imports
psycopg.
"""

from gateway.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
