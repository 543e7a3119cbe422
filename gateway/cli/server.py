"""`fedgate gateway run --config FILE`: run the federation gateway until SIGTERM or Ctrl-C.

Owns: the command's flags, the signal handlers, and the exit code: 0 after a signal, 1 when one of the
gateway's long-lived tasks died (logged with its traceback by the supervisor, then a line saying the gateway
stops), so that the process supervisor (systemd, Kubernetes) restarts it; 2 for a bad config.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.app.config import GatewayConfig, load_gateway_config
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.transport.server import RunningGateway

log = logging.getLogger("fedgate.gateway")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="fedgate gateway", description="Run the federation gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve until SIGTERM or Ctrl-C")
    run.add_argument("--config", required=True, type=Path, help="gateway YAML (kind: Gateway)")
    run.add_argument("--ready-file", type=Path, help="write host:port here once serving (for supervisors)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="gateway: %(message)s", stream=sys.stderr)
    try:
        config = load_gateway_config(args.config)
    except GatewayError as exc:
        print(f"fedgate gateway: {exc.message}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(config, args.ready_file))
    except GatewayError as exc:
        print(f"fedgate gateway: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fedgate gateway: {exc}", file=sys.stderr)
        return 1


async def _serve(config: GatewayConfig, ready_file: Path | None) -> int:
    from gateway.transport.server import start_gateway  # grpc only once the config is good

    running = await start_gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, running.reload_policy, "SIGHUP")
    host = config.listen.rsplit(":", 1)[0]
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        public = (
            f"public={config.public_listen.rsplit(':', 1)[0]}:{running.public_port}\n" if running.public_port else ""
        )
        tmp.write_text(f"{host}:{running.port}\n{public}")
        tmp.replace(ready_file)
    print(
        f"gateway: serving federation {config.federation} on {host}:{running.port}",
        file=sys.stderr,
        flush=True,
    )
    return await serve_until_stopped(running, stop)


async def serve_until_stopped(running: RunningGateway, stop: asyncio.Event) -> int:
    """Wait for `stop` (a signal) or for a supervised task to die; stop the gateway either way. Returns the
    exit code: 0 on `stop`, 1 on a dead task."""
    stopped = asyncio.create_task(stop.wait(), name="signal")
    failed = asyncio.create_task(running.wait_failure(), name="failure")
    try:
        await asyncio.wait((stopped, failed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, failed):
            task.cancel()
    failure = running.supervisor.failure
    await running.stop(running.shutdown_grace)
    if failure is not None:
        log.critical("the gateway stops with exit code 1: %s", failure.describe())
        return 1
    return 0
