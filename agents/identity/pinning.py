"""Trusting a gateway for the first time: the CA fingerprint an admin hands over, checked against a TLS chain.

Owns: parsing and normalising a pinned sha256 fingerprint (hex with or without colons, any case, optional
`sha256:` prefix), and picking out of the certificate chain a server presented the CA certificate that
matches the pin, after checking that it is a CA and that the server's own certificate chains to it. Pure:
it reads DER bytes someone else fetched (`agents.transport.tls_probe`) and never touches the network.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from agents.errors import BadFingerprint, CaPinMismatch

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CaPin:
    """A pinned sha256 fingerprint of a CA certificate's DER encoding."""

    digest: str
    """64 lowercase hex digits, no separators."""

    @classmethod
    def parse(cls, text: str) -> CaPin:
        """Accept `AB:CD:…`, `abcd…`, any case, with an optional `sha256:` prefix. BadFingerprint otherwise."""
        value = text.strip().lower()
        algorithm, separator, rest = value.partition(":")
        if separator and len(algorithm) != 2:  # a prefix such as `sha256:`, not the first byte of `ab:cd:…`
            if algorithm != "sha256":
                raise BadFingerprint(
                    f"fingerprint {text!r} is a {algorithm} fingerprint; give the sha256 fingerprint the admin "
                    "printed (64 hex digits, colons optional)"
                )
            value = rest
        value = value.replace(":", "")
        if not _HEX64.fullmatch(value):
            raise BadFingerprint(
                f"fingerprint {text!r} is not a sha256 fingerprint: expected 64 hex digits (colons optional, "
                f"e.g. sha256:AB:CD:...), got {len(value)} characters; copy it again from the admin"
            )
        return cls(value)

    def matches(self, der: bytes) -> bool:
        return hashlib.sha256(der).hexdigest() == self.digest

    def __str__(self) -> str:
        return self.digest  # as `fedgate admin join-token create` prints it, so the two can be compared


def fingerprint_of(certificate: x509.Certificate) -> CaPin:
    """The pin of a certificate (sha256 over its DER)."""
    return CaPin(hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest())


def pinned_ca(chain_der: Sequence[bytes], pin: CaPin, gateway: str) -> x509.Certificate:
    """The CA certificate in `chain_der` (leaf first, as the server sent it) whose fingerprint is `pin`.

    Raises CaPinMismatch when no certificate matches, when the match is not a CA certificate, or when the
    server's own certificate does not chain to it: in each case the server cannot prove it is the
    federation's gateway, and the caller must send it nothing.
    """
    if not chain_der:
        raise CaPinMismatch(f"the gateway at {gateway} presented no certificate; it cannot be trusted")
    chain = [_load(der, gateway) for der in chain_der]
    match = next((cert for der, cert in zip(chain_der, chain, strict=True) if pin.matches(der)), None)
    if match is None:
        raise CaPinMismatch(
            f"the gateway at {gateway} did not present the CA with fingerprint {pin}; check the fingerprint "
            "the admin gave you (and that --gateway is the federation's public enrolment address). "
            "Nothing was sent."
        )
    if not _is_ca(match):
        raise CaPinMismatch(
            f"the certificate with fingerprint {pin} presented by {gateway} is not a CA certificate; the pin "
            "must be the federation CA's fingerprint (the admin gets it from `fedgate admin join-token create`)"
        )
    if not _chains_to(chain[0], match, chain[1:]):
        raise CaPinMismatch(
            f"the gateway at {gateway} presented the pinned CA {pin} but its own certificate was not issued "
            "by it; refusing to trust it. Nothing was sent."
        )
    return match


def _load(der: bytes, gateway: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CaPinMismatch(f"the gateway at {gateway} presented an unreadable certificate: {exc}") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no KeyUsage extension means no restriction (RFC 5280 4.2.1.3)
    return usage.key_cert_sign


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer`'s name is `cert`'s issuer and its key verifies `cert`'s signature."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chains_to(leaf: x509.Certificate, anchor: x509.Certificate, intermediates: Sequence[x509.Certificate]) -> bool:
    """Walk from `leaf` up through CA certificates of `intermediates` until `anchor` signs one (bounded)."""
    current = leaf
    for _ in range(len(intermediates) + 1):
        if issued_by(current, anchor):
            return True
        parent = next(
            (c for c in intermediates if c is not current and _is_ca(c) and issued_by(current, c)),
            None,
        )
        if parent is None:
            return False
        current = parent
    return False
