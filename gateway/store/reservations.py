"""The SQLite table of advance reservations, and their JSON encoding.

Owns: the SQL (the table is in `gateway.store.sqlite_schema`) of the reservation part of the `Store` contract, as a
mixin over `SqliteStore`'s connection and lock (like `gateway.store.security`), and `reservation_to_json` /
`reservation_from_json`. Reservations are kept as a JSON body plus the columns that queries filter on. It decides
nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.jobs.model import Capability, Reason, Resources
from gateway.reservations.model import Reservation, ReservationPart, ReservationRequest, ReservationState
from gateway.store.scope import scope_clauses

LIVE = tuple(s.value for s in ReservationState if s.live)


@dataclass(frozen=True)
class ReservationPage:
    reservations: tuple[Reservation, ...]
    next_page_token: str


def _resources_to_json(resources: Resources) -> dict[str, Any]:
    cap = resources.capability
    return {
        "class": resources.accelerator_class,
        "capability": None if cap is None else [cap.min_memory_gib, cap.min_bf16_tflops, list(cap.stacks)],
        "cards": resources.cards,
    }


def _resources_from_json(data: dict[str, Any]) -> Resources:
    cap = data["capability"]
    capability = None if cap is None else Capability(cap[0], cap[1], tuple(cap[2]))
    return Resources(data["class"], capability, data["cards"])


def reservation_to_json(reservation: Reservation) -> str:
    request = reservation.request
    return json.dumps(
        {
            "reservation_id": reservation.reservation_id,
            "tenant": request.tenant,
            "project": request.project,
            "name": request.name,
            "resources": _resources_to_json(request.resources),
            "start": request.start.isoformat(),
            "end": request.end.isoformat(),
            "sites": list(request.sites),
            "max_sites": request.max_sites,
            "state": reservation.state.value,
            "create_time": reservation.create_time.isoformat(),
            "update_time": reservation.update_time.isoformat(),
            "parts": [[p.site, p.accelerator_class, p.cards, p.state.value, p.reason] for p in reservation.parts],
            "reasons": [[r.stage, r.code, r.message, r.site] for r in reservation.reasons],
            "request_id": reservation.request_id,
            "owner": reservation.owner,
            "classes": list(reservation.classes),
            "request_fingerprint": reservation.request_fingerprint,
        },
        separators=(",", ":"),
    )


def reservation_from_json(text: str) -> Reservation:
    data = json.loads(text)
    request = ReservationRequest(
        tenant=data["tenant"],
        project=data["project"],
        resources=_resources_from_json(data["resources"]),
        start=datetime.fromisoformat(data["start"]),
        end=datetime.fromisoformat(data["end"]),
        name=data["name"],
        sites=tuple(data["sites"]),
        max_sites=data["max_sites"],
    )
    return Reservation(
        reservation_id=data["reservation_id"],
        request=request,
        state=ReservationState(data["state"]),
        create_time=datetime.fromisoformat(data["create_time"]),
        update_time=datetime.fromisoformat(data["update_time"]),
        parts=tuple(ReservationPart(s, c, n, ReservationState(st), why) for s, c, n, st, why in data["parts"]),
        reasons=tuple(Reason(*r) for r in data["reasons"]),
        request_id=data["request_id"],
        owner=data["owner"],
        classes=tuple(data["classes"]),
        request_fingerprint=data.get("request_fingerprint", ""),  # absent in rows written before it was kept
    )


class ReservationTables:
    _db: sqlite3.Connection
    _lock: threading.Lock

    def create_reservation(self, reservation: Reservation) -> tuple[Reservation, bool]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if reservation.request_id:
                    row = self._db.execute(
                        "SELECT body FROM reservations WHERE tenant = ? AND request_id = ?",
                        (reservation.tenant, reservation.request_id),
                    ).fetchone()
                    if row is not None:
                        self._db.execute("COMMIT")
                        return reservation_from_json(row[0]), False
                self._db.execute(
                    "INSERT INTO reservations (reservation_id, tenant, project, state, request_id, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        reservation.reservation_id,
                        reservation.tenant,
                        reservation.project,
                        reservation.state.value,
                        reservation.request_id or None,
                        reservation_to_json(reservation),
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return reservation, True

    def save_reservation(self, reservation: Reservation) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE reservations SET state = ?, body = ? WHERE reservation_id = ?",
                (reservation.state.value, reservation_to_json(reservation), reservation.reservation_id),
            )

    def get_reservation(self, reservation_id: str) -> Reservation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM reservations WHERE reservation_id = ?", (reservation_id,)
            ).fetchone()
        return reservation_from_json(row[0]) if row else None

    def reservation_by_request(self, tenant: str, request_id: str) -> Reservation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM reservations WHERE tenant = ? AND request_id = ?", (tenant, request_id)
            ).fetchone()
        return reservation_from_json(row[0]) if row else None

    def list_reservations(
        self,
        tenants: Collection[str] | None,
        project: str = "",
        page_size: int = 100,
        page_token: str = "",
        or_projects: Collection[str] = (),
    ) -> ReservationPage:
        clauses, params = ["reservation_id > ?"], list[object]([page_token])
        scoped, scope_params = scope_clauses(tenants, project, or_projects)
        clauses.extend(scoped)
        params.extend(scope_params)
        where = " AND ".join(clauses)
        sql = f"SELECT reservation_id, body FROM reservations WHERE {where} ORDER BY reservation_id LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, page_size + 1)).fetchall()
        found = tuple(reservation_from_json(body) for _, body in rows[:page_size])
        return ReservationPage(found, rows[page_size - 1][0] if len(rows) > page_size else "")

    def live_reservations(self) -> tuple[Reservation, ...]:
        marks = ",".join("?" * len(LIVE))
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM reservations WHERE state IN ({marks}) ORDER BY reservation_id", LIVE
            ).fetchall()
        return tuple(reservation_from_json(body) for (body,) in rows)
