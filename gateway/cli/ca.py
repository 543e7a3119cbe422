"""`fedgate ca init|issue`: create the federation CA and issue credentials directories from it.

Owns: the flags of the two commands, printing what was written (or a JSON/YAML record with `-o`), and exit
codes: 0 done, 1 the files could not be written, 2 bad usage or input (with what to do next). The
certificates themselves are `gateway.identity`'s business.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.cli import output
from gateway.errors import GatewayError
from gateway.identity.ca import CA_CERT, CA_KEY, CERT, DEFAULT_HOSTS, KEY, CertificateAuthority, init_ca
from gateway.identity.principal import Principal, gateway_uri
from gateway.trust.credentials import Credentials

EXIT_OK, EXIT_IO, EXIT_USAGE = 0, 1, 2
PRINCIPAL_DAYS, SERVER_DAYS, CA_DAYS = 90, 365, 3650


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The `fedgate ca` parser and its `issue` subparser (whose usage a combination error shows)."""
    parser = argparse.ArgumentParser(
        prog="fedgate ca",
        description="Create the federation CA and issue certificates from it.",
        epilog="exit codes: 0 ok; 1 files could not be written; 2 bad usage or input.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create a new federation CA (ca.pem, ca-key.pem) in an empty directory")
    init.add_argument("--dir", required=True, type=Path, help="directory for the CA (created, mode 0700)")
    init.add_argument("--federation", required=True, help="federation name, e.g. demo or cn-ai.example")
    init.add_argument("--days", type=int, default=CA_DAYS, help=f"validity in days (default {CA_DAYS})")
    issue = sub.add_parser(
        "issue",
        help="write a credentials directory (cert.pem, key.pem, ca.pem) for a principal or the gateway",
    )
    issue.add_argument("--ca-dir", required=True, type=Path, help="directory holding ca.pem and ca-key.pem")
    issue.add_argument("--out", required=True, type=Path, help="credentials directory to write")
    who = issue.add_mutually_exclusive_group(required=True)
    who.add_argument("--site", metavar="NAME", help="a member site's agent")
    who.add_argument("--user", metavar="NAME", help="a model vendor's user (needs --tenant)")
    who.add_argument("--admin", metavar="NAME", help="a federation admin")
    who.add_argument("--server", action="store_true", help="the gateway's serving certificate")
    issue.add_argument("--tenant", help="the user's tenant (with --user)")
    issue.add_argument(
        "--host",
        action="append",
        default=[],
        help=f"with --server: a DNS name or IP it serves on; repeat (added to {' '.join(DEFAULT_HOSTS)})",
    )
    issue.add_argument(
        "--no-loopback",
        action="store_true",
        help="with --server: name only the --host values, not localhost and the loopback addresses",
    )
    issue.add_argument(
        "--days", type=int, help=f"validity in days (default {PRINCIPAL_DAYS}; {SERVER_DAYS} with --server)"
    )
    for command in (init, issue):
        output.add_output_flag(command)
    return parser, issue


def _check_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.user is not None and not args.tenant:
        parser.error("--user needs --tenant: a user always belongs to one tenant")
    if args.tenant and args.user is None:
        parser.error("--tenant goes with --user only")
    if (args.host or args.no_loopback) and not args.server:
        parser.error("--host and --no-loopback go with --server only")
    if args.no_loopback and not args.host:
        parser.error("--no-loopback needs at least one --host")


def _principal(ca: CertificateAuthority, args: argparse.Namespace) -> Principal:
    if args.site is not None:
        return Principal.site(ca.federation, args.site)
    if args.user is not None:
        return Principal.user(ca.federation, args.tenant, args.user)
    return Principal.admin(ca.federation, args.admin)


def _init(args: argparse.Namespace) -> dict[str, Any]:
    ca = init_ca(args.dir, args.federation, args.days)
    return {
        "federation": ca.federation,
        "ca_cert": str(args.dir / CA_CERT),
        "ca_key": str(args.dir / CA_KEY),
        "not_after": ca.certificate.not_valid_after_utc,
    }


def _issue(args: argparse.Namespace) -> dict[str, Any]:
    ca = CertificateAuthority.load(args.ca_dir)
    if args.server:
        # Loopback stays named unless refused: probes, the CLI on the gateway's host and `make demo` dial it.
        hosts = tuple(dict.fromkeys(args.host if args.no_loopback else [*args.host, *DEFAULT_HOSTS]))
        out = ca.issue_server(args.out, hosts, SERVER_DAYS if args.days is None else args.days)
        identity, extra = gateway_uri(ca.federation), {"hosts": list(hosts)}
    else:
        principal = _principal(ca, args)
        out = ca.issue(principal, args.out, PRINCIPAL_DAYS if args.days is None else args.days)
        identity, extra = principal.uri, {}
    not_after = Credentials.from_dir(out).not_after  # also proves the directory is usable as written
    return {
        "identity": identity,
        **extra,
        "cert": str(out / CERT),
        "key": str(out / KEY),
        "ca_cert": str(out / CA_CERT),
        "not_after": not_after,
    }


def _describe(command: str, record: dict[str, Any]) -> str:
    until = output.cell(record["not_after"])
    if command == "init":
        return "\n".join(
            [
                f"created the CA of federation {record['federation']!r} (valid until {until} UTC)",
                f"  wrote {record['ca_cert']}  (share with every member: it is the trust anchor)",
                f"  wrote {record['ca_key']}  (mode 0600: keep it secret, back it up offline)",
            ]
        )
    lines = [f"issued {record['identity']} (valid until {until} UTC)"]
    if "hosts" in record:
        lines[0] += f" for {', '.join(record['hosts'])}"
    lines += [
        f"  wrote {record['cert']}",
        f"  wrote {record['key']}  (mode 0600)",
        f"  wrote {record['ca_cert']}",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The group's parser, as `fedgate completion` reads it."""
    return _parsers()[0]


def main(argv: Sequence[str]) -> int:
    parser, issue_parser = _parsers()
    try:
        args = parser.parse_args(list(argv))
        if args.command == "issue":
            _check_combinations(issue_parser, args)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    prog = f"fedgate ca {args.command}"
    try:
        record = _init(args) if args.command == "init" else _issue(args)
    except GatewayError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{prog}: cannot write {exc.filename or 'the files'}: {exc.strerror}", file=sys.stderr)
        return EXIT_IO
    text = _describe(args.command, record) if args.output == "table" else output.render_record(record, args.output)
    print(text)
    return EXIT_OK
