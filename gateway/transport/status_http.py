"""The status page's HTTPS endpoint: the same authentication as the API, then the page as the caller may see it.

Owns: turning one HTTP request into a principal (a client certificate TLS verified against the federation CA,
read by `Trust.authenticate_certificate` as on the mTLS port; or exactly one `Authorization: Bearer` header,
verified by `Trust.authenticate_token` as on the public port), auditing refusals like the gRPC ports do, and
serving GET / with `gateway.status`. There is no other credential: no query-string token, no cookie. The HTTP
server is `fedgate.common.metrics_http`'s, with the gateway's certificate and client certificates optional.
"""

from __future__ import annotations

import asyncio
import ssl

from fedgate.common.metrics_http import Handler, HttpReply, HttpRequest, MetricsTls, TlsContextFiles, serve_http
from gateway.app.config import GatewayConfig
from gateway.errors import GatewayError, Unauthenticated
from gateway.identity.principal import Principal
from gateway.jobs.service import JobService
from gateway.status.render import render_page
from gateway.status.view import read_status
from gateway.trust.service import Trust

PAGE_METHOD = "status page"
"""How a refused request is named in the audit log."""
HEADERS = (
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    ("X-Content-Type-Options", "nosniff"),
)


def request_principal(trust: Trust, request: HttpRequest) -> Principal:
    """The caller of one request, by the API's rules; Unauthenticated without a credential or with a bad one."""
    token = request.headers.get("authorization", "")
    if token:
        if not token.startswith("Bearer "):
            raise Unauthenticated("the status page takes `Authorization: Bearer <token>`", reason="NO_TOKEN")
        return trust.authenticate_token(token.removeprefix("Bearer ").strip()).principal
    if request.peer_certificate is not None:
        pem = ssl.DER_cert_to_PEM_cert(request.peer_certificate).encode()
        return trust.authenticate_certificate(pem).principal
    raise Unauthenticated(
        "the status page needs a client certificate of the federation CA or `Authorization: Bearer <token>`",
        reason="NO_TOKEN",  # neither credential: the code the public port gives a call without one
    )


def status_handler(trust: Trust, jobs: JobService) -> Handler:
    async def handle(request: HttpRequest) -> HttpReply:
        if request.method not in {"GET", "HEAD"}:
            return HttpReply("405 Method Not Allowed", "text/plain", b"only GET /\n")
        if request.path not in {"/", "/status"}:
            return HttpReply("404 Not Found", "text/plain", b"not found: the status page is at /\n")
        try:
            caller = request_principal(trust, request)
        except GatewayError as exc:
            trust.denied("anonymous", PAGE_METHOD, exc.reason, exc.message)
            return HttpReply("401 Unauthorized", "text/plain", f"{exc.message}\n".encode(), HEADERS)
        page = render_page(read_status(jobs, caller, jobs.clock()))
        return HttpReply("200 OK", "text/html; charset=utf-8", page.encode(), HEADERS)

    return handle


async def serve_status(trust: Trust, jobs: JobService, config: GatewayConfig) -> asyncio.Server | None:
    """Serve the status page where the config says (None: nowhere)."""
    if config.status is None:
        return None
    files = MetricsTls(config.tls.ca, config.tls.cert, config.tls.key)
    context = TlsContextFiles(files, client_certificate_optional=True).context
    return await serve_http(config.status.host, config.status.port, context, status_handler(trust, jobs))
