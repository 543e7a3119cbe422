"""Authentication: the caller's principal comes from its verified client certificate and nothing else.

Owns: reading the peer certificate that gRPC's TLS layer has already verified against the federation CA and
turning it into a `Principal`. Request metadata is never consulted for identity, so a caller cannot smuggle one.
"""

from __future__ import annotations

from typing import Any

import grpc

from gateway.errors import Unauthenticated
from gateway.identity.principal import Principal, principal_from_certificate


class Authenticator:
    def __init__(self, federation: str) -> None:
        self.federation = federation

    def principal(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        auth = context.auth_context()
        certs = list(auth.get("x509_pem_cert") or ())
        if not certs:
            raise Unauthenticated(
                "this call needs a client certificate issued by the federation CA"
                " (get one with `fedgate ca issue` or `fedgate agent enroll`)",
                reason="NO_CLIENT_CERTIFICATE",
            )
        return principal_from_certificate(certs[0], self.federation)
