"""Revocation: which credentials the gateway no longer accepts, checked on every call and on open streams.

Owns: `Revocation` records, the in-memory `RevocationList` the authenticators consult (serials, tokens, and
principals revoked as of a time: certificates issued to them before it are refused, a later re-enrolment is
not), and the `Credential` a caller authenticated with, which the list can re-check while a stream is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.errors import InvalidArgument, Unauthenticated
from gateway.identity.principal import Principal

KINDS = ("serial", "principal", "token")


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
        if revocation.kind == "serial":
            self._serials.add(revocation.value.lower())
        elif revocation.kind == "token":
            self._tokens.add(revocation.value)
        else:
            current = self._principals.get(revocation.value)
            self._principals[revocation.value] = max(current, revocation.time) if current else revocation.time

    def principal_revoked_at(self, uri: str) -> datetime | None:
        return self._principals.get(uri)

    def check(self, credential: Credential, now: datetime) -> None:
        """Raise Unauthenticated when the credential is revoked or no longer (or not yet) valid."""
        if credential.kind == "certificate" and credential.credential_id.lower() in self._serials:
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
