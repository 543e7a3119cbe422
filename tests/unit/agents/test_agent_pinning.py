"""Trusting a gateway the first time: the pinned CA fingerprint, parsed and checked against a server's chain."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agents.errors import BadFingerprint, CaPinMismatch
from agents.identity.pinning import CaPin, fingerprint_of, pinned_ca

from .pki import MintedPki, make_pki

GATEWAY = "gateway.example.org:7444"


def der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def pin_of(path: Path) -> CaPin:
    return CaPin(hashlib.sha256(der(path)).hexdigest())


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> MintedPki:
    """A second, unrelated CA with its own gateway certificate."""
    return make_pki(tmp_path_factory.mktemp("other-pki"))


DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    "text",
    [
        DIGEST,
        DIGEST.upper(),
        ":".join(DIGEST[i : i + 2] for i in range(0, 64, 2)),
        ":".join(DIGEST[i : i + 2] for i in range(0, 64, 2)).upper(),
        "sha256:" + DIGEST,
        "SHA256:" + ":".join(DIGEST[i : i + 2] for i in range(0, 64, 2)).upper(),
        f"  {DIGEST}\n",
    ],
)
def test_fingerprint_is_accepted_in_every_common_spelling(text: str) -> None:
    assert CaPin.parse(text).digest == DIGEST


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "64 hex digits"),
        (DIGEST[:-2], "64 hex digits"),
        (DIGEST + "00", "64 hex digits"),
        (DIGEST[:-1] + "g", "64 hex digits"),
        ("sha1:" + DIGEST[:40], "sha1 fingerprint"),
        ("md5:" + DIGEST[:32], "md5 fingerprint"),
    ],
)
def test_fingerprint_that_is_not_a_sha256_is_refused_with_what_to_give(text: str, says: str) -> None:
    with pytest.raises(BadFingerprint, match=says):
        CaPin.parse(text)


def test_fingerprint_prints_as_the_admin_command_does() -> None:
    assert str(CaPin.parse("SHA256:" + DIGEST.upper())) == DIGEST


def test_pinned_ca_is_found_in_a_chain_of_leaf_and_ca(pki: MintedPki) -> None:
    ca = pinned_ca([der(pki.server_cert), der(pki.ca)], pin_of(pki.ca), GATEWAY)
    assert ca.public_bytes(Encoding.PEM) == pki.ca.read_bytes()
    assert fingerprint_of(ca) == pin_of(pki.ca)


def test_chain_without_the_pinned_ca_is_refused_naming_gateway_and_fingerprint(
    pki: MintedPki, other: MintedPki
) -> None:
    with pytest.raises(CaPinMismatch) as refused:
        pinned_ca([der(other.server_cert), der(other.ca)], pin_of(pki.ca), GATEWAY)
    message = refused.value.message
    assert f"the gateway at {GATEWAY} did not present the CA with fingerprint {pin_of(pki.ca)}" in message
    assert "check the fingerprint the admin gave you" in message


def test_pin_of_the_servers_own_certificate_is_refused_because_it_is_no_ca(pki: MintedPki) -> None:
    with pytest.raises(CaPinMismatch, match="not a CA certificate"):
        pinned_ca([der(pki.server_cert), der(pki.ca)], pin_of(pki.server_cert), GATEWAY)


def test_pinned_ca_presented_beside_a_leaf_it_did_not_issue_is_refused(pki: MintedPki, other: MintedPki) -> None:
    # An impostor can copy the federation CA's certificate into its chain; it cannot make the CA sign its leaf.
    with pytest.raises(CaPinMismatch, match="was not issued by it"):
        pinned_ca([der(other.server_cert), der(pki.ca)], pin_of(pki.ca), GATEWAY)


def test_empty_or_unreadable_chain_is_refused(pki: MintedPki) -> None:
    with pytest.raises(CaPinMismatch, match="no certificate"):
        pinned_ca([], pin_of(pki.ca), GATEWAY)
    with pytest.raises(CaPinMismatch, match="unreadable"):
        pinned_ca([b"not a certificate"], pin_of(pki.ca), GATEWAY)
