"""`fedgate reservation create|get|list|cancel`: book cards ahead for a project, a thin shell over
`FederationClient`. Each prints table, JSON or YAML (`-o`) and exits with a code from `gateway.cli.connect`;
`create --wait` exits 0 only once every site confirmed.

Owns: the arguments and printing of the reservation commands, and waiting for confirmation with `--wait`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli import output
from gateway.cli.connect import EPILOG, EXIT_FAILED, EXIT_OK, add_connection_flags, client_from_args, run_command
from gateway.errors import GatewayError
from gateway.jobs.model import Capability, Resources
from gateway.reservations.file import parse_reservation, parse_time
from gateway.reservations.model import Reservation, ReservationRequest, ReservationState
from gateway.transport.client import FederationClient

COLUMNS = [
    ("reservation_id", "RESERVATION"),
    ("tenant", "TENANT"),
    ("project", "PROJECT"),
    ("state", "STATE"),
    ("class", "CLASS"),
    ("cards", "CARDS"),
    ("start", "START"),
    ("end", "END"),
    ("sites", "SITES"),
    ("reason", "REASON"),
]
PART_COLUMNS = [("site", "SITE"), ("class", "CLASS"), ("cards", "CARDS"), ("state", "STATE"), ("reason", "REASON")]
EXAMPLE = """example file (-f):
  apiVersion: fedgate.io/v1
  kind: Reservation
  metadata: {name: sft-sprint, project: llama-sft}
  spec:
    resources: {class: ascend-910b, cards: 16}
    start: 2026-12-01T08:00:00Z      # or +2h: from now
    end: +12h                        # ISO-8601, or +DURATION after the start
    maxSites: 2
