"""`fedgate admin join-token list`, `token list` and `revoke list`: what the federation has handed out and taken back.

The gateway's hash-chained audit log records every join token created (and the enrolment that used it), every
token issued and every revocation, with who did it and when; these listings are views of it, so they show what
the log proves (and `audit verify` checks) rather than a second record that could disagree with it. Secrets are
never in the log: a listing shows ids, never the tokens themselves.

Owns: turning audit entries into those three views (pure: entries in, rows out) and their columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.cli.output import Column
from gateway.trust.audit import AuditEntry

JOIN_TOKEN_COLUMNS: list[Column] = [
    ("token_id", "TOKEN-ID"),
    ("site", "SITE"),
    ("state", "STATE"),
    ("created", "CREATED"),
    ("expires", "EXPIRES"),
    ("created_by", "CREATED-BY"),
]
TOKEN_COLUMNS: list[Column] = [
    ("token_id", "TOKEN-ID"),
    ("subject", "SUBJECT"),
    ("role", "ROLE"),
    ("single_use", "SINGLE-USE"),
    ("state", "STATE"),
    ("issued", "ISSUED"),
    ("expires", "EXPIRES"),
]
REVOCATION_COLUMNS: list[Column] = [
    ("kind", "KIND"),
    ("value", "VALUE"),
    ("time", "TIME"),
    ("reason", "REASON"),
    ("by", "BY"),
]


def _time(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def _expired(expires: datetime | str, now: datetime) -> bool:
    return isinstance(expires, datetime) and expires <= now


def _revoked_tokens(entries: Sequence[AuditEntry]) -> set[str]:
    return {
        e.details.get("value", "")
        for e in entries
        if e.kind == "credential.revoked" and e.details.get("kind") == "token"
    }


def join_token_rows(entries: Sequence[AuditEntry], now: datetime) -> list[dict[str, Any]]:
    """Each join token created: unused, used (by which enrolment), expired, or revoked."""
    used = {e.details.get("token_id", ""): e for e in entries if e.kind == "enrolment"}
    revoked = _revoked_tokens(entries)
    rows = []
    for entry in (e for e in entries if e.kind == "join_token.created"):
        token_id = entry.details.get("token_id", "")
        expires = _time(entry.details.get("expire_time", ""))
        if token_id in used:
            state = f"used {used[token_id].time:%Y-%m-%d %H:%M:%S}"
        elif token_id in revoked:
            state = "revoked"
        else:
            state = "expired" if _expired(expires, now) else "unused"
        rows.append(
            {
                "token_id": token_id,
                "site": entry.details.get("site", ""),
                "state": state,
                "created": entry.time,
                "expires": expires,
                "created_by": entry.principal,
            }
        )
    return rows


def token_rows(entries: Sequence[AuditEntry], now: datetime) -> list[dict[str, Any]]:
    """Each bearer token issued: valid, expired or revoked (a single-use token's use is not logged)."""
    revoked = _revoked_tokens(entries)
    rows = []
    for entry in (e for e in entries if e.kind == "token.issued"):
        token_id = entry.details.get("token_id", "")
        expires = _time(entry.details.get("expire_time", ""))
        state = "revoked" if token_id in revoked else "expired" if _expired(expires, now) else "valid"
        rows.append(
            {
                "token_id": token_id,
                "subject": entry.details.get("subject", ""),
                "role": entry.details.get("role", ""),
                "single_use": entry.details.get("single_use", "") == "true",
                "state": state,
                "issued": entry.time,
                "expires": expires,
                "issued_by": entry.principal,
            }
        )
    return rows


def revocation_rows(entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """Each revocation: a certificate serial, a principal (its certificates until then) or a token id."""
    return [
        {
            "kind": e.details.get("kind", ""),
            "value": e.details.get("value", ""),
            "time": e.time,
            "reason": e.details.get("reason", ""),
            "by": e.principal,
        }
        for e in entries
        if e.kind == "credential.revoked"
    ]
