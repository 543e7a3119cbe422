"""`fedgate agent ...`: the site operator's command line. A thin shell over `run_agent`.

Owns: argument parsing, logging to stderr as `agent[<site>]: message`, turning SIGTERM/SIGINT into a
graceful stop, and exit codes scripts can trust: 0 clean stop, 2 bad usage or config (the error is
printed), 3 the gateway refused this site (PERMISSION_DENIED / UNAUTHENTICATED). It does not validate
config (`agents.config`) nor speak gRPC (`agents.transport`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agents.config import AgentConfig, load_agent_config
from agents.errors import ConfigError, GatewayRefused

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3

LOG_LEVELS = ("debug", "info", "warning", "error")

log = logging.getLogger("agents.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedgate agent", description="Run a site agent next to a centre's scheduler.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="connect to the gateway and run the jobs it sends until stopped (SIGTERM/SIGINT)",
        description="Connect to the federation gateway, report capacity and run jobs until stopped.",
    )
    run.add_argument("--config", required=True, type=Path, metavar="FILE", help="agent YAML (kind: Agent)")
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="default: info")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of `fedgate agent`. Returns the process exit code; never calls sys.exit."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
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
    return EXIT_OK


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
