"""A standby gateway's servers: what a gateway without the leader lease answers on the leader's ports.

Owns: the standby's gRPC servers on the same addresses the gateway leads on. It serves what is safe without
the lease: health (the process is up, every fedgate service NOT_SERVING, so a load balancer's readiness sends
traffic to the leader), reflection, and the reads of `JobService` (`GetJob`, `ListJobs`) from the shared store,
authenticated by certificate and checked by the same access rules as the leader (the revocations are read
again every `credential_check`). Everything else, and everything on the public port, is refused with
UNAVAILABLE and reason NOT_LEADER, whose ErrorInfo metadata `leader` names the leader's address when one is
known: the agents and the CLI follow it. The standby's store is fenced as a standby's: it cannot write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fedgate.v1 import (
    admin_service_pb2,
    enrollment_service_pb2,
    job_service_pb2,
    reservation_service_pb2,
    site_pb2,
)
from fedgate.v1 import job_service_pb2 as pb
from gateway.app.config import GatewayConfig
from gateway.app.leadership import Leadership
from gateway.errors import NotLeader
from gateway.jobs.reads import job_listing, visible_job, visible_jobs, within_bytes
from gateway.policy.holder import PolicyHolder
from gateway.store import Store
from gateway.transport import convert
from gateway.transport.auth import CertificateAuthenticator, CredentialGuard, Guarded
from gateway.transport.errors import abort, translate_errors
from gateway.transport.job_service import listed_size
from gateway.transport.listing import list_budget
from gateway.transport.server import SERVICE_NAMES, bind_port, server_credentials, server_options
from gateway.trust.pagetokens import PageTokens
from gateway.trust.service import Trust

log = logging.getLogger("fedgate.gateway")
Context = grpc.aio.ServicerContext[Any, Any]

SERVICES = tuple(
    module.DESCRIPTOR.services_by_name[name]
    for module, name in (
        (job_service_pb2, "JobService"),
        (site_pb2, "SiteService"),
        (admin_service_pb2, "AdminService"),
        (enrollment_service_pb2, "EnrollmentService"),
        (reservation_service_pb2, "ReservationService"),
    )
)


def not_leader(leadership: Leadership) -> NotLeader:
    leader = leadership.leader_address()
    where = f"the leader is at {leader}" if leader else "no leader is known yet (an election is under way)"
    return NotLeader(
        f"this gateway is a standby: {where}; retry there, or give the client every gateway address",
        metadata={"leader": leader} if leader else None,
    )


class NotLeaderHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Answers every method of fedgate's services with UNAVAILABLE / NOT_LEADER (raw bytes: nothing parsed)."""

    def __init__(self, leadership: Leadership) -> None:
        self._leadership = leadership
        self._kinds = {
            f"/{service.full_name}/{method.name}": (method.client_streaming, method.server_streaming)
            for service in SERVICES
            for method in service.methods
        }

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        kind = self._kinds.get(str(handler_call_details.method))
        if kind is None:
            return None
        leadership = self._leadership

        async def refuse(_request: Any, context: Context) -> Any:
            await abort(context, not_leader(leadership))

        async def refuse_stream(_request: Any, context: Context) -> Any:
            await abort(context, not_leader(leadership))
            yield b""  # pragma: no cover (abort raises)

        client_streaming, server_streaming = kind
        if server_streaming:
            make = grpc.stream_stream_rpc_method_handler if client_streaming else grpc.unary_stream_rpc_method_handler
            return make(refuse_stream)
        make_unary = grpc.stream_unary_rpc_method_handler if client_streaming else grpc.unary_unary_rpc_method_handler
        return make_unary(refuse)


class StandbyReads(Guarded):
    """`GetJob` and `ListJobs` from the shared store: what a standby may answer."""

    def __init__(self, store: Store, policy: PolicyHolder, trust: Trust, max_message_bytes: int = 4 << 20) -> None:
        self.store = store
        self.policy = policy
        self.trust = trust
        self.auth = CertificateAuthenticator(trust)
        self.tokens = PageTokens.derived(trust.authority.token_key)  # the leader's key: its tokens carry over
        self.list_budget = list_budget(max_message_bytes)

    @translate_errors
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        caller = self.auth.principal(context)
        job = await asyncio.to_thread(self.store.get_job, request.job_id)
        return pb.GetJobResponse(job=convert.job_to_proto(visible_job(caller, request.job_id, job, self.policy.policy)))

    @translate_errors
    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        caller = self.auth.principal(context)
        states = [convert.state_from_proto(s) for s in request.states]
        page = await asyncio.to_thread(
            visible_jobs,
            self.store,
            self.policy.policy,
            caller,
            request.tenant,
            request.project,
            states,
            request.page_size,
            request.page_token,
            tokens=self.tokens,
        )
        listing = job_listing(caller, request.tenant, request.project, states)
        page = within_bytes(page, listing, self.tokens, listed_size, self.list_budget)
        jobs = [convert.job_to_proto(j) for j in page.jobs]
        return pb.ListJobsResponse(jobs=jobs, next_page_token=page.next_page_token)

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        def unary(
            method: Callable[..., Any], request: type[Any], response: type[Any]
        ) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                method, request_deserializer=request.FromString, response_serializer=response.SerializeToString
            )

        return grpc.method_handlers_generic_handler(
            job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
            {
                "GetJob": unary(self.GetJob, pb.GetJobRequest, pb.GetJobResponse),
                "ListJobs": unary(self.ListJobs, pb.ListJobsRequest, pb.ListJobsResponse),
            },
        )


@dataclass
class StandbyGateway:
    server: grpc.aio.Server
    public_server: grpc.aio.Server | None
    store: Store
    trust: Trust
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self, grace: float = 1.0) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(s.stop(grace) for s in (self.public_server, self.server) if s is not None))
        self.store.close()


async def start_standby(
    config: GatewayConfig, store: Store, policy: PolicyHolder, trust: Trust, leadership: Leadership
) -> tuple[StandbyGateway, int, int]:
    """Serve as a standby on `config.listen` (and `public_listen`); returns the gateway and the bound ports."""
    options = server_options(config)
    reads = StandbyReads(store, policy, trust, config.max_message_bytes)
    server = grpc.aio.server(
        options=options,
        interceptors=[CredentialGuard(reads.auth, trust)],
        handlers=[reads.handler(), NotLeaderHandler(leadership)],
    )
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
    port = bind_port(server, config.listen, server_credentials(config))
    public_server, public_port = None, 0
    if config.public_listen:  # bearer tokens are counted in the store (single use): only the leader serves them
        public_server = grpc.aio.server(options=options, handlers=[NotLeaderHandler(leadership)])
        public_port = bind_port(
            public_server, config.public_listen, server_credentials(config, require_client_auth=False)
        )
        await public_server.start()
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in SERVICE_NAMES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    standby = StandbyGateway(server, public_server, store, trust)
    standby.tasks.append(asyncio.create_task(_reread_revocations(trust, config.credential_check.total_seconds())))
    return standby, port, public_port


async def _reread_revocations(trust: Trust, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            await asyncio.to_thread(trust.reload_revocations)
        except Exception:  # the store is away: keep the list we have and look again
            log.warning("standby: cannot read the revocations again", exc_info=True)
