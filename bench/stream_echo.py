"""The ingest baseline: a bare grpc.aio bidirectional stream server over the same mTLS, in a process of its own.

Owns: `python -m bench.stream_echo --creds DIR --response FILE --ready-file R`. It serves
`fedgate.v1.SiteService/Connect` (so the very same client stub drives it) with a generic handler on raw bytes:
on each stream it answers the first message with the bytes of FILE (a real Welcome captured from the gateway),
then reads every further message without parsing it, and ends the stream when the client half-closes. Same
server certificate, client certificate required. It does no work, so it is the ceiling any stream servicer
written on grpc.aio can reach on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from bench.echo import _credentials

SERVICE = "fedgate.v1.SiteService"
METHOD = "Connect"


async def serve(creds: Path, response: bytes, ready_file: Path) -> None:
    async def connect(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        first = True
        async for _ in requests:
            if first:
                first = False
                yield response

    handler = grpc.stream_stream_rpc_method_handler(connect, request_deserializer=None, response_serializer=None)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    port = server.add_secure_port("127.0.0.1:0", _credentials(creds))
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tmp = ready_file.with_suffix(".tmp")
    tmp.write_text(f"127.0.0.1:{port}\n")
    tmp.replace(ready_file)
    await stop.wait()
    await server.stop(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_echo", description=__doc__)
    parser.add_argument("--creds", required=True, type=Path, help="server credentials dir (ca/cert/key.pem)")
    parser.add_argument(
        "--response", required=True, type=Path, help="file whose bytes answer each stream's first message"
    )
    parser.add_argument("--ready-file", required=True, type=Path, help="host:port is written here")
    args = parser.parse_args()
    asyncio.run(serve(args.creds, args.response.read_bytes(), args.ready_file))


if __name__ == "__main__":
    main()
