"""The audit log: an append-only, hash-chained and signed record of security and admin events.

Owns: building entries (each hash covers the previous entry's hash and this entry's canonical JSON; each hash
is signed with the gateway's audit key) and verifying a whole chain, which finds an edited, removed,
reordered or inserted entry, and, given a signed checkpoint's count and head hash (`gateway.trust.checkpoint`),
entries removed from its end. Writing entries is the store's job; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    sequence: int
    time: datetime
    kind: str  # enrolment, certificate.renewed, credential.revoked, policy.reloaded, call.denied, ...
    principal: str  # who did it: a principal URI, or "anonymous"
    details: Mapping[str, str] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""
    signature: str = ""  # hex Ed25519 signature over `hash`


@dataclass(frozen=True)
class AuditVerdict:
    intact: bool
    entries: int
    first_bad_sequence: int = 0
    problem: str = ""


def _digest(sequence: int, time: datetime, kind: str, principal: str, details: Mapping[str, str], prev: str) -> str:
    body = json.dumps(
        {"seq": sequence, "time": time.isoformat(), "kind": kind, "principal": principal, "details": dict(details)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()


def seal(
    previous: AuditEntry | None,
    time: datetime,
    kind: str,
    principal: str,
    details: Mapping[str, str],
    key: Ed25519PrivateKey,
) -> AuditEntry:
    """The next entry after `previous` (None for the first), hashed and signed."""
    sequence = previous.sequence + 1 if previous else 1
    prev_hash = previous.hash if previous else GENESIS
    digest = _digest(sequence, time, kind, principal, details, prev_hash)
    return AuditEntry(
        sequence, time, kind, principal, dict(details), prev_hash, digest, key.sign(digest.encode()).hex()
    )


def verify_chain(
    entries: Iterable[AuditEntry],
    key: Ed25519PublicKey,
    *,
    start: tuple[int, str] = (0, GENESIS),
    anchor: tuple[int, str] | None = None,
) -> AuditVerdict:
    """Check every link: sequence, previous hash, recomputed hash and signature. `start` is (sequence, hash) of
    the entry just before `entries` (a checkpoint's, to check only what came after it). `anchor` is a signed
    checkpoint's (count, head): the chain must reach entry `count`, and that entry must have hash `head`, so
    that removing the newest entries, or rewriting the chain, is found."""
    prev_hash, expected, count = start[1], start[0] + 1, 0
    for entry in entries:
        count += 1
        problem = ""
        if entry.sequence != expected:
            problem = f"expected entry {expected}, found {entry.sequence} (an entry was removed or inserted)"
        elif entry.prev_hash != prev_hash:
            problem = "its link to the previous entry is broken (an earlier entry was changed or removed)"
        elif _digest(entry.sequence, entry.time, entry.kind, entry.principal, entry.details, prev_hash) != entry.hash:
            problem = "its content does not match its hash (the entry was edited)"
        else:
            try:
                key.verify(bytes.fromhex(entry.signature), entry.hash.encode())
            except (InvalidSignature, ValueError):
                problem = "its signature does not verify (the chain was rewritten without the audit key)"
        if not problem and anchor is not None and entry.sequence == anchor[0] and entry.hash != anchor[1]:
            problem = "it is not the entry the signed checkpoint records (the chain was rewritten)"
        if problem:
            return AuditVerdict(False, count, entry.sequence or expected, f"entry {entry.sequence}: {problem}")
        prev_hash, expected = entry.hash, expected + 1
    last = expected - 1
    if anchor is not None and last < anchor[0]:
        return AuditVerdict(
            False,
            count,
            last + 1,
            f"the log ends at entry {last} but the signed checkpoint records {anchor[0]} entries: "
            f"entries {last + 1} to {anchor[0]} were removed",
        )
    return AuditVerdict(True, count)
