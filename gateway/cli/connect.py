"""How every client command finds the gateway and its credentials, and the exit codes scripts can trust.

Each setting is taken from the first that has it: a flag, then an environment variable, then the chosen context of
the config file (its current-context; see `gateway.cli.contextfile`): --gateway / FEDGATE_GATEWAY (host:port),
--creds / FEDGATE_CREDS (a credentials directory with ca.pem, cert.pem and key.pem, as written by `fedgate ca
issue`), --token / FEDGATE_TOKEN and --ca / FEDGATE_CA for the public port. An explicit `--context NAME` is a
choice made on the command line, so it beats the environment: flags, then that context, and no FEDGATE_*
variable (otherwise `--context prod` with FEDGATE_GATEWAY set would send prod's credentials elsewhere). The config
file is read only when a flag or variable leaves something unset (or --context is given), so a broken file never
stands in the way of explicit flags.

Owns: resolving the gateway address and credentials for a command, and the exit codes every command uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.cli.contextfile import Context, load_config
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
    " FEDGATE_TOKEN with FEDGATE_CA for the public port; else the config file's context (`fedgate config`)."
)


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context", default=None, help="a context of the config file (default: its current-context; `fedgate config`)"
    )
    parser.add_argument("--gateway", default="", help="gateway host:port (FEDGATE_GATEWAY)")
    parser.add_argument("--creds", type=Path, default=None, help="credentials dir, ca/cert/key.pem (FEDGATE_CREDS)")
    parser.add_argument("--token", default="", help="bearer token for the gateway's public port (FEDGATE_TOKEN)")
    parser.add_argument("--ca", type=Path, default=None, help="CA bundle, with --token (FEDGATE_CA)")
    parser.set_defaults(_environment_weighed=False)
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds: each call's limit (default {CALL_TIMEOUT_S:g}); with --wait or watch, the whole wait's too",
    )


@dataclass(frozen=True)
class Connection:
    """Where a command connects and as whom, once flags, environment and context have been weighed."""

    gateway: str
    token: str = ""
    ca: Path | None = None
    """The CA bundle: the --ca flag, the context's ca, or ca.pem of the credentials directory."""
    credentials: Credentials | None = None
    context: str = ""
    """The context that filled a gap, if any (for messages)."""


ENVIRONMENT = {"gateway": "FEDGATE_GATEWAY", "creds": "FEDGATE_CREDS", "token": "FEDGATE_TOKEN", "ca": "FEDGATE_CA"}
"""The variable behind each connection flag."""


def weigh_environment(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the connection settings no flag gave from the FEDGATE_* variables, unless an explicit --context was
    chosen (then the context fills them). Done once per parsed command; returns `args` for chaining."""
    if getattr(args, "_environment_weighed", True):
        return args
    args._environment_weighed = True
    if getattr(args, "context", None):
        return args
    for attr, variable in ENVIRONMENT.items():
        value = os.environ.get(variable, "")
        if value and not getattr(args, attr):
            setattr(args, attr, Path(value) if attr in {"creds", "ca"} else value)
    return args


def _chosen_context(args: argparse.Namespace) -> Context | None:
    weigh_environment(args)
    explicit = getattr(args, "context", None)
    complete = args.gateway and ((args.token and args.ca) or args.creds)
    if complete and not explicit:
        return None
    return load_config().context(explicit)


def gateway_given(args: argparse.Namespace) -> bool:
    """Whether a flag, a variable or the chosen context names a gateway (so a command may ask it)."""
    weigh_environment(args)
    if args.gateway:
        return True
    context = _chosen_context(args)
    return bool(context and context.get("gateway"))


def connection_from_args(args: argparse.Namespace, *, need_credentials: bool = True) -> Connection:
    """Resolve flags > environment > context. GatewayError (exit 2) naming what is missing and how to give it."""
    context = _chosen_context(args)
    name = context.name if context else ""
    gateway = args.gateway or (context.get("gateway") if context else "")
    if not gateway:
        raise GatewayError(
            "no gateway given: pass --gateway HOST:PORT, set FEDGATE_GATEWAY, or save a context with"
            " `fedgate config set-context NAME --gateway HOST:PORT --creds DIR`",
            reason="USAGE",
        )
    token = args.token or (context.token() if context and not args.creds else "")
    ca = Path(args.ca).expanduser() if args.ca else (context.path("ca") if context else None)
    if token:
        if ca is None:
            raise GatewayError("a token needs --ca FILE (or FEDGATE_CA, or ca: in the context): the CA bundle")
        return Connection(gateway, token=token, ca=ca, context=name)
    if args.creds:
        directory = Path(args.creds).expanduser()
        return Connection(gateway, ca=ca or directory / "ca.pem", credentials=Credentials.from_dir(directory))
    cert, key = (context.path("cert"), context.path("key")) if context else (None, None)
    if cert is not None and key is not None and ca is not None:
        return Connection(gateway, ca=ca, credentials=Credentials.from_files(ca, cert, key), context=name)
    if need_credentials:
        missing = f"context {name!r} has no cert/key/ca nor token" if context else "no credentials given"
        raise GatewayError(
            f"{missing}: pass --creds DIR, set FEDGATE_CREDS, or `fedgate config set-context"
            f" {name or 'NAME'} --creds DIR`",
            reason="USAGE",
        )
    return Connection(gateway, ca=ca, context=name)


def credentials_dir(args: argparse.Namespace) -> Path | None:
    """The credentials directory: --creds / FEDGATE_CREDS, else the folder of the context's cert.pem and key.pem
    (as `set-context --creds DIR` writes them); None when there is none (a token context, no context)."""
    weigh_environment(args)
    if args.creds:
        return Path(args.creds).expanduser()
    context = load_config().context(getattr(args, "context", None))
    cert, key = (context.path("cert"), context.path("key")) if context else (None, None)
    if cert is None or key is None or (cert.name, key.name) != ("cert.pem", "key.pem") or cert.parent != key.parent:
        return None
    return cert.parent


def client_from_args(args: argparse.Namespace) -> FederationClient:
    connection = connection_from_args(args)
    if connection.token:
        assert connection.ca is not None  # connection_from_args refuses a token without a CA
        try:
            ca_pem = connection.ca.read_bytes()
        except OSError as exc:
            raise GatewayError(f"cannot read the CA bundle {connection.ca}: {exc.strerror}") from None
        return FederationClient(connection.gateway, token=connection.token, ca_pem=ca_pem, timeout=_call_timeout(args))
    assert connection.credentials is not None
    return FederationClient(connection.gateway, connection.credentials, timeout=_call_timeout(args))


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
