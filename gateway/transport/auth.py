"""Authentication at the edge: a caller's identity comes from what TLS verified, or from a signed token on the
public port, and never from anything else a caller says (request metadata cannot smuggle an identity).

Owns: the two authenticators (certificate on the mTLS port, bearer token on the public port), the re-check of
an open stream's credential, and reporting refusals to the audit log. The rules themselves live in
`gateway.trust.service` and `gateway.trust.access`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc

from gateway.errors import GatewayError, Unauthenticated
from gateway.identity.principal import Principal
from gateway.identity.revocation import Credential
from gateway.trust.ratelimit import source_of
from gateway.trust.service import Trust

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")


class Authenticator(Protocol):
    def credential(self, context: Context) -> Credential:
        """The caller's verified credential, or Unauthenticated. MUST NOT trust request metadata for identity
        (the token authenticator reads exactly one header, `authorization: Bearer <token>`, and verifies it)."""
        ...

    def principal(self, context: Context) -> Principal: ...

    def caller_uri(self, context: Context) -> str:
        """Best-effort name of the caller for the audit log of a refused call; never raises."""
        ...


class CertificateAuthenticator:
    """The mTLS port: gRPC's TLS layer has verified the chain; we read the principal and check revocation."""

    def __init__(self, trust: Trust) -> None:
        self._trust = trust

    def credential(self, context: Context) -> Credential:
        certs = list(context.auth_context().get("x509_pem_cert") or ())
        if not certs:
            raise Unauthenticated(
                "this call needs a client certificate issued by the federation CA"
                " (get one with `fedgate agent enroll` or from your federation admin)",
                reason="NO_CLIENT_CERTIFICATE",
            )
        return self._trust.authenticate_certificate(certs[0])

    def principal(self, context: Context) -> Principal:
        return self.credential(context).principal

    def caller_uri(self, context: Context) -> str:
        try:
            return self.credential(context).principal.uri
        except GatewayError:
            return "anonymous"


class TokenAuthenticator:
    """The public port (TLS, no client certificate): a short-lived signed bearer token, for CI systems."""

    def __init__(self, trust: Trust) -> None:
        self._trust = trust

    def _token(self, context: Context) -> str:
        values = [v for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
        if len(values) != 1 or not isinstance(values[0], str) or not values[0].startswith("Bearer "):
            raise Unauthenticated(
                "this port needs exactly one `authorization: Bearer <token>` header (ask an admin for a token:"
                " `fedgate admin token issue`), or use the mTLS port with a certificate",
                reason="NO_TOKEN",
            )
        return values[0].removeprefix("Bearer ").strip()

    def credential(self, context: Context) -> Credential:
        return self._trust.authenticate_token(self._token(context))

    def principal(self, context: Context) -> Principal:
        return self.credential(context).principal

    def caller_uri(self, context: Context) -> str:
        # Never re-verify here: that would count a single-use token's use a second time.
        return "anonymous (bearer token)"


class Guarded:
    """Mixed into every servicer: refusals of identity or permission are written to the audit log. Each servicer
    is given its authenticator and the trust service in its constructor."""

    auth: Authenticator
    trust: Trust

    def on_denied(self, context: Context, method: str, error: GatewayError) -> None:
        source = source_of(context.peer() or "")
        self.trust.denied(self.auth.caller_uri(context), method, error.reason, error.message, source)


async def while_valid(items: AsyncIterator[T], check: Callable[[], None], period: float) -> AsyncIterator[T]:
    """Pass `items` through, re-running `check` at least every `period` seconds while waiting, so that a
    stream opened with a credential revoked (or expired) since is cut within `period` s of it."""
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            check()
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({pending}, timeout=period)
            if not done:
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            # The generator must have stopped running before it can be closed.
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


class CredentialGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Puts the services that are not ours (health, reflection) behind the same check as ours: a revoked or
    expired certificate is refused on them too. Interceptors do not see the TLS identity themselves, so the
    guard wraps each handler's behaviour, where the call's context is available."""

    PREFIXES = ("/grpc.health.", "/grpc.reflection.")

    def __init__(self, auth: Authenticator, trust: Trust) -> None:
        self.auth = auth
        self.trust = trust

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        # The stubs type handlers for the sync server; here behaviours are coroutines and async generators.
        handler: Any = await continuation(details)
        if handler is None or not str(details.method).startswith(self.PREFIXES):
            return handler
        auth, trust = self.auth, self.trust

        async def admit(context: Context) -> None:
            try:
                auth.credential(context)
            except GatewayError as exc:
                source = source_of(context.peer() or "")
                trust.denied(auth.caller_uri(context), str(details.method), exc.reason, exc.message, source)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Context) -> Any:
                await admit(context)
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        inner = handler.unary_stream or handler.stream_stream
        if inner is not None:
            make = (
                grpc.unary_stream_rpc_method_handler
                if handler.unary_stream is not None
                else grpc.stream_stream_rpc_method_handler
            )
            if inspect.iscoroutinefunction(inner):  # health's Watch: a coroutine that writes with context.write

                async def writing(request: Any, context: Context) -> None:
                    await admit(context)
                    await inner(request, context)

                return make(writing, handler.request_deserializer, handler.response_serializer)

            # Reflection's stream: the same check, then pass every message through.
            async def streaming(request_or_requests: Any, context: Context) -> AsyncIterator[Any]:
                await admit(context)
                async for item in inner(request_or_requests, context):
                    yield item

            return make(streaming, handler.request_deserializer, handler.response_serializer)
        return handler
