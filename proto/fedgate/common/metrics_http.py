"""The metrics endpoint of a gateway or an agent: a Prometheus registry over HTTP, plain on loopback only,
with mutual TLS (a client certificate of the federation CA required) anywhere else.

Owns: `MetricsEndpoint` (where and how, checked: an address off loopback is never served without mTLS), the TLS
context (the process's own certificate and key, client certificates verified against the federation CA bundle,
the files read again when they change, so a renewed certificate is served without a restart), and a small
asyncio HTTP server that answers GET /metrics with the registry's exposition. It knows nothing of what is
measured (that is `gateway.transport.metrics` and `agents.transport.metrics`).

Why not prometheus_client's own server: it serves from a thread, and the collectors read the process's domain
state (plain dicts the event loop changes), which is safe only on the loop's own thread. Here the registry is
collected on the loop, between two of its steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

MAX_HEAD_BYTES = 8192
"""A request head longer than this is refused (a scraper's is a few hundred bytes)."""
READ_TIMEOUT_S = 5.0
"""A client that has not sent its request head within this is dropped."""


@dataclass(frozen=True)
class MetricsTls:
    """The PEM files the endpoint uses off loopback: the process's own (its server certificate for the
    gateway, the site certificate for an agent) and the federation CA bundle scrapers' certificates chain to."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class MetricsEndpoint:
    host: str
    """Where to listen: an IP address or `localhost` (IPv6 without brackets)."""
    port: int
    """0 picks a free port (the running server says which)."""
    mtls: bool
    """Serve over TLS and require a client certificate issued by the federation CA."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_endpoint(listen: str, mtls: bool | None) -> MetricsEndpoint | str:
    """`host:port` (IPv6 as `[::1]:9464`) and the config's word on mTLS (None: unsaid) as an endpoint, or what
    is wrong with them. Unsaid, mTLS is on exactly when the address is not loopback; off loopback it cannot be
    turned off, since the figures name tenants, projects and sites."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        return f"{listen!r} is not host:port (e.g. 127.0.0.1:9464, or 0.0.0.0:9464 with mTLS)"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return f"{host!r} is not an IP address: listen on an address of this machine, e.g. 0.0.0.0:9464"
    loopback = is_loopback(host)
    if mtls is False and not loopback:
        return (
            f"{listen!r} is not a loopback address and metrics off loopback need mTLS: drop metrics_mtls: false "
            "(scrapers then present a certificate of the federation CA), or listen on 127.0.0.1:PORT"
        )
    return MetricsEndpoint(host, int(port), mtls=not loopback if mtls is None else mtls)


class TlsContextFiles:
    """A server TLS context that requires a client certificate of the CA, made again when a file changes."""

    def __init__(self, tls: MetricsTls) -> None:
        self._tls = tls
        self._stamp = self._stamps()
        self.context = self._make()
        self.context.sni_callback = self._fresh  # every handshake looks, so renewed files are picked up

    def _stamps(self) -> tuple[float, ...]:
        with contextlib.suppress(OSError):
            return tuple(p.stat().st_mtime for p in (self._tls.ca, self._tls.cert, self._tls.key))
        return ()

    def _make(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self._tls.cert, self._tls.key)
        context.load_verify_locations(cafile=str(self._tls.ca))
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _fresh(self, connection: ssl.SSLObject, _name: str | None, _context: ssl.SSLContext) -> None:
        stamp = self._stamps()
        if stamp and stamp != self._stamp:
            try:
                fresh = self._make()
            except (OSError, ssl.SSLError):  # a renewal half written: keep serving the old files
                return
            fresh.sni_callback = self._fresh
            self._stamp, self.context = stamp, fresh
        if connection.context is not self.context:
            connection.context = self.context


async def serve_registry(
    registry: CollectorRegistry, endpoint: MetricsEndpoint, tls: MetricsTls | None = None
) -> asyncio.Server:
    """Serve `registry` at http(s)://endpoint/metrics until the returned server is closed. With
    `endpoint.mtls`, `tls` names the files (a ValueError without them)."""
    context = None
    if endpoint.mtls:
        if tls is None:
            raise ValueError("metrics with mTLS need the TLS files")
        context = TlsContextFiles(tls).context

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):  # a client that misbehaves only loses its own connection
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, content_type, body = answer(registry, head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    return await asyncio.start_server(handle, endpoint.host, endpoint.port, ssl=context, limit=MAX_HEAD_BYTES)


def answer(registry: CollectorRegistry, head: bytes) -> tuple[str, str, bytes]:
    """(status, content type, body) for one request head: the exposition in the format the scraper accepts."""
    request, *lines = head.decode("latin-1").split("\r\n")
    parts = request.split(" ")
    if len(parts) != 3 or parts[0] not in {"GET", "HEAD"}:
        return "405 Method Not Allowed", "text/plain", b"only GET /metrics\n"
    if parts[1].split("?", 1)[0] not in {"/metrics", "/"}:
        return "404 Not Found", "text/plain", b"not found: try /metrics\n"
    headers = dict(line.split(":", 1) for line in lines if ":" in line)
    accept = next((v.strip() for k, v in headers.items() if k.strip().lower() == "accept"), "")
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry)
    return "200 OK", content_type, b"" if parts[0] == "HEAD" else body
