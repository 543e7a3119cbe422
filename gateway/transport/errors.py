"""One table from the gateway's error reasons to gRPC status codes, and the one translator that uses it.

Every servicer method runs inside `translate_errors`. A `GatewayError` becomes its mapped status with a
google.rpc.Status (AIP-193) whose details are made by the same rules for every error:
- always an ErrorInfo: reason (a `fedgate.v1.ReasonCode` value's name), domain fedgate.io, the error's metadata;
- a BadRequest with a FieldViolation for each violation that names a field (or for metadata `field` alone);
- a PreconditionFailure with a Violation for each other violation (every admission reason, not the first);
- a RetryInfo when metadata `retry_after_ms` says when to try again.
One kind of error has one code: a request that names what the federation does not define (an unknown tenant,
project, priority class or accelerator class) is INVALID_ARGUMENT like any bad field, whichever check finds it;
a well-formed request the policy refuses is FAILED_PRECONDITION. Anything unexpected becomes INTERNAL with a
reference to the log line, never the exception text. `violations_from_status` reads the details back (the
client library's decoding).

Owns: the reason -> gRPC status table, the details rules, and `translate_errors` / `translate_stream_errors`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from fedgate.common.reasons import ReasonCode
from gateway import errors

log = logging.getLogger("fedgate.gateway")
DOMAIN = "fedgate.io"

# Error class -> status; the first matching class wins, so subclasses come first.
STATUS_BY_CLASS: tuple[tuple[type[errors.GatewayError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.IdentityError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.AdmissionRejected, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StaleEpoch, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.StoreFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.StoreError, grpc.StatusCode.UNAVAILABLE),
)

# Reasons that say more precisely than their class what went wrong.
STATUS_BY_REASON: dict[str, grpc.StatusCode] = {
    ReasonCode.TENANT_MISMATCH: grpc.StatusCode.PERMISSION_DENIED,
    ReasonCode.NOT_A_MEMBER: grpc.StatusCode.PERMISSION_DENIED,
    ReasonCode.READ_ONLY: grpc.StatusCode.PERMISSION_DENIED,
    ReasonCode.ROLE_CANNOT_SUBMIT: grpc.StatusCode.PERMISSION_DENIED,
    ReasonCode.BAD_CARD_COUNT: grpc.StatusCode.INVALID_ARGUMENT,
    ReasonCode.BAD_RESOURCES: grpc.StatusCode.INVALID_ARGUMENT,
    ReasonCode.UNKNOWN_ACCELERATOR_CLASS: grpc.StatusCode.INVALID_ARGUMENT,
    ReasonCode.NO_RUN: grpc.StatusCode.INVALID_ARGUMENT,
    ReasonCode.BAD_MAX_RUNTIME: grpc.StatusCode.INVALID_ARGUMENT,
    ReasonCode.UNKNOWN_TENANT: grpc.StatusCode.INVALID_ARGUMENT,
    ReasonCode.UNKNOWN_PROJECT: grpc.StatusCode.INVALID_ARGUMENT,
    ReasonCode.UNKNOWN_PRIORITY_CLASS: grpc.StatusCode.INVALID_ARGUMENT,
    ReasonCode.TOO_MANY_LOG_STREAMS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ReasonCode.LOG_CREDIT_EXCEEDED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ReasonCode.RECEIPT_INVALID: grpc.StatusCode.INVALID_ARGUMENT,  # on a site stream it travels as a Rejection
}


def status_for(error: errors.GatewayError) -> grpc.StatusCode:
    if error.reason in STATUS_BY_REASON:
        return STATUS_BY_REASON[error.reason]
    for cls, code in STATUS_BY_CLASS:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(code: grpc.StatusCode, error: errors.GatewayError) -> status_pb2.Status:
    """The google.rpc.Status of a refusal, by the rules above."""
    metadata = error.metadata
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata))]
    violations = error.violations
    if not violations and metadata.get("field"):
        violations = (errors.Violation(error.reason, error.message, field=metadata["field"]),)
    fields = [
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description, reason=v.reason)
        for v in violations
        if v.field
    ]
    if fields:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=fields)))
    conditions = [
        error_details_pb2.PreconditionFailure.Violation(type=v.reason, subject=v.subject, description=v.description)
        for v in violations
        if not v.field
    ]
    if conditions:
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=conditions)))
    if metadata.get("retry_after_ms", "").isdigit():
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(int(metadata["retry_after_ms"]))
        details.append(_pack(retry))
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


def violations_from_status(status: status_pb2.Status) -> tuple[errors.Violation, ...]:
    """Every violation a refusal's details carry (field violations first), as `rich_status` wrote them."""
    found: list[errors.Violation] = []
    for detail in status.details:
        bad, failure = error_details_pb2.BadRequest(), error_details_pb2.PreconditionFailure()
        if detail.Unpack(bad):
            found += [errors.Violation(v.reason, v.description, field=v.field) for v in bad.field_violations]
        elif detail.Unpack(failure):
            found += [errors.Violation(v.type, v.description, subject=v.subject) for v in failure.violations]
    return tuple(sorted(found, key=lambda v: not v.field))


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: errors.GatewayError) -> NoReturn:
    code = status_for(error)
    status = rich_status(code, error)
    await context.abort(
        code, error.message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),)
    )
    raise AssertionError("unreachable: abort raises")


async def abort_internal(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    ref = secrets.token_hex(4)
    log.error("internal error ref=%s", ref, exc_info=exc)
    error = errors.GatewayError(
        f"internal error; the gateway log has the details under ref={ref}", reason=ReasonCode.INTERNAL
    )
    error.metadata["ref"] = ref
    status = rich_status(grpc.StatusCode.INTERNAL, error)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        error.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )
    raise AssertionError("unreachable: abort raises")


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")


DENIALS = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})


def _report(
    servicer: object, context: grpc.aio.ServicerContext[Any, Any], method: str, exc: errors.GatewayError
) -> None:
    """Hand a refused call to the servicer's audit hook, if it has one; auditing must never mask the refusal."""
    hook = getattr(servicer, "on_denied", None)
    if hook is not None and status_for(exc) in DENIALS:
        try:
            hook(context, method, exc)
        except Exception:
            log.exception("could not audit a refused %s call", method)


def translate_errors(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    @wraps(method)
    async def wrapper(self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        try:
            return await method(self, request, context)
        except Exception as exc:
            await _fail(self, context, method.__name__, exc)

    return wrapper


def translate_stream_errors(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    @wraps(method)
    async def wrapper(self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as exc:
            await _fail(self, context, method.__name__, exc)

    return wrapper


async def _fail(servicer: object, context: grpc.aio.ServicerContext[Any, Any], method: str, exc: Exception) -> NoReturn:
    """The one translator: a domain error becomes its status (refusals audited), an abort passes through
    untouched, anything else becomes INTERNAL with a log reference."""
    if _is_abort(exc):
        raise exc
    if isinstance(exc, errors.GatewayError):
        _report(servicer, context, method, exc)
        await abort(context, exc)
    await abort_internal(context, exc)


def _is_abort(exc: BaseException) -> bool:
    # grpc.aio raises AbortError out of context.abort(); it must pass through untouched.
    return type(exc).__name__ in {"AbortError", "UsageError"} or isinstance(exc, grpc.RpcError)
