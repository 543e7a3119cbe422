"""Request ids with the semantics of Google AIP-155: a retry gets the original, anything else is refused.

Owns: `fingerprint` (a canonical digest of a request: the same request always has the same one, whatever the
order of its maps or the entry point it came through) and `replayed` (what a create call answers when the store
already holds an object under the caller's request id: the original when it is the same request and the caller
may see it; REQUEST_ID_REUSED otherwise, with one message for both cases, so that the refusal tells nothing of
an object the caller may not see). Request ids are scoped to a tenant by the store; the callers authorise
(`gateway.trust.access.require_submitter`) before they look anything up by one. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, TypeVar

from gateway.errors import AlreadyExists

T = TypeVar("T")


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, timedelta):
        return ["d", value.total_seconds()]
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def fingerprint(request: object) -> str:
    """A hex SHA-256 of the canonical JSON of a request dataclass (sorted keys, no whitespace): the JSON of
    `dataclasses.asdict(request)`, made without its deep copies (a CreateJob with a request id pays for it; the
    digests stored with earlier jobs stay valid: the text is the same, byte for byte)."""
    assert dataclasses.is_dataclass(request) and not isinstance(request, type)
    text = json.dumps(_fields(request), sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


def _fields(value: Any) -> Any:
    """What `dataclasses.asdict` makes of `value`, as JSON sees it (tuples and lists alike)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _fields(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_fields(v) for v in value]
    if isinstance(value, dict):
        return {k: _fields(v) for k, v in value.items()}
    return value


def replayed(stored: T, stored_fingerprint: str, request_fingerprint: str, visible: bool, request_id: str) -> T:
    """The answer to a create whose request id the store already holds (`stored`, made from a request with
    `stored_fingerprint`): the original for a retry of the same request the caller may see (`visible`),
    ALREADY_EXISTS (REQUEST_ID_REUSED) for a different request or an object the caller may not see."""
    if visible and stored_fingerprint == request_fingerprint:
        return stored
    raise AlreadyExists(
        f"request id {request_id!r} was already used for a different request; send the same request to retry "
        "it, or choose a new request id for a new request",
        reason="REQUEST_ID_REUSED",
    )