"""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="fedgate reservation", description="Book accelerator cards ahead for a project.", epilog=EPILOG
    )
    sub = top.add_subparsers(dest="command", required=True)
    create = sub.add_parser(
        "create",
        help="book N cards of a class or capability for a time window",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("-f", "--file", type=Path, help="reservation YAML (instead of the flags below)")
    create.add_argument("--tenant", default="", help="default: your certificate's tenant")
    create.add_argument("--project", default="")
    create.add_argument("--name", default="")
    create.add_argument("--class", dest="accelerator_class", default="", help="an accelerator class, e.g. ascend-910b")
    create.add_argument("--min-memory-gib", type=float, default=0.0, help="capability: memory per card")
    create.add_argument("--min-bf16-tflops", type=float, default=0.0, help="capability: dense BF16 TFLOPS per card")
    create.add_argument("--stacks", default="", help="capability: software stacks, comma separated (cuda,cann)")
    create.add_argument("--cards", type=int, default=0)
    create.add_argument("--start", default="", help="ISO-8601 with a zone, or +DURATION from now (+2h)")
    create.add_argument("--end", default="", help="ISO-8601 with a zone, or +DURATION after the start (+12h)")
    create.add_argument("--site", action="append", default=[], help="a site it may use (repeat); default: any")
    create.add_argument("--max-sites", type=int, default=1, help="split over at most this many sites (default 1)")
    create.add_argument("--request-id", default=None, help="idempotency key (default: random)")
    create.add_argument("--wait", action="store_true", help="wait for the sites; exit 0 only if they confirmed")
    create.add_argument("--wait-timeout", type=float, default=60.0, help="seconds --wait waits (default 60)")
    get = sub.add_parser("get", help="show one reservation and its parts")
    get.add_argument("reservation_id")
    lst = sub.add_parser("list", help="list reservations you may see")
    lst.add_argument("--project", default="")
    lst.add_argument("--limit", type=int, default=1000)
    cancel = sub.add_parser("cancel", help="cancel a reservation; its sites release the cards")
    cancel.add_argument("reservation_id")
    cancel.add_argument("--reason", default="")
    for p in (create, get, lst, cancel):
        add_connection_flags(p)
        output.add_output_flag(p)
    return top


def request_from_args(args: argparse.Namespace, now: datetime) -> ReservationRequest:
    """The request the flags (or the file) describe. Raises GatewayError naming the missing flag."""
    if args.file is not None:
        return parse_reservation(args.file, str(args.file), default_tenant=args.tenant, now=now)
    missing = [
        flag
        for flag, value in (
            ("--project", args.project),
            ("--cards", args.cards),
            ("--start", args.start),
            ("--end", args.end),
        )
        if not value
    ]
    if missing:
        raise GatewayError(f"give {', '.join(missing)} (or -f FILE)", reason="USAGE")
    stacks = tuple(s.strip() for s in args.stacks.split(",") if s.strip())
    wants_capability = bool(args.min_memory_gib or args.min_bf16_tflops or stacks)
    if bool(args.accelerator_class) == wants_capability:
        raise GatewayError(
            "give --class, or a capability (--min-memory-gib, --min-bf16-tflops, --stacks), not both", reason="USAGE"
        )
    capability = Capability(args.min_memory_gib, args.min_bf16_tflops, stacks) if wants_capability else None
    start = parse_time(args.start, now)
    return ReservationRequest(
        tenant=args.tenant,
        project=args.project,
        name=args.name,
        resources=Resources(args.accelerator_class, capability, args.cards),
        start=start,
        end=parse_time(args.end, start),
        sites=tuple(args.site),
        max_sites=args.max_sites,
    )


def reservation_row(reservation: Reservation) -> dict[str, Any]:
    """One reservation as a row; JSON/YAML also get its parts and reasons."""
    resources = reservation.request.resources
    held = reservation.held_parts
    classes = sorted({p.accelerator_class for p in held}) or [resources.accelerator_class or "capability"]
    return {
        "reservation_id": reservation.reservation_id,
        "tenant": reservation.tenant,
        "project": reservation.project,
        "name": reservation.request.name,
        "state": reservation.state.value,
        "class": ",".join(classes),
        "cards": resources.cards,
        "start": reservation.start,
        "end": reservation.end,
        "sites": [p.site for p in held],
        "reason": reservation.reasons[-1].message if reservation.reasons else "",
        "created": reservation.create_time,
        "parts": [part_row(p) for p in reservation.parts],
        "reasons": [output.reason_row(r) for r in reservation.reasons],
    }


def part_row(part: Any) -> dict[str, Any]:
    return {
        "site": part.site,
        "class": part.accelerator_class,
        "cards": part.cards,
        "state": part.state.value,
        "reason": part.reason,
    }


def _print(reservations: Sequence[Reservation], fmt: str, parts: bool = False) -> None:
    rows = [reservation_row(r) for r in reservations]
    print(output.render(rows, COLUMNS, fmt))
    if parts and fmt == "table":
        for reservation in reservations:
            print()
            print(output.render([part_row(p) for p in reservation.parts], PART_COLUMNS, fmt))


def _wait(client: FederationClient, reservation: Reservation, timeout: float) -> Reservation:
    """Poll until the sites have answered (bounded by `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while reservation.state == ReservationState.PENDING and time.monotonic() < deadline:
        time.sleep(0.25)
        reservation = client.get_reservation(reservation.reservation_id)
    return reservation


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)

    def action() -> int:
        if args.command == "create":
            request = request_from_args(args, datetime.now(UTC))  # a bad file fails before any connection
        with client_from_args(args) as client:
            if args.command == "create":
                reservation = client.create_reservation(request, args.request_id)
                if args.wait:
                    reservation = _wait(client, reservation, args.wait_timeout)
                _print([reservation], args.output, parts=True)
                if args.wait and reservation.state not in (ReservationState.CONFIRMED, ReservationState.ACTIVE):
                    return EXIT_FAILED
            elif args.command == "get":
                _print([client.get_reservation(args.reservation_id)], args.output, parts=True)
            elif args.command == "list":
                _print(client.list_reservations(args.project, args.limit), args.output)
            elif args.command == "cancel":
                _print([client.cancel_reservation(args.reservation_id, args.reason)], args.output)
        return EXIT_OK

    return run_command(f"fedgate reservation {args.command}", action)
