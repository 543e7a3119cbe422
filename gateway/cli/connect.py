"""How every client command finds the gateway and its credentials, and the exit codes scripts can trust.

Flags win over environment variables: --gateway / FEDGATE_GATEWAY (host:port) and --creds / FEDGATE_CREDS (a
credentials directory with ca.pem, cert.pem and key.pem, as written by `fedgate ca issue`).

Owns: finding the gateway address and credentials directory for a command, and the exit codes every command uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.errors import ClientError, GatewayError
from gateway.transport.client import FederationClient
from gateway.trust.credentials import Credentials

# Exit codes, documented in the README: scripts may rely on them.
EXIT_OK = 0
EXIT_FAILED = 1  # the call was refused, or a waited-for job ended without succeeding
EXIT_USAGE = 2  # bad flags or a bad input file
EXIT_UNREACHABLE = 3  # the gateway could not be reached
EXIT_NOT_FOUND = 4  # the job or site does not exist (or is not visible to you)
EXIT_TLS = 5  # the gateway was reached but the TLS handshake failed: a certificate, CA or host name problem
EXIT_TIMEOUT = 6  # --wait (or watch) gave up after --timeout; the job goes on

CALL_TIMEOUT_S = 30.0

EPILOG = (
    "exit codes: 0 ok; 1 refused or job did not succeed; 2 bad usage or input file; 3 gateway unreachable;"
    " 4 not found; 5 TLS refused (certificate, CA or host name); 6 --wait timed out. Environment:"
    " FEDGATE_GATEWAY=host:port, FEDGATE_CREDS=credentials directory, or"
    " FEDGATE_TOKEN with FEDGATE_CA for the public port."
)


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", default=os.environ.get("FEDGATE_GATEWAY", ""), help="gateway host:port")
    parser.add_argument(
        "--creds",
        type=Path,
        default=os.environ.get("FEDGATE_CREDS"),
        help="credentials directory (ca/cert/key.pem)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("FEDGATE_TOKEN", ""), help="bearer token (the gateway's public port)"
    )
    parser.add_argument("--ca", type=Path, default=os.environ.get("FEDGATE_CA"), help="CA bundle, with --token")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds: each call's limit (default {CALL_TIMEOUT_S:g}); with --wait or watch, the whole wait's too",
    )


def client_from_args(args: argparse.Namespace) -> FederationClient:
    if not args.gateway:
        raise GatewayError("no gateway given: pass --gateway HOST:PORT or set FEDGATE_GATEWAY", reason="USAGE")
    if args.token:
        if args.ca is None:
            raise GatewayError("a token needs --ca FILE (or FEDGATE_CA): the CA bundle to verify the gateway")
        try:
            ca_pem = Path(args.ca).expanduser().read_bytes()
        except OSError as exc:
            raise GatewayError(f"cannot read the CA bundle {args.ca}: {exc.strerror}") from None
        return FederationClient(args.gateway, token=args.token, ca_pem=ca_pem, timeout=_call_timeout(args))
    if args.creds is None:
        raise GatewayError("no credentials given: pass --creds DIR or set FEDGATE_CREDS", reason="USAGE")
    return FederationClient(
        args.gateway, Credentials.from_dir(Path(args.creds).expanduser()), timeout=_call_timeout(args)
    )


def _call_timeout(args: argparse.Namespace) -> float:
    return CALL_TIMEOUT_S if args.timeout is None else args.timeout


def run_command(prog: str, action: Callable[[], int]) -> int:
    """Run one command, turning errors into a message on stderr and a trustworthy exit code."""
    try:
        return action()
    except ClientError as exc:
        print(f"{prog}: {exc.message} [{exc.code}/{exc.reason}]", file=sys.stderr)
        if exc.reason.startswith("TLS_"):
            return EXIT_TLS
        if exc.code == "UNAVAILABLE":
            print(f"{prog}: is the gateway running at the address given? check --gateway", file=sys.stderr)
            return EXIT_UNREACHABLE
        if exc.code == "DEADLINE_EXCEEDED":
            return EXIT_UNREACHABLE
        return EXIT_NOT_FOUND if exc.code == "NOT_FOUND" else EXIT_FAILED
    except GatewayError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
