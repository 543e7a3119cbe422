"""The client library that the CLI and Python users import: plain dataclasses in and out, gRPC inside.

    from gateway.credentials import Credentials
    from gateway.transport.client import FederationClient
    with FederationClient("gw.example:7443", Credentials.from_dir("~/.fedgate")) as client:
        job = client.create_job(spec)

Owns: the channel (mTLS, keepalive, message limits), one method per RPC, and turning a refused call into
`ClientError` with the gRPC code, the server's reason code and its message. It does not print or exit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from fedgate.v1 import admin_service_pb2 as admin_pb
from fedgate.v1 import (
    admin_service_pb2_grpc,
    enrollment_service_pb2_grpc,
    job_service_pb2_grpc,
    reservation_service_pb2_grpc,
)
from fedgate.v1 import enrollment_service_pb2 as enroll_pb
from fedgate.v1 import job_service_pb2 as job_pb
from fedgate.v1 import reservation_service_pb2 as reservation_pb
from gateway.audit import AuditEntry
from gateway.credentials import Credentials
from gateway.errors import ClientError
from gateway.identity.principal import load_certificate, spiffe_uri_of
from gateway.identity.renewal import install, new_key_and_csr
from gateway.identity.revocation import Revocation
from gateway.logs import LogPiece
from gateway.model import Job, JobEvent, JobSpec, JobState, SiteView, UsageRow
from gateway.placement import Explanation
from gateway.receipts import SettledReceipt
from gateway.reservationmodel import Reservation, ReservationRequest
from gateway.transport import convert
from gateway.transport.receipts import settled_from_proto
from gateway.transport.reservation_convert import request_to_proto, reservation_from_proto

T = TypeVar("T")


@dataclass(frozen=True)
class PolicyStatus:
    version: str
    path: str
    load_time: datetime
    last_error: str
    tenants: int
    projects: int


def error_from_rpc(error: grpc.RpcError) -> ClientError:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = (error.details() if isinstance(error, grpc.Call) else str(error)) or code.name
    reason = code.name
    if isinstance(error, grpc.Call):
        for key, value in error.trailing_metadata() or ():
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    info = error_details_pb2.ErrorInfo()
                    if detail.Unpack(info):
                        reason = info.reason
    return ClientError(message, code=code.name, reason=reason)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str
    expire_time: datetime
    audience: str


@dataclass(frozen=True)
class JoinToken:
    token: str
    expire_time: datetime
    ca_fingerprint: str


@dataclass(frozen=True)
class AuditVerification:
    intact: bool
    entries: int
    first_bad_sequence: int
    problem: str


class FederationClient:
    """A client of one gateway. With `credentials` it speaks mTLS on the main port; with `token` (and a CA
    bundle to verify the gateway) it speaks to the public port with a bearer token."""

    def __init__(
        self,
        target: str,
        credentials: Credentials | None = None,
        *,
        token: str = "",
        ca_pem: bytes = b"",
        timeout: float = 30.0,
    ) -> None:
        if token:
            channel_credentials = grpc.composite_channel_credentials(
                grpc.ssl_channel_credentials(root_certificates=ca_pem or (credentials.ca_pem if credentials else None)),
                grpc.access_token_call_credentials(token),
            )
        elif credentials is not None:
            channel_credentials = grpc.ssl_channel_credentials(
                root_certificates=credentials.ca_pem,
                private_key=credentials.key_pem,
                certificate_chain=credentials.cert_pem,
            )
        else:
            raise ValueError("a client needs credentials (mTLS) or a token")
        self._channel = grpc.secure_channel(
            target,
            channel_credentials,
            options=[
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 30_000),
            ],
        )
        self._jobs = job_service_pb2_grpc.JobServiceStub(self._channel)
        self._admin = admin_service_pb2_grpc.AdminServiceStub(self._channel)
        self._enrollment = enrollment_service_pb2_grpc.EnrollmentServiceStub(self._channel)
        self._reservations = reservation_service_pb2_grpc.ReservationServiceStub(self._channel)
        self.timeout = timeout

    def __enter__(self) -> FederationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    # ---- jobs ---------------------------------------------------------------------------------------------
    def create_job(self, spec: JobSpec, request_id: str | None = None) -> Job:
        """Submit a job. Reusing a request_id returns the job the first call created (safe to retry)."""
        request = job_pb.CreateJobRequest(request_id=request_id or uuid.uuid4().hex, spec=convert.spec_to_proto(spec))
        return convert.job_from_proto(self._call(self._jobs.CreateJob, request).job)

    def get_job(self, job_id: str) -> Job:
        return convert.job_from_proto(self._call(self._jobs.GetJob, job_pb.GetJobRequest(job_id=job_id)).job)

    def list_jobs(
        self, tenant: str = "", project: str = "", states: tuple[JobState, ...] = (), limit: int = 1000
    ) -> list[Job]:
        """Jobs the caller may see, oldest first, following pages up to `limit` jobs."""
        jobs: list[Job] = []
        token = ""
        while len(jobs) < limit:
            request = job_pb.ListJobsRequest(
                tenant=tenant,
                project=project,
                states=[convert.state_to_proto(s) for s in states],
                page_size=min(500, limit - len(jobs)),
                page_token=token,
            )
            page = self._call(self._jobs.ListJobs, request)
            jobs.extend(convert.job_from_proto(j) for j in page.jobs)
            token = page.next_page_token
            if not token:
                break
        return jobs

    def cancel_job(self, job_id: str, reason: str = "") -> Job:
        request = job_pb.CancelJobRequest(job_id=job_id, reason=reason)
        return convert.job_from_proto(self._call(self._jobs.CancelJob, request).job)

    def watch_job(self, job_id: str, timeout: float | None = None) -> Iterator[tuple[JobEvent, Job]]:
        """Yield (event, job) from the current state until the job ends (or `timeout` seconds pass)."""
        try:
            for response in self._jobs.WatchJob(job_pb.WatchJobRequest(job_id=job_id), timeout=timeout):
                yield convert.event_from_proto(response.event), convert.job_from_proto(response.job)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    def stream_job_logs(
        self, job_id: str, *, follow: bool = False, tail_bytes: int = 0, timeout: float | None = None
    ) -> Generator[LogPiece, None, None]:
        """The output of the job's current attempt, in order, as the site sends it: everything written so far
        (or the last `tail_bytes` of it), and with `follow` what it writes until it ends. Leaving the loop early
        cancels the stream at the gateway and the site."""
        request = job_pb.StreamJobLogsRequest(job_id=job_id, follow=follow, tail_bytes=tail_bytes)
        responses = self._jobs.StreamJobLogs(request, timeout=timeout)
        try:
            for response in responses:
                yield LogPiece(response.data, response.site, response.epoch)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            responses.cancel()

    def explain_job(self, job_id: str = "", spec: JobSpec | None = None) -> Explanation:
        if spec is not None:
            request = job_pb.ExplainJobRequest(spec=convert.spec_to_proto(spec))
        else:
            request = job_pb.ExplainJobRequest(job_id=job_id)
        response = self._call(self._jobs.ExplainJob, request)
        return Explanation(
            response.admitted,
            tuple(convert.reason_from_proto(r) for r in response.reasons),
            tuple(convert.candidate_from_proto(c) for c in response.candidates),
            response.policy_version,
        )

    def usage(self, start: datetime, end: datetime | None = None, project: str = "") -> list[UsageRow]:
        request = job_pb.GetUsageRequest(start_time=convert.time_to_proto(start), project=project)
        if end is not None:
            request.end_time.FromDatetime(end)
        response = self._call(self._jobs.GetUsage, request)
        return [
            UsageRow(r.tenant, r.project, r.accelerator_class, r.card_hours, r.normalised_pflops_hours, r.attempts)
            for r in response.rows
        ]

    def list_usage_receipts(
        self, start: datetime, end: datetime | None = None, project: str = ""
    ) -> list[SettledReceipt]:
        """Every settled receipt the caller may read of attempts that ended in [start, end), following pages.
        Each record is parsed from the signed bytes; verify them with `gateway.receipts.settled_problems`."""
        receipts: list[SettledReceipt] = []
        token = ""
        while True:
            request = job_pb.ListUsageReceiptsRequest(
                start_time=convert.time_to_proto(start), project=project, page_size=500, page_token=token
            )
            if end is not None:
                request.end_time.FromDatetime(end)
            page = self._call(self._jobs.ListUsageReceipts, request)
            receipts.extend(settled_from_proto(r) for r in page.receipts)
            token = page.next_page_token
            if not token:
                return receipts

    def list_sites(self) -> list[SiteView]:
        response = self._call(self._jobs.ListSites, job_pb.ListSitesRequest())
        return [convert.site_from_proto(s) for s in response.sites]

    # ---- advance reservations -----------------------------------------------------------------------------
    def create_reservation(self, request: ReservationRequest, request_id: str | None = None) -> Reservation:
        """Book cards ahead. Reusing a request_id returns the reservation the first call made (safe to retry)."""
        call = reservation_pb.CreateReservationRequest(
            request_id=request_id or uuid.uuid4().hex, reservation=request_to_proto(request)
        )
        return reservation_from_proto(self._call(self._reservations.CreateReservation, call).reservation)

    def get_reservation(self, reservation_id: str) -> Reservation:
        call = reservation_pb.GetReservationRequest(reservation_id=reservation_id)
        return reservation_from_proto(self._call(self._reservations.GetReservation, call).reservation)

    def list_reservations(self, project: str = "", limit: int = 1000) -> list[Reservation]:
        """Reservations the caller may see, oldest first, following pages up to `limit`."""
        found: list[Reservation] = []
        token = ""
        while len(found) < limit:
            call = reservation_pb.ListReservationsRequest(
                project=project, page_size=min(500, limit - len(found)), page_token=token
            )
            page = self._call(self._reservations.ListReservations, call)
            found.extend(reservation_from_proto(r) for r in page.reservations)
            token = page.next_page_token
            if not token:
                break
        return found

    def cancel_reservation(self, reservation_id: str, reason: str = "") -> Reservation:
        call = reservation_pb.CancelReservationRequest(reservation_id=reservation_id, reason=reason)
        return reservation_from_proto(self._call(self._reservations.CancelReservation, call).reservation)

    # ---- admin --------------------------------------------------------------------------------------------
    def policy_status(self) -> PolicyStatus:
        r = self._call(self._admin.GetPolicyStatus, admin_pb.GetPolicyStatusRequest())
        return PolicyStatus(
            r.version, r.path, convert.time_from_proto(r.load_time), r.last_error, r.tenants, r.projects
        )

    def reload_policy(self) -> tuple[str, bool]:
        r = self._call(self._admin.ReloadPolicy, admin_pb.ReloadPolicyRequest())
        return r.version, r.changed

    def drain_site(self, site: str, draining: bool = True) -> SiteView:
        r = self._call(self._admin.DrainSite, admin_pb.DrainSiteRequest(site=site, draining=draining))
        return convert.site_from_proto(r.site)

    def create_join_token(self, site: str, ttl: timedelta = timedelta(hours=1)) -> JoinToken:
        request = admin_pb.CreateJoinTokenRequest(site=site, ttl=convert.duration_to_proto(ttl))
        r = self._call(self._admin.CreateJoinToken, request)
        return JoinToken(r.join_token, convert.time_from_proto(r.expire_time), r.ca_fingerprint)

    def issue_token(
        self,
        tenant: str,
        user: str,
        role: str = "member",
        ttl: timedelta = timedelta(minutes=15),
        single_use: bool = False,
    ) -> IssuedToken:
        request = admin_pb.IssueTokenRequest(
            tenant=tenant, user=user, role=role, ttl=convert.duration_to_proto(ttl), single_use=single_use
        )
        r = self._call(self._admin.IssueToken, request)
        return IssuedToken(r.token, r.token_id, convert.time_from_proto(r.expire_time), r.audience)

    def revoke(self, *, serial: str = "", principal: str = "", token_id: str = "", reason: str = "") -> Revocation:
        targets = {k: v for k, v in (("serial", serial), ("principal", principal), ("token_id", token_id)) if v}
        if len(targets) != 1:
            raise ValueError("revoke exactly one of serial, principal or token_id")
        r = self._call(self._admin.RevokeCredential, admin_pb.RevokeCredentialRequest(reason=reason, **targets))
        kind = {"serial": "serial", "principal": "principal", "token_id": "token"}[next(iter(targets))]
        return Revocation(
            kind, r.revocation.value, convert.time_from_proto(r.revocation.revoke_time), r.revocation.reason
        )

    def audit_events(self, limit: int = 1000) -> list[AuditEntry]:
        events: list[AuditEntry] = []
        token = ""
        while len(events) < limit:
            request = admin_pb.ListAuditEventsRequest(page_size=min(1000, limit - len(events)), page_token=token)
            page = self._call(self._admin.ListAuditEvents, request)
            events.extend(
                AuditEntry(
                    e.sequence, convert.time_from_proto(e.time), e.kind, e.principal, dict(e.details), hash=e.hash
                )
                for e in page.events
            )
            token = page.next_page_token
            if not token:
                break
        return events

    def renew_certificate(self, directory: Path) -> datetime:
        """Renew the certificate in credentials `directory` (the one this client was made with): a new key is
        made here and never sent; the new files replace the old ones atomically. Returns the new expiry."""
        current = Credentials.from_dir(directory)
        key, csr = new_key_and_csr(spiffe_uri_of(load_certificate(current.cert_pem)).rsplit("/", 1)[-1])
        reply = self._call(self._enrollment.RenewCertificate, enroll_pb.RenewCertificateRequest(csr_pem=csr.decode()))
        install(directory, key, reply.certificate_chain_pem.encode(), reply.ca_bundle_pem.encode())
        return convert.time_from_proto(reply.expire_time)

    def verify_audit(self) -> AuditVerification:
        r = self._call(self._admin.VerifyAudit, admin_pb.VerifyAuditRequest())
        return AuditVerification(r.intact, r.entries, r.first_bad_sequence, r.problem)
