"""One-time join tokens: the admin's half of the double opt-in that lets a centre enrol its agent.

Owns: making a token (an id to find it by and a secret of which only the sha256 is kept), parsing one, and
deciding whether a presented token may enrol a given site now. The store keeps the records and marks a
token used atomically; this module does no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from gateway.errors import PermissionDenied, Unauthenticated

PREFIX = "fgj_"


@dataclass(frozen=True)
class JoinTokenRecord:
    token_id: str
    site: str
    secret_sha256: str
    created_by: str
    create_time: datetime
    expire_time: datetime
    used_time: datetime | None = None


def new_join_token(site: str, created_by: str, now: datetime, expire_time: datetime) -> tuple[str, JoinTokenRecord]:
    """The token to hand to the centre (shown once) and the record to store (holds only a hash)."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    record = JoinTokenRecord(token_id, site, _hash(secret), created_by, now, expire_time)
    return f"{PREFIX}{token_id}.{secret}", record


def parse_join_token(token: str) -> tuple[str, str]:
    """(token_id, secret) of a well-formed token; Unauthenticated otherwise."""
    body = token.removeprefix(PREFIX) if token.startswith(PREFIX) else ""
    token_id, _, secret = body.partition(".")
    if len(token_id) != 16 or not secret or len(token) > 200:
        raise Unauthenticated("not a fedgate join token (expected fgj_<id>.<secret>)", reason="JOIN_TOKEN_MALFORMED")
    return token_id, secret


def check_join_token(record: JoinTokenRecord | None, secret: str, site: str, now: datetime) -> JoinTokenRecord:
    """The record when `secret` enrols `site` now. Each refusal has its own reason; none changes anything."""
    if record is None or not hmac.compare_digest(record.secret_sha256, _hash(secret)):
        raise Unauthenticated("this join token is not known to the gateway", reason="JOIN_TOKEN_UNKNOWN")
    if record.used_time is not None:
        raise PermissionDenied(
            f"this join token was already used at {record.used_time.isoformat()}; ask the admin for a new one",
            reason="JOIN_TOKEN_USED",
        )
    if record.expire_time <= now:
        raise PermissionDenied(
            f"this join token expired at {record.expire_time.isoformat()}; ask the admin for a new one",
            reason="JOIN_TOKEN_EXPIRED",
        )
    if record.site != site:
        raise PermissionDenied(
            f"this join token enrols site {record.site!r}, not {site!r}", reason="JOIN_TOKEN_WRONG_SITE"
        )
    return record


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
