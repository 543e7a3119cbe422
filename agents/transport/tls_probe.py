"""Looking at the certificates a server presents, before trusting it with anything.

Owns: one plain TLS handshake with verification switched off, whose only purpose is to read the chain the
server sent so that `agents.identity.pinning` can find the pinned CA in it. Nothing of ours is sent: no client
certificate, no application data, the connection is closed right after the handshake. It never decides
whether the chain is trustworthy.
"""

from __future__ import annotations

import _ssl
import socket
import ssl
from typing import Any

from agents.errors import GatewayUnreachable

PROBE_TIMEOUT_S = 10.0


def split_target(target: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port)."""
    host, _, port = target.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def server_chain(target: str, timeout_s: float = PROBE_TIMEOUT_S) -> list[bytes]:
    """The certificates (DER, leaf first) the TLS server at `target` presents. Raises GatewayUnreachable."""
    host, port = split_target(target)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Verification is off for this probe only: its result is checked against the pin, and the real call
    # that follows verifies the server fully against the pinned CA.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])  # what a gRPC client offers; some servers close without it
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            chain = _unverified_chain(tls)
    except ssl.SSLError as exc:
        raise GatewayUnreachable(
            f"TLS handshake with {target} failed ({exc.reason or exc}); is --gateway the gateway's public "
            "enrolment address?"
        ) from None
    except OSError as exc:
        raise GatewayUnreachable(f"cannot reach the gateway at {target}: {exc.strerror or exc}") from None
    return chain


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:  # Python 3.13+: public, returns DER bytes
        return [bytes(der) for der in public() or []]
    # Python 3.10-3.12: only on the private SSL object, as _ssl.Certificate objects.
    sslobj: Any = tls._sslobj  # type: ignore[attr-defined]
    return [cert.public_bytes(_ssl.ENCODING_DER) for cert in sslobj.get_unverified_chain() or []]
