"""`fedgate admin join-token|token|revoke|revocation|audit`: the admin's trust commands, a thin shell over the client.

`audit verify --store URL --authority DIR` checks the log offline, straight from the database, so that the
verdict does not depend on the gateway being honest about itself.

Owns: the arguments and printing of the admin's trust commands, and the offline audit check; the listings of
join tokens, tokens and revocations are views of the audit log (`gateway.cli.trustlists`).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from gateway.cli import output, trustlists
from gateway.cli.connect import EXIT_FAILED, EXIT_OK, client_from_args
from gateway.jobs.specfile import parse_duration


def add_trust_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[argparse.ArgumentParser]:
    """Add the trust command groups to `fedgate admin`; returns the parsers that talk to a gateway."""
    join = groups.add_parser("join-token", help="one-time tokens with which a centre enrols its agent")
    join_cmds = join.add_subparsers(dest="command", required=True)
    create = join_cmds.add_parser("create", help="create a join token bound to one site")
    create.add_argument("--site", required=True)
    create.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 2d (at most 7 days)")
    join_list = join_cmds.add_parser("list", help="join tokens created: unused, used, expired or revoked")

    token = groups.add_parser("token", help="short-lived signed tokens for CI systems")
    token_cmds = token.add_subparsers(dest="command", required=True)
    issue = token_cmds.add_parser("issue", help="issue a token for a tenant's machine user")
    issue.add_argument("--tenant", required=True)
    issue.add_argument("--user", required=True, help="the machine user, e.g. ci-bot")
    issue.add_argument("--role", default="member", choices=["member", "viewer"])
    issue.add_argument("--ttl", default="15m", help="lifetime (at most 24h)")
    issue.add_argument("--single-use", action="store_true", help="refuse the token after its first use")
    token_list = token_cmds.add_parser("list", help="tokens issued (ids, never the tokens): valid, expired, revoked")

    revoke = groups.add_parser("revoke", help="revoke a certificate, a principal or a token")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--serial",
        help="certificate serial as OpenSSL prints it (hexadecimal; colons, leading zeros, either case) or dec:N",
    )
    target.add_argument("--principal", help="principal URI: every certificate issued to it until now")
    target.add_argument("--token-id", help="a token's id (jti)")
    revoke.add_argument("--reason", default="")
    revoke.set_defaults(command="revoke")

    revocations = groups.add_parser("revocation", help="revocations in force").add_subparsers(
        dest="command", required=True
    )
    revocation_list = revocations.add_parser("list", help="every revocation: serials, principals and token ids")

    audit = groups.add_parser("audit", help="the hash-chained audit log")
    audit_cmds = audit.add_subparsers(dest="command", required=True)
    listing = audit_cmds.add_parser("list", help="show audit entries")
    listing.add_argument("--limit", type=int, default=200)
    verify = audit_cmds.add_parser("verify", help="check that no entry was edited, removed or inserted")
    verify.add_argument(
        "--store",
        help="verify offline from this store URL: sqlite:///RELATIVE (to the current directory), "
        "sqlite:////ABSOLUTE, postgresql://...; a store that does not exist is refused",
    )
    verify.add_argument("--authority", type=Path, help="with --store: the authority directory (audit key)")
    verify.add_argument(
        "--checkpoint",
        type=Path,
        help="with --store: the gateway's signed audit checkpoint (default: audit-checkpoint.json in --authority)",
    )
    for lister in (join_list, token_list, revocation_list):
        lister.add_argument("--limit", type=int, default=100_000, help="audit entries read at most")
    return [create, join_list, issue, token_list, revoke, revocation_list, listing, verify]


def run_trust_command(args: argparse.Namespace) -> int:
    if args.group == "audit" and args.command == "verify" and args.store:
        return _verify_offline(args)
    with client_from_args(args) as client:
        if args.command == "list" and args.group in {"join-token", "token", "revocation"}:
            entries, now = client.audit_events(args.limit), datetime.now(UTC)
            if args.group == "join-token":
                print(
                    output.render(trustlists.join_token_rows(entries, now), trustlists.JOIN_TOKEN_COLUMNS, args.output)
                )
            elif args.group == "token":
                print(output.render(trustlists.token_rows(entries, now), trustlists.TOKEN_COLUMNS, args.output))
            else:
                print(output.render(trustlists.revocation_rows(entries), trustlists.REVOCATION_COLUMNS, args.output))
        elif args.group == "join-token":
            joined = client.create_join_token(args.site, parse_duration(args.ttl))
            row = {
                "site": args.site,
                "join_token": joined.token,
                "expires": joined.expire_time,
                "ca_fingerprint": joined.ca_fingerprint,
                "enroll": f"fedgate agent enroll --gateway <public host:port> --site {args.site} --token "
                f"{joined.token} --ca-fingerprint {joined.ca_fingerprint} --out <dir>",
            }
            print(output.render_record(row, args.output))
        elif args.group == "token":
            issued = client.issue_token(args.tenant, args.user, args.role, parse_duration(args.ttl), args.single_use)
            row = {
                "token": issued.token,
                "token_id": issued.token_id,
                "expires": issued.expire_time,
                "audience": issued.audience,
            }
            print(output.render_record(row, args.output))
        elif args.group == "revoke":
            revocation = client.revoke(
                serial=args.serial or "",
                principal=args.principal or "",
                token_id=args.token_id or "",
                reason=args.reason,
            )
            row = {
                "revoked": revocation.kind,
                "value": revocation.value,
                "at": revocation.time,
                "reason": revocation.reason,
            }
            print(output.render_record(row, args.output))
        elif args.command == "list":
            rows = [
                {
                    "seq": e.sequence,
                    "time": e.time,
                    "kind": e.kind,
                    "principal": e.principal,
                    "details": " ".join(f"{k}={v}" for k, v in sorted(e.details.items())),
                }
                for e in client.audit_events(args.limit)
            ]
            columns = [
                ("seq", "SEQ"),
                ("time", "TIME"),
                ("kind", "KIND"),
                ("principal", "PRINCIPAL"),
                ("details", "DETAILS"),
            ]
            print(output.render(rows, columns, args.output))
        else:
            verdict = client.verify_audit()
            print(output.render_record(vars(verdict), args.output))
            return EXIT_OK if verdict.intact else EXIT_FAILED
    return EXIT_OK


def _verify_offline(args: argparse.Namespace) -> int:
    from gateway.errors import GatewayError
    from gateway.identity.authority import Authority
    from gateway.store import open_store
    from gateway.trust.checkpoint import CHECKPOINT_FILE
    from gateway.trust.service import verify_audit_store

    if args.authority is None:
        raise GatewayError("--store needs --authority DIR (the directory with audit-key.pem and ca.pem)")
    authority = Authority.load(args.authority, args.authority / "ca.pem")
    store = open_store(args.store, read_only=True)  # beside a running gateway: no lock, no write
    try:
        verdict = verify_audit_store(store, authority, args.checkpoint or args.authority / CHECKPOINT_FILE)
    finally:
        store.close()
    print(output.render_record(vars(verdict), args.output))
    return EXIT_OK if verdict.intact else EXIT_FAILED
