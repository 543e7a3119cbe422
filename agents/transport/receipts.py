"""Signing usage receipts with the site's certificate key: the protobuf `UsageRecord`, serialised once.

Owns: turning the runtime's `UsageRecord` into `fedgate.v1.UsageRecord` bytes and signing exactly those bytes
by the key in the agent config's `tls.key`, whatever key type enrolment accepted (EC P-256/P-384, RSA 2048+:
`fedgate.common.receipt_signature`). The key file is read at each
signature, so a certificate renewed meanwhile signs with its new key. It does not decide when a receipt is
due (the runtime does) nor send it (it rides on the terminal JobUpdate, journaled with it).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agents.core.usage import SignedReceipt, UsageRecord
from agents.errors import AgentError
from fedgate.common import receipt_signature, wire
from fedgate.v1 import usage_pb2


def usage_record_to_proto(record: UsageRecord) -> usage_pb2.UsageRecord:
    return usage_pb2.UsageRecord(
        site=record.site,
        job_id=record.job_id,
        epoch=record.epoch,
        attempt=record.attempt,
        tenant=record.tenant,
        project=record.project,
        accelerator_class=record.accelerator_class,
        cards=record.cards,
        start_time=wire.time_to_proto(record.start_time),
        end_time=wire.time_to_proto(record.end_time),
        exit_code=record.exit_code,
        state=wire.state_to_proto(record.state.value),
    )


class KeyFileSigner:
    """A ReceiptSigner over the site's private key file (PEM: EC P-256 as `fedgate agent enroll` makes, or an
    EC P-384 or RSA key of the site's own CSR)."""

    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path

    def sign(self, record: UsageRecord) -> SignedReceipt:
        data = usage_record_to_proto(record).SerializeToString(deterministic=True)
        return SignedReceipt(record=data, signature=receipt_signature.sign(self._key(), data))

    def _key(self) -> receipt_signature.PrivateKey:
        try:
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise AgentError(f"cannot read the site key {self.key_path} to sign a usage receipt: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) or not receipt_signature.supported(key):
            raise AgentError(
                f"the site key {self.key_path} is not an EC P-256/P-384 or RSA (2048+) key; re-enrol the site"
            )
        return key
