"""Revocation: which credentials the gateway no longer accepts, checked on every call and on open streams.

Owns: `Revocation` records, the in-memory `RevocationList` the authenticators consult (serials, tokens, and
principals revoked as of a time: certificates issued to them before it are refused, a later re-enrolment is
not), and the `Credential` a caller authenticated with, which the list can re-check while a stream is open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from gateway.errors import InvalidArgument, Unauthenticated
from gateway.identity.principal import Principal

KINDS = ("serial", "principal", "token")
_TEXT_FORM = re.compile(r"\d+ \(0x([0-9a-fA-F]+)\)")  # `openssl x509 -text` for short serials: 4660 (0x1234)


def parse_serial(text: str) -> int:
    """A certificate serial in any notation OpenSSL or a person writes, as the integer it is: hexadecimal with or
    without `0x`, leading zeros, colons or spaces between bytes, either case (`openssl x509 -serial` prints
    `serial=0A1B...`, `-text` prints `0a:1b:...`, or `4660 (0x1234)` for a short serial). A bare run of digits
    is read as hexadecimal, as OpenSSL prints it; a decimal serial needs the `dec:` prefix."""
    value = text.strip()
    if value.lower().startswith("serial="):
        value = value[len("serial=") :]
    if match := _TEXT_FORM.fullmatch(value):
        value = match.group(1)
    if value.lower().startswith("dec:"):
        digits = value[4:].strip()
        if not digits.isdigit():
            raise InvalidArgument(f"{text!r} is not a decimal certificate serial")
        return int(digits)
    value = value.lower().removeprefix("0x").replace(":", "").replace(" ", "")
    if not value or len(value) > 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidArgument(
            f"{text[:80]!r} is not a certificate serial: give it as OpenSSL prints it (hexadecimal, "
            "colons and leading zeros allowed) or as dec:DIGITS"
        )
    return int(value, 16)


def canonical_serial(text: str) -> str:
    """The one stored and compared form of a serial: lower-case hexadecimal without leading zeros."""
    return f"{parse_serial(text):x}"


@dataclass(frozen=True)
class Revocation:
    kind: str  # serial | principal | token
    value: str  # hex serial, principal URI, or token id (jti)
    time: datetime
    reason: str = ""
    by: str = ""  # the admin who revoked it

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidArgument(f"revocation kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not self.value or len(self.value) > 512:
            raise InvalidArgument("say what to revoke: a serial, a principal URI or a token id")


@dataclass(frozen=True)
class Credential:
    """What a caller proved itself with: a certificate (serial, validity) or a token (id, expiry)."""

    principal: Principal
    kind: str  # certificate | token
    credential_id: str  # hex serial or jti
    not_before: datetime
    not_after: datetime


class RevocationList:
    def __init__(self, revocations: tuple[Revocation, ...] = ()) -> None:
        self._serials: set[str] = set()
        self._tokens: set[str] = set()
        self._principals: dict[str, datetime] = {}
        for revocation in revocations:
            self.add(revocation)

    def add(self, revocation: Revocation) -> None:
        if revocation.kind == "serial":  # rows written before serials were canonical may carry leading zeros
            self._serials.add(canonical_serial(revocation.value))
        elif revocation.kind == "token":
            self._tokens.add(revocation.value)
        else:
            current = self._principals.get(revocation.value)
            self._principals[revocation.value] = max(current, revocation.time) if current else revocation.time

    def counts(self) -> dict[str, int]:
        """Revocations in force by kind (serial, token, principal)."""
        return {"serial": len(self._serials), "token": len(self._tokens), "principal": len(self._principals)}

    def principal_revoked_at(self, uri: str) -> datetime | None:
        return self._principals.get(uri)

    def check(self, credential: Credential, now: datetime) -> None:
        """Raise Unauthenticated when the credential is revoked or no longer (or not yet) valid."""
        if credential.kind == "certificate" and canonical_serial(credential.credential_id) in self._serials:
            raise Unauthenticated(f"certificate {credential.credential_id} has been revoked", reason="REVOKED")
        if credential.kind == "token" and credential.credential_id in self._tokens:
            raise Unauthenticated(f"token {credential.credential_id} has been revoked", reason="REVOKED")
        revoked_at = self._principals.get(credential.principal.uri)
        if revoked_at is not None and credential.not_before <= revoked_at:
            raise Unauthenticated(
                f"credentials of {credential.principal.uri} issued before {revoked_at.isoformat()} are revoked",
                reason="REVOKED",
            )
        if now >= credential.not_after:
            raise Unauthenticated(
                f"the {credential.kind} expired at {credential.not_after.isoformat()}", reason="EXPIRED"
            )
        if now < credential.not_before:
            raise Unauthenticated(
                f"the {credential.kind} is not valid before {credential.not_before}", reason="NOT_YET_VALID"
            )
