"""The signed checkpoint that anchors the audit chain's end and the revocation list outside the database.

Owns: the checkpoint record (the audit chain's entry count and head hash, and every revocation as (kind,
value, time)), signing and writing it atomically and durably (temporary file, fsync, rename, fsync of the
folder) beside the audit key, reading and checking its signature, and comparing a store against it: the chain
must still reach the checkpoint's entry with the checkpoint's hash (entries after it must chain on from it and
be signed), and every revocation the checkpoint names must still be in the store, unchanged. A database
administrator can rewrite rows but not this file (it lives in the gateway's authority directory) nor its
signature (the audit key lives there too). It does not decide what to do about a mismatch: the gateway refuses
to start, `audit verify` reports the log broken.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedgate.common.reasons import ReasonCode
from gateway.errors import GatewayError
from gateway.identity.revocation import Revocation, canonical_serial
from gateway.trust.audit import AuditEntry, verify_chain

if TYPE_CHECKING:
    from gateway.store import Store

CHECKPOINT_FILE = "audit-checkpoint.json"
_DOMAIN = b"fedgate audit checkpoint v1\n"

RevocationKey = tuple[str, str, str]


class RecordsTampered(GatewayError):
    """The audit log or the revocation list in the store does not match the signed checkpoint."""

    reason: str = ReasonCode.RECORDS_TAMPERED


@dataclass(frozen=True)
class Checkpoint:
    count: int  # entries in the audit chain when it was written
    head: str  # the hash of entry `count` (the genesis hash for an empty chain)
    revocations: tuple[RevocationKey, ...]  # sorted (kind, canonical value, time ISO)
    time: str


def revocation_key(revocation: Revocation) -> RevocationKey:
    value = canonical_serial(revocation.value) if revocation.kind == "serial" else revocation.value
    return (revocation.kind, value, revocation.time.isoformat())


def _body(checkpoint: Checkpoint) -> bytes:
    payload = {
        "count": checkpoint.count,
        "head": checkpoint.head,
        "revocations": [list(r) for r in checkpoint.revocations],
        "time": checkpoint.time,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def write_checkpoint(path: Path, checkpoint: Checkpoint, key: Ed25519PrivateKey) -> None:
    """Replace the checkpoint at `path` atomically; it is on disk when this returns."""
    body = _body(checkpoint)
    document = json.dumps({"checkpoint": json.loads(body), "signature": key.sign(_DOMAIN + body).hex()}, indent=1)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, document.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read_checkpoint(path: Path, key: Ed25519PublicKey) -> Checkpoint | None:
    """The checkpoint at `path`, None when there is none; RecordsTampered when it is not one signed by `key`."""
    try:
        document = json.loads(path.read_bytes())
        payload = document["checkpoint"]
        checkpoint = Checkpoint(
            int(payload["count"]),
            str(payload["head"]),
            tuple((str(k), str(v), str(t)) for k, v, t in payload["revocations"]),
            str(payload["time"]),
        )
        key.verify(bytes.fromhex(document["signature"]), _DOMAIN + _body(checkpoint))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, InvalidSignature):
        raise RecordsTampered(
            f"the audit checkpoint {path} is unreadable or its signature does not verify with the audit key",
            metadata={"path": str(path)},
        ) from None
    return checkpoint


def checkpoint_now(count: int, head: str, revocations: Iterable[RevocationKey], now: datetime) -> Checkpoint:
    return Checkpoint(count, head, tuple(sorted(set(revocations))), now.isoformat())


def missing_revocations(checkpoint: Checkpoint, stored: Iterable[Revocation]) -> list[RevocationKey]:
    """The checkpoint's revocations no longer in the store as they were (deleted, or edited). Rows the
    checkpoint does not name yet (written just before a crash, before the checkpoint) only refuse more."""
    present = {revocation_key(r) for r in stored}
    return [r for r in checkpoint.revocations if r not in present]


def describe_missing(missing: list[RevocationKey], path: Path) -> str:
    named = ", ".join(f"{kind} {value} (revoked {time})" for kind, value, time in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return (
        f"the revocation list in the store lacks {len(missing)} revocation(s) the signed checkpoint {path} "
        f"records: {named}{more}. A row was deleted or edited; starting would accept those credentials again. "
        "Restore the store from a backup; or, knowingly, move the checkpoint away, start, and revoke them again"
    )


def check_store(store: Store, path: Path, key: Ed25519PublicKey) -> Checkpoint | None:
    """Compare `store` with the checkpoint at `path` (None when there is none yet); RecordsTampered naming what
    differs. Cheap enough for every start: only entries after the checkpoint are read and verified, and the
    checkpoint's own entry is compared by hash (`fedgate admin audit verify` checks the whole chain)."""
    checkpoint = read_checkpoint(path, key)
    if checkpoint is None:
        return None
    if checkpoint.count:
        found = store.audit_entries(checkpoint.count - 1, 1)
        if not found or found[0].sequence != checkpoint.count or found[0].hash != checkpoint.head:
            last = store.last_audit()
            raise RecordsTampered(
                f"the audit log in the store does not reach entry {checkpoint.count} as the signed checkpoint {path} "
                f"of {checkpoint.time} records it (the store's log ends at entry {last.sequence if last else 0}): "
                "entries were removed or rewritten. Restore the store from a backup",
                metadata={"path": str(path)},
            )

    def after() -> Iterator[AuditEntry]:
        sequence = checkpoint.count
        while page := store.audit_entries(sequence, 1000):
            yield from page
            sequence = page[-1].sequence

    verdict = verify_chain(after(), key, start=(checkpoint.count, checkpoint.head))
    if not verdict.intact:
        raise RecordsTampered(f"the audit log after the signed checkpoint {path} is broken: {verdict.problem}")
    if missing := missing_revocations(checkpoint, store.revocations()):
        raise RecordsTampered(describe_missing(missing, path), metadata={"path": str(path)})
    return checkpoint
