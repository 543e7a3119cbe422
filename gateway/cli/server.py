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

from gateway.app.config import GatewayConfig, load_gateway_config
from gateway.errors import GatewayError

log = logging.getLogger("fedgate.gateway")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fedgate gateway", description="Run the federation gateway.")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve until SIGTERM or Ctrl-C")
    run.add_argument("--config", required=True, type=Path, help="gateway YAML (kind: Gateway)")
    run.add_argument("--ready-file", type=Path, help="write host:port here once serving (for supervisors)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
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
    from gateway.transport.replica import serve_replica, serve_until_stopped, shares_store
    from gateway.transport.server import start_gateway  # grpc only once the config is good

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host = config.listen.rsplit(":", 1)[0]

    def ready(port: int, public_port: int) -> None:
        if ready_file is not None:
            tmp = ready_file.with_suffix(".tmp")
            public = f"public={config.public_listen.rsplit(':', 1)[0]}:{public_port}\n" if public_port else ""
            tmp.write_text(f"{host}:{port}\n{public}")
            tmp.replace(ready_file)
        print(f"gateway: serving federation {config.federation} on {host}:{port}", file=sys.stderr, flush=True)

    if shares_store(config):  # one of several gateways on the database: stand by, lead when elected
        return await serve_replica(config, stop, ready)
    running = await start_gateway(config)
    loop.add_signal_handler(signal.SIGHUP, running.reload_policy, "SIGHUP")
    ready(running.port, running.public_port)
    return await serve_until_stopped(running, stop)
