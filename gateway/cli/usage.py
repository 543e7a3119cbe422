"""`fedgate usage`: fetch every settled usage receipt the caller may read, verify each one, and total them.

Owns: the command's flags, trusting the federation CA bundle the caller already trusts (`--ca`, else the
credentials' `ca.pem`), verifying every receipt offline (`gateway.usage.receipts.settled_problems`: both
signatures, both certificates issued by that CA and naming the right SPIFFE URI), and the report of
card-hours and normalised compute (card-hours x the class's dense BF16 PFLOPS from the catalogue) per
tenant, project, site and class. Each (job, epoch, site) counts once: a receipt copied in the database is
named and counted once. Ended attempts of the caller's jobs with no receipt are named (a deleted receipt, or
one the gateway refused: see `receipt.refused` in the audit log). Exit codes: 0 every receipt verified and
none duplicated; 1 a receipt did not verify or was duplicated (each is named on stderr and left out of the
totals, or counted once) or the call was refused; 2 bad usage; 3 gateway unreachable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.app.config import REPO_POLICIES
from gateway.cli import output
from gateway.cli.connect import (
    EPILOG,
    EXIT_FAILED,
    EXIT_OK,
    add_connection_flags,
    client_from_args,
    connection_from_args,
    run_command,
)
from gateway.errors import ConfigError, IdentityError, InvalidArgument
from gateway.identity.principal import spiffe_uri_of
from gateway.jobs.model import Job
from gateway.jobs.specfile import parse_duration
from gateway.policy import load_catalogue
from gateway.policy.catalogue import Catalogue
from gateway.usage.receipts import RECEIPT_STATES, SettledReceipt, settled_problems

COLUMNS = [
    ("tenant", "TENANT"),
    ("project", "PROJECT"),
    ("site", "SITE"),
    ("accelerator_class", "CLASS"),
    ("receipts", "RECEIPTS"),
    ("card_hours", "CARD-HOURS"),
    ("normalised_pflops_hours", "PFLOPS-HOURS"),
]
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="fedgate usage",
        description=(
            "Fetch every signed usage receipt you may read, verify the site's signature and the gateway's "
            "countersignature of each against the federation CA, and total card-hours and normalised compute "
            "per tenant, project, site and class. Exits 1 naming any receipt that does not verify."
        ),
        epilog=EPILOG,
    )
    top.add_argument(
        "--since", default="", metavar="WHEN", help="attempts that ended at or after: 7d (ago) or ISO (default: all)"
    )
    top.add_argument(
        "--until", default="", metavar="WHEN", help="attempts that ended before: 1d (ago) or ISO (default: now)"
    )
    top.add_argument("--project", default="", help="only this project")
    top.add_argument(
        "--catalogue",
        type=Path,
        default=REPO_POLICIES / "accelerators.yaml",
        metavar="FILE",
        help="accelerator catalogue for normalised compute (default: the one shipped with fedgate)",
    )
    add_connection_flags(top)
    output.add_output_flag(top)
    return top


def parse_time(text: str, flag: str, now: datetime | None = None) -> datetime:
    """A duration ago (`7d`, `24h`, `90m`: as `fedgate job usage --since` takes) or an ISO-8601 time (a date alone
    is midnight UTC; no zone means UTC)."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except InvalidArgument:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r} is neither a duration ago like 7d or 24h nor an ISO-8601 time like 2026-11-01 or"
            " 2026-11-01T08:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def trusted_authorities(args: argparse.Namespace) -> tuple[list[x509.Certificate], str]:
    """The federation CA bundle to verify against (--ca, else the credentials' or the context's ca), and the
    federation it names."""
    path = connection_from_args(args, need_credentials=False).ca
    if path is None:
        raise ConfigError("no CA bundle to verify receipts against: pass --creds DIR or --ca FILE, or use a context")
    try:
        authorities = x509.load_pem_x509_certificates(path.expanduser().read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the federation CA bundle {path}: {exc}") from None
    for authority in authorities:
        try:
            return authorities, spiffe_uri_of(authority).removeprefix("spiffe://")
        except IdentityError:
            continue
    raise ConfigError(f"{path} holds no federation CA (a CA certificate with a spiffe:// URI)")


def totals(receipts: Sequence[SettledReceipt], catalogue: Catalogue) -> list[dict[str, Any]]:
    """One row per (tenant, project, site, class) of verified receipts, sorted."""
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for settled in receipts:
        r = settled.record
        assert r is not None, "only verified receipts are totalled"
        key = (r.tenant, r.project, r.site, r.accelerator_class)
        row = rows.setdefault(key, dict(zip(("tenant", "project", "site", "accelerator_class"), key, strict=True)))
        row["receipts"] = row.get("receipts", 0) + 1
        row["card_hours"] = row.get("card_hours", 0.0) + r.card_hours
    for row in rows.values():
        row["normalised_pflops_hours"] = catalogue.normalised_compute(row["accelerator_class"], row["card_hours"])
    return [rows[k] for k in sorted(rows)]


def missing_receipts(
    jobs: Sequence[Job], settled: set[tuple[str, int, str]], start: datetime, end: datetime | None
) -> list[tuple[str, int, str]]:
    """(job, epoch, site) of the last attempts of `jobs` that ran, ended in [start, end) and have no verified
    receipt among `settled`. (Earlier attempts of a job, preempted or lost, are not listed to clients.)"""
    missing = []
    for job in jobs:
        if job.start_time is None or job.end_time is None or job.state not in RECEIPT_STATES:
            continue
        if job.end_time < start or (end is not None and job.end_time >= end):
            continue
        missing += [
            (job.job_id, job.epoch, p.site) for p in job.placements if (job.job_id, job.epoch, p.site) not in settled
        ]
    return missing


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    prog = "fedgate usage"

    def action() -> int:
        start = parse_time(args.since, "--since") if args.since else BEGINNING
        end = parse_time(args.until, "--until") if args.until else None
        authorities, federation = trusted_authorities(args)
        catalogue = load_catalogue(args.catalogue)
        with client_from_args(args) as client:
            receipts = client.list_usage_receipts(start, end, args.project)
            jobs = client.list_jobs(project=args.project, states=tuple(RECEIPT_STATES), limit=100_000)
        good: list[tuple[SettledReceipt, list[str]]] = []
        bad: list[tuple[SettledReceipt, list[str]]] = []
        seen: set[tuple[str, int, str]] = set()
        duplicates = 0
        for settled in receipts:
            problems = settled_problems(settled, authorities, federation)
            if not problems and settled.record is not None:
                key = (settled.record.job_id, settled.record.epoch, settled.record.site)
                if key in seen:  # one receipt per attempt and site: a copy bills nothing
                    duplicates += 1
                    _warn(prog, f"receipt of {settled.describe()} appears more than once; counted once")
                    continue
                seen.add(key)
            (bad if problems else good).append((settled, problems))
        print(output.render(totals([s for s, _ in good], catalogue), COLUMNS, args.output))
        for settled, problems in bad:
            _warn(prog, f"receipt of {settled.describe()} does not verify: {'; '.join(problems)}")
        for job_id, epoch, site in missing_receipts(jobs, seen, start, end):
            _warn(prog, f"job {job_id} epoch {epoch} ended at {site} without a settled receipt")
        if bad:
            _warn(prog, f"{len(bad)} of {len(receipts)} receipts did not verify and are left out of the totals")
        if duplicates:
            _warn(prog, f"{duplicates} duplicate receipts were counted once")
        return EXIT_FAILED if bad or duplicates else EXIT_OK

    return run_command(prog, action)


def _warn(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr)
