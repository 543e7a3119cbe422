"""What an attempt consumed at this site, as the site will sign it: the usage record and its signed form.

Owns: the `UsageRecord` built when an attempt that started ends, the `SignedReceipt` (the exact serialised
record bytes and the site's signature over them, made once and journaled with the update so a replay sends
identical bytes), the `ReceiptSigner` protocol, making an ended attempt's receipt through a signer
(`sign_usage`: a signer that fails never stops the end being reported) and the re-send of an end without its
receipt after the gateway refused the receipt (RECEIPT_INVALID). It does not serialise or sign bytes itself:
the wire format is protobuf, so `agents.transport.receipts` implements the signer; nor does it number or
journal updates (the runtime does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from agents.core.attempts import Attempt
from agents.core.model import JobState, JobUpdate

log = logging.getLogger(__name__)

RECEIPT_INVALID = "RECEIPT_INVALID"
"""The gateway's reason for refusing a receipt; the update it rode on is sent again without one."""


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


def sign_usage(
    signer: ReceiptSigner | None, site: str, attempt: Attempt, clock: Callable[[], datetime]
) -> tuple[bytes, bytes] | None:
    """The (record, signature) receipt of an ended attempt, or None: no signer, the attempt never started (it
    consumed nothing), it was LOST (the site did not see it end, so it cannot vouch for how long it ran; the
    gateway accounts a lost attempt from its own times), or signing failed (logged; the end must still be
    reported, and the gateway then settles no receipt for it). `clock` is read only when there is a receipt
    to make."""
    if attempt.started_at is None or signer is None or attempt.state is JobState.LOST:
        return None
    try:
        signed = signer.sign(usage_record(site, attempt, clock()))
    except Exception:
        log.exception("job %s epoch %d: could not sign the usage receipt", *attempt.key)
        return None
    return (signed.record, signed.signature)


def needs_resend_without_receipt(refused: JobUpdate | None, reason: str) -> bool:
    """True when the gateway refused `refused` for its receipt: the end itself must still be heard."""
    return refused is not None and bool(refused.receipt_record) and reason == RECEIPT_INVALID


def without_receipt(update: JobUpdate, sequence: int) -> JobUpdate:
    """The same update, renumbered `sequence`, with no receipt (e.g. one signed with a key renewed since)."""
    return replace(update, sequence=sequence, receipt_record=b"", receipt_signature=b"")
