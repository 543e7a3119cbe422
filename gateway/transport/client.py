"""The client library that the CLI and Python users import: plain dataclasses in and out, gRPC inside.

    from gateway.trust.credentials import Credentials
    from gateway.transport.client import FederationClient
    with FederationClient("gw.example:7443", Credentials.from_dir("~/.fedgate")) as client:
        job = client.create_job(spec)

Owns: `FederationClient`, the one class users hold, put together from one part per service: jobs
(`client_jobs`), advance reservations (`client_reservations`), operator calls (`client_admin`) and what a gateway
says of itself (`client_discovery`), all over the one channel and `_call` of `client_channel` (mTLS, keepalive,
message limits; a refused call becomes `ClientError` with the gRPC code, the server's reason code and its
message). It does not print or exit.
"""

from __future__ import annotations

from gateway.transport.client_admin import AdminCalls, AuditVerification, IssuedToken, JoinToken, PolicyStatus
from gateway.transport.client_channel import error_from_rpc
from gateway.transport.client_discovery import CLIENT_API, DiscoveryCalls, GatewayDescription
from gateway.transport.client_jobs import JobCalls
from gateway.transport.client_reservations import ReservationCalls

__all__ = [
    "CLIENT_API",
    "AuditVerification",
    "FederationClient",
    "GatewayDescription",
    "IssuedToken",
    "JoinToken",
    "PolicyStatus",
    "error_from_rpc",
]


class FederationClient(JobCalls, ReservationCalls, AdminCalls, DiscoveryCalls):
    """A client of one gateway. With `credentials` it speaks mTLS on the main port; with `token` (and a CA
    bundle to verify the gateway) it speaks to the public port with a bearer token."""
