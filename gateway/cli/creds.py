"""`fedgate creds renew|show`: a user's or admin's own credentials directory, renewed before it expires.

Owns: the arguments and printing of `fedgate creds`; renewal itself is `gateway.identity.renewal`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.cli import output
from gateway.cli.connect import EPILOG, EXIT_OK, add_connection_flags, client_from_args, credentials_dir, run_command
from gateway.errors import GatewayError
from gateway.identity.principal import load_certificate, spiffe_uri_of
from gateway.identity.renewal import renewal_due
from gateway.trust.credentials import Credentials


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fedgate creds", description="Your own credentials.", epilog=EPILOG)
    sub = top.add_subparsers(dest="command", required=True)
    renew = sub.add_parser("renew", help="renew the certificate in --creds (a new key is made here)")
    renew.add_argument("--if-due", action="store_true", help="only when two thirds of its lifetime have passed")
    show = sub.add_parser("show", help="who the certificate in --creds says you are, and until when")
    for command in (renew, show):
        add_connection_flags(command)
        output.add_output_flag(command)
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)

    def action() -> int:
        directory = credentials_dir(args)
        if directory is None:
            raise GatewayError("pass --creds DIR, set FEDGATE_CREDS, or use a context set with --creds DIR")
        cert = load_certificate(Credentials.from_dir(directory).cert_pem)
        now = datetime.now(UTC)
        row: dict[str, object] = {
            "principal": spiffe_uri_of(cert),
            "serial": f"{cert.serial_number:x}",
            "not_after": cert.not_valid_after_utc,
            "renewal_due": renewal_due(Credentials.from_dir(directory).cert_pem, now),
        }
        if args.command == "renew" and (row["renewal_due"] or not args.if_due):
            with client_from_args(args) as client:
                row["not_after"] = client.renew_certificate(directory)
            row["renewed"] = True
            row["serial"] = f"{load_certificate(Credentials.from_dir(directory).cert_pem).serial_number:x}"
        print(output.render_record(row, args.output))
        return EXIT_OK

    return run_command(f"fedgate creds {args.command}", action)
