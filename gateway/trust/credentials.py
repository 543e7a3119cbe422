"""A credentials directory (`ca.pem`, `cert.pem`, `key.pem`) read into memory and checked.

Owns: reading the three PEM files with errors that name the file and the fix, and checking up front what a
TLS handshake would otherwise report cryptically: each file parses, the key belongs to the certificate, and
the certificate was issued by the CA. It does not speak gRPC (`gateway.transport` turns this into channel or
server credentials), check validity periods (tests mint expired certificates on purpose; the handshake
refuses them) or know who the certificate names (`gateway.identity` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from gateway.errors import ConfigError

CA_FILE = "ca.pem"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
ISSUE_HINT = (
    "issue credentials with `fedgate ca issue --ca-dir <ca dir> --out <dir> "
    "(--site NAME | --user NAME --tenant T | --admin NAME | --server)`"
)


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; {ISSUE_HINT}", reason="MISSING_CREDENTIALS") from None
    except OSError as exc:
        raise ConfigError(
            f"{what} {path} is not readable ({exc.strerror}); check its owner and permissions",
            reason="MISSING_CREDENTIALS",
        ) from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{what} {path} is not a PEM file; {ISSUE_HINT}")
    return data


@dataclass(frozen=True)
class Credentials:
    """PEM bytes of the federation CA, this party's certificate and its private key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_dir(cls, path: str | Path) -> Credentials:
        """Read `ca.pem`, `cert.pem` and `key.pem` from a credentials directory (`~` is expanded)."""
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise ConfigError(
                f"credentials directory {directory} does not exist; {ISSUE_HINT}",
                reason="MISSING_CREDENTIALS",
            )
        return cls.from_files(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)

    @classmethod
    def from_files(cls, ca: str | Path, cert: str | Path, key: str | Path) -> Credentials:
        """Read three PEM files and check that they belong together; ConfigError naming the culprit."""
        ca_path, cert_path, key_path = (Path(p).expanduser() for p in (ca, cert, key))
        credentials = cls(
            ca_pem=_read(ca_path, "CA certificate"),
            cert_pem=_read(cert_path, "certificate"),
            key_pem=_read(key_path, "private key"),
        )
        credentials._check(ca_path, cert_path, key_path)
        return credentials

    def _check(self, ca_path: Path, cert_path: Path, key_path: Path) -> None:
        try:
            # A bundle: during a CA rollover it holds the old and the new CA.
            authorities = x509.load_pem_x509_certificates(self.ca_pem)
        except ValueError as exc:
            raise ConfigError(f"CA certificate {ca_path} does not parse ({exc}); {ISSUE_HINT}") from None
        cert = self.certificate(cert_path)
        try:
            key = serialization.load_pem_private_key(self.key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"private key {key_path} does not parse or is encrypted ({exc}); fedgate needs an unencrypted PEM key"
            ) from None
        if key.public_key() != cert.public_key():
            raise ConfigError(f"private key {key_path} does not belong to {cert_path}; {ISSUE_HINT}")
        if not any(_issued_by(cert, ca) for ca in authorities):
            raise ConfigError(
                f"{cert_path} was not issued by a CA in {ca_path}: they come from different federations or "
                f"CAs; {ISSUE_HINT} with this federation's CA"
            )

    def certificate(self, source: Path | str = "certificate") -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self.cert_pem)
        except ValueError as exc:
            raise ConfigError(f"certificate {source} does not parse ({exc}); {ISSUE_HINT}") from None

    @property
    def not_after(self) -> datetime:
        """When the certificate expires (UTC)."""
        return self.certificate().not_valid_after_utc


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
