"""What an attempt consumed at this site, as the site will sign it: the usage record and its signed form.

Owns: the `UsageRecord` the runtime builds when an attempt that started ends, the `SignedReceipt` (the exact
serialised record bytes and the site's signature over them, made once and journaled with the update so a
replay sends identical bytes) and the `ReceiptSigner` protocol. It does not serialise or sign: the wire format
is protobuf, so `agents.transport.receipts` implements the signer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from agents.attempts import Attempt
from agents.model import JobState


@dataclass(frozen=True)
class UsageRecord:
    """One attempt of one job at this site, from start to end. Times are aware UTC datetimes."""

    site: str
    job_id: str
    epoch: int
    attempt: int
    tenant: str
    project: str
    accelerator_class: str
    cards: int
    start_time: datetime
    end_time: datetime
    exit_code: int
    state: JobState
    """How the attempt ended: SUCCEEDED, FAILED, CANCELLED or PREEMPTED."""


@dataclass(frozen=True)
class SignedReceipt:
    """A serialised UsageRecord and the site's ECDSA P-256/SHA-256 DER signature over exactly those bytes."""

    record: bytes
    signature: bytes


class ReceiptSigner(Protocol):
    """Turns a record into a signed receipt with the site's certificate key.

    Implementations MUST sign the exact bytes they return in `SignedReceipt.record`, and MUST raise (never
    return an unsigned receipt) when the key cannot be used.
    """

    def sign(self, record: UsageRecord) -> SignedReceipt: ...


def usage_record(site: str, attempt: Attempt, end_time: datetime) -> UsageRecord:
    """The record of a started attempt that has ended (its final state and exit code already set)."""
    assert attempt.started_at is not None, "only attempts that started consumed anything"
    launch = attempt.launch
    return UsageRecord(
        site=site,
        job_id=launch.job_id,
        epoch=launch.epoch,
        attempt=launch.attempt,
        tenant=launch.tenant,
        project=launch.project,
        accelerator_class=launch.accelerator_class,
        cards=launch.cards,
        start_time=attempt.started_at,
        end_time=max(end_time, attempt.started_at),
        exit_code=attempt.exit_code,
        state=attempt.state,
    )
