"""Short-lived signed tokens for machines without certificates (CI systems): compact JWS with Ed25519.

Owns: issuing and verifying tokens, strictly. The header must say exactly `alg: EdDSA` (no `none`, no HMAC
with the public key as a secret: algorithm confusion is refused before any signature maths); the audience
must be this gateway's; expiry, not-before and a maximum lifetime are enforced against an injected clock.
Replay (single-use tokens) and revocation are the caller's job, keyed by the `jti` returned here.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import Unauthenticated
from gateway.identity.principal import Principal, principal_from_uri

MAX_LIFETIME = timedelta(hours=24)
LEEWAY = timedelta(seconds=30)  # clock skew tolerated on not-before
MAX_TOKEN_BYTES = 4096
ROLES = ("member", "viewer")


@dataclass(frozen=True)
class TokenClaims:
    issuer: str
    subject: str  # principal URI
    audience: str
    issued_at: datetime
    expires_at: datetime
    token_id: str  # jti
    role: str = "member"
    single_use: bool = False


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _refuse(reason: str, message: str) -> Unauthenticated:
    return Unauthenticated(f"token refused: {message}", reason=reason)


def issue_token(key: Ed25519PrivateKey, claims: TokenClaims) -> str:
    if claims.role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    header = {"alg": "EdDSA", "typ": "JWT"}
    payload = {
        "iss": claims.issuer,
        "sub": claims.subject,
        "aud": claims.audience,
        "iat": int(claims.issued_at.timestamp()),
        "nbf": int(claims.issued_at.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "jti": claims.token_id,
        "role": claims.role,
        "once": claims.single_use,
    }
    signing_input = ".".join(_b64encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload))
    return f"{signing_input}.{_b64encode(key.sign(signing_input.encode('ascii')))}"


def new_token_id() -> str:
    return secrets.token_hex(16)


def verify_token(token: str, key: Ed25519PublicKey, audience: str, now: datetime) -> TokenClaims:
    """Claims of a valid token; Unauthenticated with a precise reason otherwise."""
    if len(token) > MAX_TOKEN_BYTES:
        raise _refuse("TOKEN_MALFORMED", f"longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise _refuse("TOKEN_MALFORMED", "a token has three dot-separated parts")
    try:
        header = json.loads(_b64decode(parts[0]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _refuse("TOKEN_MALFORMED", "the header is not base64url-encoded JSON") from None
    # The algorithm is fixed by the gateway, never chosen by the token: refuse anything else first.
    if not isinstance(header, dict) or header.get("alg") != "EdDSA" or set(header) - {"alg", "typ", "kid"}:
        alg = header.get("alg") if isinstance(header, dict) else None
        raise _refuse("TOKEN_ALGORITHM", f"algorithm {alg!r} is not accepted; only EdDSA is")
    try:
        payload = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _refuse("TOKEN_MALFORMED", "a part is not base64url-encoded JSON") from None
    if not isinstance(payload, dict):
        raise _refuse("TOKEN_MALFORMED", "the payload must be a JSON object")
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature:
        raise _refuse("TOKEN_SIGNATURE", "the signature does not verify (tampered, or not issued here)") from None
    claims = _claims(payload)
    if claims.audience != audience:
        raise _refuse("TOKEN_AUDIENCE", f"issued for audience {claims.audience!r}, not {audience!r}")
    if claims.expires_at <= now:
        raise _refuse("TOKEN_EXPIRED", f"expired at {claims.expires_at.isoformat()}")
    if claims.issued_at > now + LEEWAY:
        raise _refuse("TOKEN_NOT_YET_VALID", f"not valid before {claims.issued_at.isoformat()}")
    if claims.expires_at - claims.issued_at > MAX_LIFETIME:
        raise _refuse("TOKEN_LIFETIME", f"lives longer than the {MAX_LIFETIME} this gateway accepts")
    return claims


def _claims(payload: dict[str, object]) -> TokenClaims:
    try:
        fields = {k: payload[k] for k in ("iss", "sub", "aud", "iat", "exp", "jti", "role", "once")}
    except KeyError as missing:
        raise _refuse("TOKEN_MALFORMED", f"claim {missing} is missing") from None
    strings = ("iss", "sub", "aud", "jti", "role")
    if not all(isinstance(fields[k], str) for k in strings) or not isinstance(fields["once"], bool):
        raise _refuse("TOKEN_MALFORMED", "a claim has the wrong type")
    if not all(isinstance(fields[k], int) and not isinstance(fields[k], bool) for k in ("iat", "exp")):
        raise _refuse("TOKEN_MALFORMED", "iat and exp must be integers")
    if fields["role"] not in ROLES:
        raise _refuse("TOKEN_MALFORMED", f"role must be one of {', '.join(ROLES)}")
    return TokenClaims(
        issuer=str(fields["iss"]),
        subject=str(fields["sub"]),
        audience=str(fields["aud"]),
        issued_at=datetime.fromtimestamp(int(fields["iat"]), UTC),  # type: ignore[call-overload]
        expires_at=datetime.fromtimestamp(int(fields["exp"]), UTC),  # type: ignore[call-overload]
        token_id=str(fields["jti"]),
        role=str(fields["role"]),
        single_use=bool(fields["once"]),
    )


def principal_of(claims: TokenClaims, federation: str) -> Principal:
    """The user a token speaks for; a token can never name a site or an admin."""
    principal = principal_from_uri(claims.subject, federation)
    if principal.kind != "user":
        raise _refuse("TOKEN_SUBJECT", f"tokens speak only for tenant users, not a {principal.kind}")
    return Principal("user", federation, principal.name, principal.tenant, read_only=claims.role == "viewer")
