"""The contract's REQUIRED fields, enforced as the protos declare them.

Owns: `require_fields`, which refuses a request (INVALID_ARGUMENT, ErrorInfo metadata `field`) whose field marked
`(google.api.field_behavior) = REQUIRED` is missing, naming the field by its path in the request (`spec.tenant`).
The annotation is the one source: a field marked in a .proto is checked, with no list here to keep in step.
Missing means: a message or a proto3 `optional` field not set, a scalar at its default ("", 0, false), an empty
repeated field or map. Messages inside a request are checked when they are set; OUTPUT_ONLY fields (a resource's
server-set parts sent back on create) are ignored, never refused (AIP-203). Servicers call it after they have
authenticated the caller, so that a refusal for lack of a credential comes first. It judges presence only: the
shape and limits of a value are the domain's (`gateway.jobs.validate`, the reservation book).
"""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2  # type: ignore[attr-defined]  # the stubs of google.* lack google.api
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from gateway.errors import InvalidArgument, Violation

REQUIRED = field_behavior_pb2.REQUIRED
OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY
_BEHAVIOR = field_behavior_pb2.field_behavior


# The descriptor classes differ between protobuf's implementations (upb here); fields are read by duck type.
Field = Any


def _behaviours(field: Field) -> list[int]:
    return list(field.GetOptions().Extensions[_BEHAVIOR])


def _present(message: Message, field: Field) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.has_presence:
        return message.HasField(field.name)
    return bool(getattr(message, field.name))


def missing_fields(message: Message, prefix: str = "") -> list[str]:
    """Paths of the REQUIRED fields missing from `message` and from the messages it holds, in field order."""
    missing: list[str] = []
    for field in message.DESCRIPTOR.fields:
        behaviours = _behaviours(field)
        if OUTPUT_ONLY in behaviours:
            continue
        path = f"{prefix}{field.name}"
        if not _present(message, field):
            if REQUIRED in behaviours:
                missing.append(path)
            continue
        entry = field.message_type
        if field.type != FieldDescriptor.TYPE_MESSAGE or entry is None or entry.GetOptions().map_entry:
            continue
        if field.is_repeated:
            for index, item in enumerate(getattr(message, field.name)):
                missing += missing_fields(item, f"{path}[{index}].")
        else:
            missing += missing_fields(getattr(message, field.name), f"{path}.")
    return missing


def require_fields(request: Message) -> None:
    """Refuse `request` when a REQUIRED field is missing, naming the first in the message and each in a violation."""
    missing = missing_fields(request)
    if missing:
        more = f" (and {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise InvalidArgument(
            f"{missing[0]} is required{more}: set it ({request.DESCRIPTOR.name} marks it REQUIRED)",
            metadata={"field": missing[0]},
            violations=[Violation(InvalidArgument.reason, f"{path} is required", field=path) for path in missing],
        )
