"""The metrics endpoint of a gateway or an agent: a Prometheus registry over HTTP, plain on loopback only,
with mutual TLS (a client certificate of the federation CA required) anywhere else.

Owns: `MetricsEndpoint` (where and how, checked: an address off loopback is never served without mTLS), the TLS
context (the process's own certificate and key, client certificates verified against the federation CA bundle,
the files read again when they change, so a renewed certificate is served without a restart), and a small
asyncio HTTP server (`serve_http`: one GET per connection, answered by a handler; the gateway's status page
uses it too) that answers GET /metrics with the registry's exposition. It knows nothing of what is measured
(that is `gateway.transport.metrics` and `agents.transport.metrics`).

Why not prometheus_client's own server: it serves from a thread, and the collectors read the process's domain
state (plain dicts the event loop changes), which is safe only on the loop's own thread. Here the registry is
collected on the loop, between two of its steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
    """A server TLS context that requires (or, with `client_certificate_optional`, accepts) a client certificate
    of the CA, made again when a file changes."""

    def __init__(self, tls: MetricsTls, *, client_certificate_optional: bool = False) -> None:
        self._tls = tls
        self._verify = ssl.CERT_OPTIONAL if client_certificate_optional else ssl.CERT_REQUIRED
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
        context.verify_mode = self._verify
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


@dataclass(frozen=True)
class HttpRequest:
    """One request head as read off the connection."""

    method: str
    target: str
    """The request target as sent: path and query."""
    headers: dict[str, str] = field(default_factory=dict)
    """Header names lower-cased; of a repeated header, the last."""
    peer_certificate: bytes | None = None
    """The client certificate TLS verified against the CA (DER), if the client presented one."""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class HttpReply:
    status: str
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[HttpRequest], Awaitable[HttpReply]]


def parse_head(head: bytes, peer_certificate: bytes | None = None) -> HttpRequest | None:
    """The request in a head ending with a blank line; None when its request line is not METHOD TARGET VERSION."""
    request, *lines = head.decode("latin-1").split("\r\n")
    parts = request.split(" ")
    if len(parts) != 3:
        return None
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
    return HttpRequest(parts[0], parts[1], headers, peer_certificate)


async def serve_http(host: str, port: int, context: ssl.SSLContext | None, handler: Handler) -> asyncio.Server:
    """Answer one request per connection with `handler` until the returned server is closed (a request head
    over MAX_HEAD_BYTES, or slower than READ_TIMEOUT_S, loses its connection)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):  # a client that misbehaves only loses its own connection
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            tls = writer.get_extra_info("ssl_object")
            request = parse_head(head, tls.getpeercert(binary_form=True) if tls is not None else None)
            if request is None:
                reply = HttpReply("400 Bad Request", "text/plain", b"bad request line\n")
            else:
                reply = await handler(request)
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers)
            body = b"" if request is not None and request.method == "HEAD" else reply.body
            writer.write(
                f"HTTP/1.1 {reply.status}\r\nContent-Type: {reply.content_type}\r\n"
                f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, ssl=context, limit=MAX_HEAD_BYTES)


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

    async def handler(request: HttpRequest) -> HttpReply:
        return HttpReply(*answer(registry, request))

    return await serve_http(endpoint.host, endpoint.port, context, handler)


def answer(registry: CollectorRegistry, request: HttpRequest) -> tuple[str, str, bytes]:
    """(status, content type, body) for one request: the exposition in the format the scraper accepts."""
    if request.method not in {"GET", "HEAD"}:
        return "405 Method Not Allowed", "text/plain", b"only GET /metrics\n"
    if request.path not in {"/metrics", "/"}:
        return "404 Not Found", "text/plain", b"not found: try /metrics\n"
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return "200 OK", content_type, encoder(registry)
