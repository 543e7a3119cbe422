"""How usage receipts are signed and verified, for every key type enrolment accepts: one rule for both sides.

Owns: the signature scheme implied by the key (EC P-256: ECDSA with SHA-256; EC P-384: ECDSA with SHA-384;
RSA of 2048 bits or more: PKCS#1 v1.5 with SHA-256), signing with a private key and verifying with a public
one. The site signs its records with it (the agent), the gateway verifies them and countersigns with its own
key (the gateway, `fedgate usage`). Any other key is refused: `supported` is False and `verify` fails.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
_CURVES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384}
MIN_RSA_BITS = 2048


def supported(key: object) -> bool:
    """True for an EC P-256/P-384 or RSA (2048+) key, private or public."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return key.curve.name in _CURVES
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return key.key_size >= MIN_RSA_BITS
    return False


def sign(key: PrivateKey, data: bytes) -> bytes:
    """The signature of `data` under `key`; ValueError for a key type receipts do not use."""
    if not supported(key):
        raise ValueError("receipts are signed with EC P-256/P-384 or RSA (2048 bits or more) keys")
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data, ec.ECDSA(_CURVES[key.curve.name]()))


def verify(key: object, data: bytes, signature: bytes) -> bool:
    """True when `signature` over `data` holds under the public `key` (False for an unsupported key)."""
    if not supported(key):
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_CURVES[key.curve.name]()))
        else:
            return False
    except InvalidSignature:
        return False
    return True
