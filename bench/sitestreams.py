"""Many site streams from one process, spoken with the generated stubs (no agent code), for the ingest and
memory benchmarks.

Owns: opening one mTLS channel per site with that site's certificate, the contract's first exchange (Hello,
then the gateway's Welcome), capacity reports built before the clock starts, writing them as fast as gRPC's
flow control lets each stream, half-closing, and reading every response until the stream ends. A site stream
that ends (the gateway returned from the call after its read loop saw the half-close) proves the gateway has
handled every message sent before it: it reads each stream in order. It does not run jobs: Launches and other
commands are read and ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.load import secure_channel
from fedgate.v1 import site_pb2, site_pb2_grpc

EOF = grpc.aio.EOF  # type: ignore[attr-defined]  # the end-of-stream marker read() returns; not in the stubs
OPEN_AT_ONCE = 50  # TLS handshakes in flight while opening: enough to be quick, few enough not to time out


def capacity_reports(count: int, accelerator_class: str, cards: int) -> list[site_pb2.ConnectRequest]:
    """`count` full capacity reports of one pool whose free cards cycle through 0..cards/2-1; the last one says
    `final_free(cards)`, a value no earlier report carries, so that the gateway's view shows the last applied."""
    reports = []
    for i in range(count):
        free = final_free(cards) if i == count - 1 else i % max(1, cards // 2)
        pool = site_pb2.Pool(
            accelerator_class=accelerator_class, total=cards, offered=cards, free=free, cards_per_node=cards
        )
        reports.append(site_pb2.ConnectRequest(capacity=site_pb2.CapacityReport(full=True, pools=[pool])))
    return reports


def final_free(cards: int) -> int:
    return cards - 1


@dataclass
class SiteStream:
    """One site's open stream; `responses` counts what the gateway sent after Welcome."""

    site: str
    channel: grpc.aio.Channel
    call: Any  # grpc.aio.StreamStreamCall[ConnectRequest, ConnectResponse]
    welcome: bytes = b""
    responses: int = 0
    reader: asyncio.Task[None] | None = field(default=None, repr=False)

    async def write_all(self, messages: Sequence[site_pb2.ConnectRequest]) -> None:
        for message in messages:
            await self.call.write(message)

    async def finish(self) -> None:
        """Half-close and wait for the gateway to end the stream (it has then handled every message)."""
        await self.call.done_writing()
        if self.reader is not None:
            await self.reader

    async def close(self) -> None:
        self.call.cancel()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)
        await self.channel.close(None)

    async def _drain(self) -> None:
        while await self.call.read() is not EOF:
            self.responses += 1


async def open_stream(address: str, site: str, creds: Path, hello: site_pb2.ConnectRequest | None = None) -> SiteStream:
    """Dial as `site`, send Hello (or `hello`), wait for the Welcome, then keep reading in the background."""
    channel = secure_channel(address, creds)
    call = site_pb2_grpc.SiteServiceStub(channel).Connect()
    await call.write(hello or site_pb2.ConnectRequest(hello=site_pb2.Hello(site=site, agent_version="bench")))
    first = await call.read()
    if first is EOF:
        await channel.close(None)
        raise RuntimeError(f"site {site}: the stream ended before the Welcome ({await call.code()})")
    stream = SiteStream(site, channel, call, first.SerializeToString())
    stream.reader = asyncio.create_task(stream._drain())
    return stream


async def open_streams(address: str, sites: Sequence[tuple[str, Path]]) -> list[SiteStream]:
    """One stream per (site, credentials dir), at most OPEN_AT_ONCE being opened at a time."""
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one(site: str, creds: Path) -> SiteStream:
        async with gate:
            return await open_stream(address, site, creds)

    return list(await asyncio.gather(*(one(site, creds) for site, creds in sites)))
