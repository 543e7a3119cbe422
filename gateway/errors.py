"""The gateway's one error base. Every error carries a stable `reason` code.

Owns: the domain error classes, their reason codes and `Violation` (one of several things wrong with a request).
`gateway.transport.errors` maps each to a gRPC status and its google.rpc details; nothing else decides how an
error looks on the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedgate.common.reasons import ReasonCode


@dataclass(frozen=True)
class Violation:
    """One thing wrong with a request, when an error has several (every admission reason, every bad field).

    `field` names a field of the request (`spec.resources.cards`, in the proto's terms) when the fix is to change
    it: the wire carries it as a google.rpc.BadRequest.FieldViolation. Without a field it is a condition of the
    federation (a policy rule, a quota, a site) the request does not meet: a PreconditionFailure.Violation whose
    `subject` says what it is about (a site, or the stage that decided)."""

    reason: str
    description: str
    field: str = ""
    subject: str = ""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose. `reason` is stable and machine-readable; `metadata`
    (strings) is what a program needs to act on it (the field, the limit, the leader); `violations` are every
    problem when there are several (the message states the first)."""

    reason: str = ReasonCode.GATEWAY_ERROR

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        violations: Sequence[Violation] = (),
    ):
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})
        self.violations = tuple(violations)


class InvalidArgument(GatewayError):
    reason: str = ReasonCode.INVALID_ARGUMENT


class ConfigError(GatewayError):
    """A configuration, policy or job file is invalid. The message names the file, the line and the fix."""

    reason: str = ReasonCode.INVALID_CONFIG


class NotFound(GatewayError):
    reason: str = ReasonCode.NOT_FOUND


class AlreadyExists(GatewayError):
    reason: str = ReasonCode.ALREADY_EXISTS


class Unauthenticated(GatewayError):
    reason: str = ReasonCode.UNAUTHENTICATED


class PermissionDenied(GatewayError):
    reason: str = ReasonCode.PERMISSION_DENIED


class AdmissionRejected(GatewayError):
    """Admission refused a job. The reasons list the policy steps that decided it."""

    reason: str = ReasonCode.ADMISSION_REJECTED


class FailedPrecondition(GatewayError):
    reason: str = ReasonCode.FAILED_PRECONDITION


class ResourceExhausted(GatewayError):
    """A bounded resource is used up for this caller (its share, or the whole). `metadata["limit"]` names the
    limit, and `metadata["retry_after_ms"]`, when set, says when to try again (sent as a google.rpc.RetryInfo)."""

    reason: str = ReasonCode.RESOURCE_EXHAUSTED


class StaleEpoch(GatewayError):
    """A site spoke about an attempt that is no longer the job's current lease."""

    reason: str = ReasonCode.STALE_EPOCH


class IdentityError(GatewayError):
    """A certificate or principal is malformed or belongs to another federation."""

    reason: str = ReasonCode.BAD_IDENTITY


class Unavailable(GatewayError):
    reason: str = ReasonCode.UNAVAILABLE


class NotLeader(Unavailable):
    """This gateway may not act: it is a standby, or its leader lease was taken over (a write it tried carried
    an epoch that is no longer the leader's, and was refused by the store). `metadata["leader"]` is the
    leader's address when known."""

    reason: str = ReasonCode.NOT_LEADER


class StoreError(GatewayError):
    """The store cannot serve: raised by a store, never by callers. Subclasses say whether the caller should
    come back later (`StoreUnavailable`, `StoreFull`) or the process cannot start on this store (`StoreRefused`).
    The message names no SQL; the log line written where it was raised has the engine's own words."""

    reason: str = ReasonCode.STORE_UNAVAILABLE


class StoreUnavailable(StoreError):
    """An I/O error, a read-only or vanished file, a lock another program holds: retry later."""

    reason: str = ReasonCode.STORE_UNAVAILABLE


class StoreFull(StoreError):
    """The store's disk (or its configured size limit) is full: new writes are refused, reads go on."""

    reason: str = ReasonCode.STORE_FULL


class StoreRefused(StoreError):
    """The store cannot be opened as asked (in use by another gateway, damaged, too new, not writable). The
    message names the file, what is wrong and what to do; the process exits 2 without a traceback."""


class ClientError(GatewayError):
    """Raised by the client library for a refused call; `code` is the gRPC status name (e.g. NOT_FOUND), `reason`,
    `metadata` and `violations` what the call's google.rpc.Status details said."""

    reason: str = ReasonCode.CALL_FAILED

    def __init__(
        self,
        message: str,
        *,
        code: str,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        violations: Sequence[Violation] = (),
    ):
        super().__init__(message, reason=reason, metadata=metadata, violations=violations)
        self.code = code
