"""The PostgreSQL table of advance reservations, as a mixin over `PostgresStore`'s connection.

Owns: the SQL of the reservation part of the `Store` contract on PostgreSQL. The JSON body is SQLite's
(`gateway.store.reservations.reservation_to_json`) and listings share its scope filter. It decides nothing.
"""

from __future__ import annotations

from collections.abc import Collection

from gateway.reservations.model import Reservation, ReservationState
from gateway.store.postgres.connection import PgConnection
from gateway.store.reservations import ReservationPage, reservation_from_json, reservation_to_json
from gateway.store.scope import scope_clauses

LIVE = [s.value for s in ReservationState if s.live]


class PgReservationTables(PgConnection):
    def create_reservation(self, reservation: Reservation) -> tuple[Reservation, bool]:
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO reservations (reservation_id, tenant, project, state, request_id, body) "
                "VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, request_id) WHERE request_id IS NOT NULL DO NOTHING RETURNING reservation_id",
                (
                    reservation.reservation_id,
                    reservation.tenant,
                    reservation.project,
                    reservation.state.value,
                    reservation.request_id or None,
                    reservation_to_json(reservation),
                ),
            ).fetchone()
            if row is not None:
                return reservation, True
            stored = conn.execute(
                "SELECT body FROM reservations WHERE tenant = %s AND request_id = %s",
                (reservation.tenant, reservation.request_id),
            ).fetchone()
        assert stored is not None, "a conflict on (tenant, request_id) means that row exists"
        return reservation_from_json(str(stored[0])), False

    def save_reservation(self, reservation: Reservation) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE reservations SET state = %s, body = %s WHERE reservation_id = %s",
                (reservation.state.value, reservation_to_json(reservation), reservation.reservation_id),
            )

    def get_reservation(self, reservation_id: str) -> Reservation | None:
        with self._read() as conn:
            row = conn.execute("SELECT body FROM reservations WHERE reservation_id = %s", (reservation_id,)).fetchone()
        return reservation_from_json(str(row[0])) if row else None

    def reservation_by_request(self, tenant: str, request_id: str) -> Reservation | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT body FROM reservations WHERE tenant = %s AND request_id = %s", (tenant, request_id)
            ).fetchone()
        return reservation_from_json(str(row[0])) if row else None

    def list_reservations(
        self,
        tenants: Collection[str] | None,
        project: str = "",
        page_size: int = 100,
        page_token: str = "",
        or_projects: Collection[str] = (),
    ) -> ReservationPage:
        clauses, params = ["reservation_id > %s"], list[object]([page_token])
        scoped, scope_params = scope_clauses(tenants, project, or_projects, mark="%s")
        clauses.extend(scoped)
        params.extend(scope_params)
        where = " AND ".join(clauses)
        sql = f"SELECT reservation_id, body FROM reservations WHERE {where} ORDER BY reservation_id LIMIT %s"
        with self._read() as conn:
            rows = conn.execute(sql, (*params, page_size + 1)).fetchall()
        found = tuple(reservation_from_json(str(body)) for _, body in rows[:page_size])
        return ReservationPage(found, str(rows[page_size - 1][0]) if len(rows) > page_size else "")

    def live_reservations(self) -> tuple[Reservation, ...]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT body FROM reservations WHERE state = ANY(%s) ORDER BY reservation_id", (LIVE,)
            ).fetchall()
        return tuple(reservation_from_json(str(body)) for (body,) in rows)
