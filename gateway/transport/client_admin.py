"""The client's operator calls: policy, draining, join and bearer tokens, revocation, audit, and renewing
this client's own certificate.

Owns: one method per AdminService RPC and the enrollment renewal, and the plain records they return
(`PolicyStatus`, `IssuedToken`, `JoinToken`, `AuditVerification`). It does not own the channel or the
translation of a refused call (`gateway.transport.client_channel`). Users import it as part of
`gateway.transport.client.FederationClient`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from fedgate.v1 import admin_service_pb2 as admin_pb
from fedgate.v1 import enrollment_service_pb2 as enroll_pb
from gateway.identity.principal import load_certificate, spiffe_uri_of
from gateway.identity.renewal import install, new_key_and_csr
from gateway.identity.revocation import Revocation
from gateway.sites.model import SiteView
from gateway.transport import convert
from gateway.transport.client_channel import ClientChannel
from gateway.trust.audit import AuditEntry
from gateway.trust.credentials import Credentials


@dataclass(frozen=True)
class PolicyStatus:
    version: str
    path: str
    load_time: datetime
    last_error: str
    tenants: int
    projects: int


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


class AdminCalls(ClientChannel):
    """The AdminService (and certificate renewal) half of `FederationClient`."""

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
        number = convert.enum_to_proto(admin_pb.TokenRole, role)
        if not number:
            raise ValueError(f"role must be member or viewer, not {role!r}")
        request = admin_pb.IssueTokenRequest(
            tenant=tenant,
            user=user,
            role=number,  # type: ignore[arg-type]
            ttl=convert.duration_to_proto(ttl),
            single_use=single_use,
        )
        r = self._call(self._admin.IssueToken, request)
        return IssuedToken(r.token, r.token_id, convert.time_from_proto(r.expire_time), r.audience)

    def revoke(self, *, serial: str = "", principal: str = "", token_id: str = "", reason: str = "") -> Revocation:
        targets = {k: v for k, v in (("serial", serial), ("principal", principal), ("token_id", token_id)) if v}
        if len(targets) != 1:
            raise ValueError("revoke exactly one of serial, principal or token_id")
        r = self._call(self._admin.RevokeCredential, admin_pb.RevokeCredentialRequest(reason=reason, **targets))
        kind = convert.enum_from_proto(admin_pb.RevocationKind, r.revocation.kind, "")
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
