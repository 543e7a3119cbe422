"""Usage receipts on the wire: parsing the signed record bytes, and settled receipts to and from protobuf.

Owns: `record_from_bytes` (the only place the gateway reads a `fedgate.v1.UsageRecord`; bytes that do not
parse give a receipt without a record, which never verifies) and the `SettledReceipt` conversions in pairs.
It checks nothing: `gateway.usage.receipts` does.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from fedgate.v1 import usage_pb2
from gateway.errors import InvalidArgument
from gateway.transport import convert
from gateway.usage.receipts import SettledReceipt, SiteReceipt, UsageRecord


def record_from_bytes(data: bytes) -> UsageRecord | None:
    """The record the site signed, or None when `data` is not a well-formed UsageRecord."""
    try:
        message = usage_pb2.UsageRecord.FromString(data)
        return UsageRecord(
            site=message.site,
            job_id=message.job_id,
            epoch=message.epoch,
            attempt=message.attempt,
            tenant=message.tenant,
            project=message.project,
            accelerator_class=message.accelerator_class,
            cards=message.cards,
            start_time=convert.time_from_proto(message.start_time),
            end_time=convert.time_from_proto(message.end_time),
            exit_code=message.exit_code,
            state=convert.state_from_proto(message.state),
        )
    except (DecodeError, InvalidArgument, ValueError, OverflowError):
        return None


def receipt_from_proto(message: usage_pb2.UsageReceipt) -> SiteReceipt:
    return SiteReceipt(message.record, message.signature, record_from_bytes(message.record))


def settled_to_proto(settled: SettledReceipt) -> usage_pb2.SettledReceipt:
    return usage_pb2.SettledReceipt(
        receipt=usage_pb2.UsageReceipt(record=settled.receipt.record_bytes, signature=settled.receipt.signature),
        site_certificate=settled.site_certificate,
        gateway_signature=settled.gateway_signature,
        gateway_certificate=settled.gateway_certificate,
        settle_time=convert.time_to_proto(settled.settle_time),
    )


def settled_from_proto(message: usage_pb2.SettledReceipt) -> SettledReceipt:
    """A settled receipt as a verifier sees it: the record parsed from the signed bytes, not from any column."""
    return SettledReceipt(
        receipt=receipt_from_proto(message.receipt),
        site_certificate=message.site_certificate,
        gateway_signature=message.gateway_signature,
        gateway_certificate=message.gateway_certificate,
        settle_time=convert.time_from_proto(message.settle_time),
    )
