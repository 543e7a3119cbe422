"""Certificate profiles: exactly what each certificate fedgate issues looks like.

Owns: the X.509 shape of the federation CA certificate, of a principal's client certificate and of the
gateway's server certificate (extensions, key usages, SANs, validity windows), and ECDSA P-256 key
generation. It does not read or write files, or decide who gets a certificate (`gateway.identity.ca` does).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import IdentityError

# Tolerate this much clock skew between the CA and its peers when a certificate starts.
BACKDATE = timedelta(minutes=5)
CLIENT_USAGES = (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH)
SERVER_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH,)

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class Validity:
    start: datetime
    end: datetime

    @classmethod
    def of(cls, valid_days: int, not_before: datetime | None, not_after: datetime | None) -> Validity:
        """`valid_days` from now (backdated by BACKDATE), unless tests override either end."""
        if valid_days < 1:
            raise IdentityError(f"a certificate must be valid for at least 1 day, got {valid_days}")
        start = not_before or datetime.now(UTC) - BACKDATE
        end = not_after or start + BACKDATE + timedelta(days=valid_days)
        if end <= start:
            raise IdentityError(f"certificate would end ({end.isoformat()}) before it starts ({start.isoformat()})")
        return cls(start, end)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def host_sans(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """IP addresses as IP SANs, everything else as DNS SANs (lowercased)."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(ch.isspace() or ch in "/:@" for ch in host):
                raise IdentityError(f"{host!r} is neither a DNS name nor an IP address") from None
            names.append(x509.DNSName(host.lower()))
    return names


def _key_usage(*, cert_sign: bool, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def ca_certificate(key: ec.EllipticCurvePrivateKey, federation: str, uri: str, validity: Validity) -> x509.Certificate:
    """A self-signed CA that may sign leaves only (path length 0), naming its federation in a URI SAN."""
    # O= repeats the federation for humans when it fits X.520's 64-character bound. The random suffix keeps
    # CAs of different federations (or test sessions) distinct by subject.
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, f"fedgate federation CA {secrets.token_hex(4)}")]
    if len(federation) <= 64:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation))
    name = x509.Name(attributes)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.start)
        .not_valid_after(validity.end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def leaf_certificate(
    *,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    public_key: PublicKey,
    sans: Sequence[x509.GeneralName],
    usages: Sequence[x509.ObjectIdentifier],
    validity: Validity,
) -> x509.Certificate:
    """An end-entity certificate: not a CA, digitalSignature, the given EKUs and SANs, SKI and AKI."""
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    # RSA key exchange (TLS 1.2 RSA suites) needs keyEncipherment; ECDSA keys never do.
    usage = _key_usage(cert_sign=False, key_encipherment=isinstance(public_key, rsa.RSAPublicKey))
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.start)
        .not_valid_after(validity.end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def check_csr_key(public_key: object) -> PublicKey:
    """The key of an enrolment CSR, if fedgate accepts it: EC P-256/P-384, or RSA of 2048 bits or more."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in {"secp256r1", "secp384r1"}:
            raise IdentityError(f"EC curve {public_key.curve.name} is not accepted; use P-256 or P-384")
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise IdentityError(f"an RSA key of {public_key.key_size} bits is too small; use 2048 or more")
        return public_key
    raise IdentityError(f"{type(public_key).__name__} keys are not accepted; use ECDSA P-256")
