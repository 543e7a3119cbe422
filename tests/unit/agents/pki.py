"""Certificates minted for the transport tests: a CA, a gateway server certificate, a site certificate, and a
signer for CSRs (what the gateway's EnrollmentService does, in a few lines)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class MintedPki:
    ca: Path
    server_cert: Path
    server_key: Path
    site_cert: Path
    site_key: Path
    ca_key: Path | None = None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    subject: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_pki(folder: Path, site: str = "centre-a") -> MintedPki:
    import ipaddress

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fedgate test CA")
    now = datetime.now(UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_cert, server_key = _issue(
        ca_key,
        ca_name,
        "gateway",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    site_cert, site_key = _issue(
        ca_key,
        ca_name,
        site,
        [x509.UniformResourceIdentifier(f"spiffe://test/site/{site}")],
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    pem = serialization.Encoding.PEM
    pki = MintedPki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server-key.pem",
        site_cert=folder / "site.pem",
        site_key=folder / "site-key.pem",
        ca_key=folder / "ca-key.pem",
    )
    pki.ca.write_bytes(ca_cert.public_bytes(pem))
    pki.server_cert.write_bytes(server_cert.public_bytes(pem))
    pki.site_cert.write_bytes(site_cert.public_bytes(pem))
    _write_key(pki.server_key, server_key)
    _write_key(pki.site_key, site_key)
    _write_key(folder / "ca-key.pem", ca_key)
    return pki


def sign_csr(
    pki: MintedPki,
    csr_pem: bytes,
    site: str,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> bytes:
    """A site certificate for the CSR's key, issued by the test CA (identity from `site`, not the CSR)."""
    assert pki.ca_key is not None
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    csr = x509.load_pem_x509_csr(csr_pem)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(site))
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(minutes=5))
        .not_valid_after(not_after or now + timedelta(days=10))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://test/site/{site}")]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def site_certificate(
    pki: MintedPki, folder: Path, site: str = "centre-a", *, not_before: datetime, not_after: datetime
) -> tuple[Path, Path, Path]:
    """A fresh key and a site certificate with the given validity, plus a copy of the CA, in `folder`:
    (ca, cert, key) paths that a test may let the agent replace."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(site))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca, cert, key_path = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.write_bytes(pki.ca.read_bytes())
    cert.write_bytes(sign_csr(pki, csr, site, not_before=not_before, not_after=not_after))
    _write_key(key_path, key)
    key_path.chmod(0o600)
    return ca, cert, key_path
