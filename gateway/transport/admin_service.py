"""AdminService: policy status and reload, site drain, join tokens, tokens, revocation, audit. Every method
needs an admin principal; each translates, calls one domain method, and translates back.

Owns: the AdminService servicer: admin-only translation, no decision.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from fedgate.v1 import admin_service_pb2 as pb
from fedgate.v1 import admin_service_pb2_grpc
from gateway.app.admin import AdminService
from gateway.errors import ConfigError, InvalidArgument
from gateway.identity.revocation import Revocation
from gateway.transport import convert
from gateway.transport.auth import Authenticator, Guarded
from gateway.transport.errors import translate_errors
from gateway.transport.listing import entry_size, list_budget
from gateway.transport.required import require_fields
from gateway.trust import access
from gateway.trust.audit import AuditEntry
from gateway.trust.service import Trust

Context = grpc.aio.ServicerContext[Any, Any]


def revocation_to_proto(revocation: Revocation) -> pb.Revocation:
    return pb.Revocation(
        kind=convert.enum_to_proto(pb.RevocationKind, revocation.kind),  # type: ignore[arg-type]
        value=revocation.value,
        revoke_time=convert.time_to_proto(revocation.time),
        reason=revocation.reason,
    )


def _role(number: int) -> str:
    """The token role asked for: member when unsaid; a number the contract does not define is refused."""
    if number not in pb.TokenRole.values():
        raise InvalidArgument(f"role {number} is not a TokenRole", metadata={"field": "role"})
    return convert.enum_from_proto(pb.TokenRole, number, "member")


def audit_to_proto(entry: AuditEntry) -> pb.AuditEvent:
    return pb.AuditEvent(
        sequence=entry.sequence,
        time=convert.time_to_proto(entry.time),
        kind=entry.kind,
        principal=entry.principal,
        details=dict(entry.details),
        hash=entry.hash,
    )


def _audit_size(entry: AuditEntry) -> int:
    return entry_size(audit_to_proto(entry))


def _ttl(has: bool, value: Any, default: timedelta) -> timedelta:
    return value.ToTimedelta() if has else default


class AdminServicer(Guarded, admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(
        self, admin: AdminService, auth: Authenticator, trust: Trust, max_message_bytes: int = 4 << 20
    ) -> None:
        self.admin = admin
        self.list_budget = list_budget(max_message_bytes)
        self.auth = auth
        self.trust = trust

    @translate_errors
    async def GetPolicyStatus(self, request: pb.GetPolicyStatusRequest, context: Context) -> pb.GetPolicyStatusResponse:
        access.require_role(self.auth.principal(context), "admin")
        status = self.admin.policy_status()
        return pb.GetPolicyStatusResponse(
            version=status.policy.version,
            path=status.policy.path,
            load_time=convert.time_to_proto(status.load_time),
            last_error=status.last_error,
            tenants=len(status.policy.tenants),
            projects=status.policy.project_count,
        )

    @translate_errors
    async def ReloadPolicy(self, request: pb.ReloadPolicyRequest, context: Context) -> pb.ReloadPolicyResponse:
        caller = self.auth.principal(context)
        access.require_role(caller, "admin")
        try:
            policy, changed = self.admin.reload_policy()
        except ConfigError as exc:
            self.trust.audit("policy.reload_refused", caller.uri, {"error": exc.message[:300]})
            raise
        self.trust.audit("policy.reloaded", caller.uri, {"version": policy.version, "changed": str(changed).lower()})
        return pb.ReloadPolicyResponse(version=policy.version, changed=changed)

    @translate_errors
    async def DrainSite(self, request: pb.DrainSiteRequest, context: Context) -> pb.DrainSiteResponse:
        caller = self.auth.principal(context)
        require_fields(request)
        site = self.admin.drain_site(caller, request.site, request.draining)
        self.trust.audit("site.drained" if request.draining else "site.resumed", caller.uri, {"site": request.site})
        return pb.DrainSiteResponse(site=convert.site_to_proto(site))

    @translate_errors
    async def CreateJoinToken(self, request: pb.CreateJoinTokenRequest, context: Context) -> pb.CreateJoinTokenResponse:
        caller = self.auth.principal(context)
        require_fields(request)
        ttl = _ttl(request.HasField("ttl"), request.ttl, timedelta(hours=1))
        token, expires, fingerprint = self.trust.create_join_token(caller, request.site, ttl)
        return pb.CreateJoinTokenResponse(
            join_token=token, expire_time=convert.time_to_proto(expires), ca_fingerprint=fingerprint
        )

    @translate_errors
    async def IssueToken(self, request: pb.IssueTokenRequest, context: Context) -> pb.IssueTokenResponse:
        caller = self.auth.principal(context)
        require_fields(request)
        ttl = _ttl(request.HasField("ttl"), request.ttl, timedelta(minutes=15))
        token, claims = self.trust.issue_token(
            caller,
            request.tenant,
            request.user,
            _role(request.role),
            ttl,
            request.single_use,
        )
        return pb.IssueTokenResponse(
            token=token,
            token_id=claims.token_id,
            expire_time=convert.time_to_proto(claims.expires_at),
            audience=claims.audience,
        )

    @translate_errors
    async def RevokeCredential(
        self, request: pb.RevokeCredentialRequest, context: Context
    ) -> pb.RevokeCredentialResponse:
        target = request.WhichOneof("target")
        if target is None:
            raise InvalidArgument("say what to revoke: a serial, a principal or a token_id")
        kind = {"serial": "serial", "principal": "principal", "token_id": "token"}[target]
        revocation = self.trust.revoke(self.auth.principal(context), kind, getattr(request, target), request.reason)
        return pb.RevokeCredentialResponse(revocation=revocation_to_proto(revocation))

    @translate_errors
    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context: Context) -> pb.ListAuditEventsResponse:
        page = self.trust.audit_page(
            self.auth.principal(context),
            request.page_size,
            request.page_token,
            size_of=_audit_size,
            budget=self.list_budget,
        )
        return pb.ListAuditEventsResponse(
            events=[audit_to_proto(e) for e in page.items], next_page_token=page.next_page_token
        )

    @translate_errors
    async def VerifyAudit(self, request: pb.VerifyAuditRequest, context: Context) -> pb.VerifyAuditResponse:
        verdict = self.trust.verify_audit(self.auth.principal(context))
        return pb.VerifyAuditResponse(
            intact=verdict.intact,
            entries=verdict.entries,
            first_bad_sequence=verdict.first_bad_sequence,
            problem=verdict.problem,
        )
