"""`fedgate agent ...`: the site operator's command line. A thin shell over `run_agent` and `enroll_site`.

Owns: argument parsing, logging to stderr as `agent[<site>]: message`, turning SIGTERM/SIGINT into a
graceful stop, printing results, and exit codes scripts can trust:
  run:    0 clean stop, 1 a task that must run as long as the agent died (logged with its traceback; the agent
          drained first, like on SIGTERM), 2 bad usage or config, 3 the gateway refused this site
          (PERMISSION_DENIED / UNAUTHENTICATED: revoked, expired or foreign certificate).
  enroll: 0 enrolled, 1 refused (by the gateway, or the gateway failed the CA fingerprint check), 2 bad
          usage (including a certificate already in --out without --force), 3 gateway unreachable.
  policy test: 0 every case passed, 1 a case failed or a file could not be read, 2 bad usage
          (`agents.cli.policy`).
It does not validate config (`agents.core.config`), decide how to enrol (`agents.identity.enrollment`) nor speak gRPC
(`agents.transport`, imported only when a command needs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from agents.cli.policy import add_policy_commands, run_policy_command
from agents.core.config import AgentConfig, load_agent_config
from agents.errors import (
    AgentError,
    AgentTaskDied,
    BackendError,
    ConfigError,
    EnrollmentRefused,
    GatewayRefused,
    GatewayUnreachable,
    UsageError,
)
from agents.identity.enrollment import REFUSAL_HINTS, Enrolled, EnrollmentRequest, enroll_site
from agents.identity.pinning import CaPin

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 3

LOG_LEVELS = ("debug", "info", "warning", "error")

log = logging.getLogger("agents.cli.main")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fedgate agent", description="Run a site agent next to a centre's scheduler.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="connect to the gateway and run the jobs it sends until stopped (SIGTERM/SIGINT)",
        description="Connect to the federation gateway, report capacity and run jobs until stopped.",
    )
    run.add_argument("--config", required=True, type=Path, metavar="FILE", help="agent YAML (kind: Agent)")
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="default: info")
    _add_enroll(commands)
    add_policy_commands(commands)
    return top


def _add_enroll(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    enroll = commands.add_parser(
        "enroll",
        help="enrol this site with a one-time join token: make its key here and get its certificate",
        description=(
            "Make the site's private key on this machine (it never leaves it), check that the gateway presents "
            "the federation CA whose fingerprint the admin gave you, then send the join token and a CSR and "
            "write key.pem, cert.pem and ca.pem into --out. Exit codes: 0 enrolled, 1 refused, 2 bad usage, "
            "3 gateway unreachable."
        ),
    )
    enroll.add_argument("--gateway", required=True, metavar="HOST:PORT", help="the gateway's public enrolment port")
    token = enroll.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", metavar="TOKEN", help="the one-time join token the admin created for this site")
    token.add_argument(
        "--token-file", type=Path, metavar="FILE", help="read the join token from FILE (keeps it out of `ps`)"
    )
    enroll.add_argument(
        "--ca-fingerprint", required=True, metavar="SHA256", help="sha256 of the federation CA, from the admin"
    )
    enroll.add_argument("--site", required=True, metavar="NAME", help="this site's name, as in the join token")
    enroll.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write the credentials")
    enroll.add_argument("--force", action="store_true", help="replace a certificate already in --out")
    enroll.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS", help="per network step (15)")
    enroll.add_argument("-o", "--output", default="table", choices=("table", "json", "yaml"), help="default: table")


def main(argv: list[str]) -> int:
    """Entry point of `fedgate agent`. Returns the process exit code; never calls sys.exit."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "enroll":
        return _enroll(args)
    if args.command == "policy":
        return run_policy_command(args)
    try:
        config = load_agent_config(args.config)
    except ConfigError as exc:
        print(f"fedgate agent: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    with _logging_to_stderr(config.site, args.log_level):
        try:
            asyncio.run(_serve(config))
        except GatewayRefused as exc:
            log.error("%s", exc.message)
            return EXIT_REFUSED
        except AgentTaskDied as exc:  # already logged with its traceback when it died
            log.error("%s; exit %d so that the agent's supervisor restarts it", exc.message, EXIT_FAILED)
            return EXIT_FAILED
        except BackendError as exc:  # the backend's scheduler could not be read at start (e.g. no such partition)
            log.error("%s", exc.message)
            return EXIT_FAILED
        except ConfigError as exc:  # e.g. a state_dir the agent cannot write its journal in
            log.error("%s", exc.message)
            return EXIT_USAGE
    return EXIT_OK


def _enroll(args: argparse.Namespace) -> int:
    from agents.transport.enrollment import GrpcEnrollmentGateway  # loads grpc only when there is work to do

    if not args.timeout > 0:
        return _fail(f"--timeout must be above 0 seconds, got {args.timeout}", EXIT_USAGE)
    try:
        request = EnrollmentRequest(
            gateway=args.gateway,
            join_token=_join_token(args),
            pin=CaPin.parse(args.ca_fingerprint),
            site=args.site,
            out_dir=args.out.expanduser().absolute(),
            force=args.force,
        )
        enrolled = enroll_site(request, GrpcEnrollmentGateway(timeout_s=args.timeout))
    except UsageError as exc:
        return _fail(exc.message, EXIT_USAGE)
    except GatewayUnreachable as exc:
        return _fail(exc.message, EXIT_UNREACHABLE)
    except EnrollmentRefused as exc:
        hint = REFUSAL_HINTS.get(exc.reason, "")
        return _fail(
            f"{exc.message}\n  reason: {exc.reason}" + (f"\n  what to do: {hint}" if hint else ""), EXIT_FAILED
        )
    except AgentError as exc:  # CA fingerprint mismatch, unusable certificate from the gateway
        return _fail(exc.message, EXIT_FAILED)
    except OSError as exc:
        return _fail(f"cannot write the credentials: {exc.filename}: {exc.strerror}", EXIT_FAILED)
    print(_render_enrolled(enrolled, args.output), end="")
    return EXIT_OK


def _join_token(args: argparse.Namespace) -> str:
    if args.token is not None:
        return str(args.token)
    try:
        return str(args.token_file.read_text()).strip()
    except OSError as exc:
        raise UsageError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None


def _fail(message: str, code: int) -> int:
    print(f"fedgate agent enroll: {message}", file=sys.stderr)
    return code


def _render_enrolled(enrolled: Enrolled, output: str) -> str:
    files = enrolled.files
    record = {
        "site": enrolled.site,
        "principal": enrolled.principal,
        "expire_time": enrolled.not_after.isoformat(),
        "ca_fingerprint": str(enrolled.ca_fingerprint),
        "files": {"key": str(files.key), "cert": str(files.cert), "ca": str(files.ca)},
    }
    if output == "json":
        return json.dumps(record, indent=2) + "\n"
    if output == "yaml":
        return str(yaml.safe_dump(record, sort_keys=False))
    return (
        f"enrolled site {enrolled.site} as {enrolled.principal}; "
        f"certificate valid until {enrolled.not_after.isoformat(timespec='seconds')}\n"
        f"wrote {files.key} (private key, mode 0600; made here, it never left this machine)\n"
        f"wrote {files.cert} (the site's certificate)\n"
        f"wrote {files.ca} (the federation CA bundle)\n"
        "\nPut this in the agent's YAML (kind: Agent):\n\n" + enrolled.tls_snippet()
    )


async def _serve(config: AgentConfig) -> None:
    from agents.transport.connection import run_agent  # loads grpc only when there is work to do

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, _request_stop, stop, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (e.g. tests)
            pass
    log.info("agent for site %s starting; gateway %s", config.site, config.gateway)
    try:
        await run_agent(config, stop)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _request_stop(stop: asyncio.Event, signum: signal.Signals) -> None:
    if not stop.is_set():
        log.info("received %s: stopping gracefully", signum.name)
    stop.set()


@contextmanager
def _logging_to_stderr(site: str, level: str) -> Iterator[None]:
    """Route the `agents` loggers to stderr for the duration of a command, then undo it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"agent[{site}]: %(message)s"))
    logger = logging.getLogger("agents")
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False  # the operator sees each line once, in our format
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate
