"""AdminService: policy status and reload, site drain. Every method needs an admin principal."""

from __future__ import annotations

from typing import Any

import grpc

from fedgate.v1 import admin_service_pb2 as pb
from fedgate.v1 import admin_service_pb2_grpc
from gateway import access
from gateway.federation import Federation
from gateway.transport import convert
from gateway.transport.auth import Authenticator
from gateway.transport.errors import translate_errors

Context = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(self, federation: Federation, auth: Authenticator) -> None:
        self.federation = federation
        self.auth = auth

    @translate_errors
    async def GetPolicyStatus(self, request: pb.GetPolicyStatusRequest, context: Context) -> pb.GetPolicyStatusResponse:
        access.require_role(self.auth.principal(context), "admin")
        status = self.federation.policy.status()
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
        access.require_role(self.auth.principal(context), "admin")
        policy, changed = self.federation.policy.reload(self.federation.clock())
        return pb.ReloadPolicyResponse(version=policy.version, changed=changed)

    @translate_errors
    async def DrainSite(self, request: pb.DrainSiteRequest, context: Context) -> pb.DrainSiteResponse:
        site = self.federation.drain_site(self.auth.principal(context), request.site, request.draining)
        return pb.DrainSiteResponse(site=convert.site_to_proto(site))
