"""The gateway's online authority: the federation CA that signs enrolments and renewals, the trust bundle it
hands out, and the Ed25519 keys that sign tokens and the audit log.

Owns: loading these from the authority directory (`ca.pem`, `ca-key.pem`, and `token-key.pem` /
`audit-key.pem`, made on first start with mode 0600). During a CA rollover the trust bundle holds the old and
the new CA while `ca.pem` in the authority directory is the new one that signs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import ConfigError
from gateway.identity.ca import CertificateAuthority

TOKEN_KEY = "token-key.pem"
AUDIT_KEY = "audit-key.pem"


@dataclass(frozen=True)
class Authority:
    ca: CertificateAuthority
    bundle_pem: bytes  # every CA the gateway trusts right now (old and new during a rollover)
    token_key: Ed25519PrivateKey
    audit_key: Ed25519PrivateKey

    @property
    def ca_fingerprint(self) -> str:
        """sha256 of the signing CA certificate's DER, hex: what `fedgate agent enroll` pins."""
        return ca_fingerprint(self.ca.certificate)

    @classmethod
    def load(cls, directory: Path, bundle: Path) -> Authority:
        ca = CertificateAuthority.load(directory)
        bundle_pem = bundle.read_bytes()
        trusted = {ca_fingerprint(c) for c in x509.load_pem_x509_certificates(bundle_pem)}
        if ca_fingerprint(ca.certificate) not in trusted:
            raise ConfigError(
                f"the signing CA in {directory} is not in the trust bundle {bundle}: the gateway would issue"
                " certificates it refuses. Add ca.pem to the bundle (see docs/security.md, CA rollover)"
            )
        return cls(ca, bundle_pem, _ed25519(directory / TOKEN_KEY), _ed25519(directory / AUDIT_KEY))


def ca_fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _ed25519(path: Path) -> Ed25519PrivateKey:
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        return key
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a readable Ed25519 private key ({exc}); move it away to make a new one"
        ) from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(loaded).__name__}, not an Ed25519 key")
    return loaded
