"""Identity: who a caller is (`Principal`, from a SPIFFE URI or a peer certificate) and the federation CA.

Owns: principals, their URIs and naming rules, and issuing the certificates that carry them. It does not
decide what a principal may do (`gateway.trust.access`), check revocation, or speak gRPC (`gateway.transport` turns
the peer's certificate bytes into a call to `principal_from_certificate`).
"""

from gateway.identity.ca import CertificateAuthority, init_ca
from gateway.identity.principal import (
    KINDS,
    PeerCertificate,
    Principal,
    gateway_uri,
    peer_certificate,
    principal_from_certificate,
    principal_from_uri,
)

__all__ = [
    "KINDS",
    "CertificateAuthority",
    "PeerCertificate",
    "Principal",
    "gateway_uri",
    "init_ca",
    "peer_certificate",
    "principal_from_certificate",
    "principal_from_uri",
]
