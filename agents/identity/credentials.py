"""The site's own key material: making a key and a CSR, checking what the gateway issued, writing the files.

Owns: ECDSA P-256 keys made here (the private key never leaves the site), certificate signing requests, the
check that an issued certificate is for our key, names our site and was signed by a CA of the bundle that
came with it, and atomic file replacement (a temp file in the same folder, fsynced, then renamed) with the
private key at mode 0600 from the moment it exists. It does not talk to the gateway nor decide when to
renew (`agents.identity.renewal`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agents.errors import CredentialsError
from agents.identity.pinning import issued_by

KEY_MODE = 0o600
PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class IssuedCertificate:
    """What the gateway's Enroll and RenewCertificate return."""

    certificate_chain_pem: bytes
    """The site's certificate first, then any intermediates, PEM."""
    ca_bundle_pem: bytes
    """The federation CA certificate(s) to trust from now on, PEM."""
    expire_time: datetime | None
    """When the certificate expires as the gateway says; None if it did not say."""


@dataclass(frozen=True)
class SiteKey:
    """A freshly made private key and a CSR over it."""

    key: ec.EllipticCurvePrivateKey
    csr_pem: bytes

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def new_site_key(site: str) -> SiteKey:
    """An ECDSA P-256 key and a CSR with CN=`site`. The gateway takes the identity from the join token or the
    caller's current certificate, never from the CSR; the CN only helps a human reading it."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, site)]))
        .sign(key, hashes.SHA256())
    )
    return SiteKey(key, csr.public_bytes(serialization.Encoding.PEM))


def load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM blob; CredentialsError naming `what` when there is none or it is garbage."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CredentialsError(f"{what} is not readable PEM: {exc}") from None
    if not certificates:
        raise CredentialsError(f"{what} holds no certificate")
    return certificates


def first_certificate(path: Path) -> x509.Certificate:
    """The leaf of a certificate chain file."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from None
    return load_certificates(pem, str(path))[0]


def check_issued(issued: IssuedCertificate, key: SiteKey, site: str, now: datetime) -> x509.Certificate:
    """Check what the gateway issued before anything is written; returns the site's certificate.

    It must be for `key`, name `site` if it carries a spiffe URI, not have expired at `now`, and chain to a CA
    of the bundle it came with, so that the files written next can actually be used to connect.
    """
    chain = load_certificates(issued.certificate_chain_pem, "the issued certificate chain")
    bundle = load_certificates(issued.ca_bundle_pem, "the CA bundle")
    leaf = chain[0]
    if leaf.public_key() != key.key.public_key():
        raise CredentialsError("the gateway issued a certificate for a different key than the one sent")
    uris = _uris(leaf)
    if uris and not any(uri.endswith(f"/site/{site}") for uri in uris):
        raise CredentialsError(f"the gateway issued a certificate for {', '.join(uris)}, not for site {site!r}")
    # Only the end is checked: a start a little in this machine's future (clock skew) does not matter, since
    # the gateway checks the certificate by its own clock; an end in the past makes it useless here too.
    if leaf.not_valid_after_utc <= now:
        raise CredentialsError(
            f"the issued certificate expired at {leaf.not_valid_after_utc.isoformat()}, before now "
            f"({now.isoformat()}); check this machine's clock"
        )
    if not _chains_to_bundle(leaf, chain[1:], bundle):
        raise CredentialsError("the issued certificate was not signed by a CA of the bundle sent with it")
    return leaf


def principal_of(certificate: x509.Certificate) -> str:
    """The certificate's spiffe URI, or its subject when it has none."""
    uris = _uris(certificate)
    return uris[0] if uris else certificate.subject.rfc4514_string()


def _uris(certificate: x509.Certificate) -> list[str]:
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(uri) for uri in sans.get_values_for_type(x509.UniformResourceIdentifier)]


def _chains_to_bundle(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], bundle: Sequence[x509.Certificate]
) -> bool:
    current = leaf
    for _ in range(len(intermediates) + 1):
        if any(issued_by(current, ca) for ca in bundle):
            return True
        parent = next((c for c in intermediates if c is not current and issued_by(current, c)), None)
        if parent is None:
            return False
        current = parent
    return False


@dataclass(frozen=True)
class CredentialFiles:
    """Where a site's key, certificate and CA bundle live."""

    key: Path
    cert: Path
    ca: Path


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` so that a reader sees the old or the new file, never half of one.
    The temp file has `mode` before a byte is written, so a key is never readable by others."""
    staged = _stage(path, data, mode)
    os.replace(staged, path)


def install_credentials(files: CredentialFiles, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
    """Replace a site's key, certificate and CA bundle. All three are staged (written and fsynced) before the
    first rename, then renamed key, certificate, CA in one go, so the window in which a reader could pair a
    new key with the old certificate is three renames long. The key stays at 0600; the other two keep their
    current mode (0644 when new). On any failure before the renames the old files are left untouched."""
    plan = [
        (files.key, key_pem, KEY_MODE),
        (files.cert, cert_pem, _mode_of(files.cert)),
        (files.ca, ca_pem, _mode_of(files.ca)),
    ]
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data, mode in plan:
            staged.append((_stage(path, data, mode), path))
        for temp, path in staged:
            os.replace(temp, path)
    finally:
        for temp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _mode_of(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return PUBLIC_MODE


def _stage(path: Path, data: bytes, mode: int) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def utc_now() -> datetime:
    return datetime.now(UTC)
