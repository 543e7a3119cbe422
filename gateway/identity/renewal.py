"""Renewing a credentials directory: a fresh key made here, a CSR for it, and an atomic swap of the files.

Owns: the client side of rotation for long-lived clients (users, admins, CI machines with certificates): when
a certificate is due (two thirds of its lifetime), what to send, and how to replace cert.pem and key.pem so
that a crash never leaves a key that does not match its certificate. The RPC itself is the client library's.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.identity import profiles
from gateway.identity.principal import load_certificate

RENEW_AT = 2 / 3


def renewal_due(cert_pem: bytes, now: datetime) -> bool:
    cert = load_certificate(cert_pem)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * RENEW_AT


def new_key_and_csr(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = profiles.new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def install(directory: Path, key: ec.EllipticCurvePrivateKey, cert_pem: bytes, bundle_pem: bytes) -> None:
    """Replace key.pem, cert.pem and ca.pem. Each file is written to a temporary name and renamed; the old pair
    is kept as *.old until the new pair is complete, so a crash leaves either pair usable."""
    files = {"key.pem": profiles.key_pem(key), "cert.pem": cert_pem, "ca.pem": bundle_pem}
    for name, data in files.items():
        tmp = directory / f".{name}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name == "key.pem" else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    for name in ("key.pem", "cert.pem"):
        if (directory / name).exists():
            os.replace(directory / name, directory / f"{name}.old")
    for name in ("key.pem", "cert.pem", "ca.pem"):
        os.replace(directory / f".{name}.new", directory / name)
    for name in ("key.pem.old", "cert.pem.old"):
        (directory / name).unlink(missing_ok=True)
