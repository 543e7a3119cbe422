"""The baseline server: a bare grpc.aio echo over the same mTLS as the gateway, in a process of its own.

Owns: `python -m bench.echo --creds DIR --response FILE --ready-file R`. It answers JobService/CreateJob (the
same method name, so the very same client stub drives it) with a generic handler that takes raw bytes and
returns the bytes of FILE, a real CreateJobResponse captured from the gateway: same request, same reply
size, same certificates, client certificate required. It does no work, so it is the ceiling any servicer
written on grpc.aio can reach on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

import grpc

SERVICE = "fedgate.v1.JobService"
METHOD = "CreateJob"


def _credentials(creds: Path) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [((creds / "key.pem").read_bytes(), (creds / "cert.pem").read_bytes())],
        root_certificates=(creds / "ca.pem").read_bytes(),
        require_client_auth=True,
    )


async def serve(creds: Path, response: bytes, ready_file: Path) -> None:
    async def create_job(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return response

    handler = grpc.unary_unary_rpc_method_handler(create_job, request_deserializer=None, response_serializer=None)
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
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__)
    parser.add_argument("--creds", required=True, type=Path, help="server credentials dir (ca/cert/key.pem)")
    parser.add_argument("--response", required=True, type=Path, help="file whose bytes every call returns")
    parser.add_argument("--ready-file", required=True, type=Path, help="host:port is written here")
    args = parser.parse_args()
    asyncio.run(serve(args.creds, args.response.read_bytes(), args.ready_file))


if __name__ == "__main__":
    main()
