"""The gateway's gRPC server: every service on one mTLS port, health and reflection included.

Owns: building the grpc.aio server from a `GatewayConfig` (credentials that require and verify a client
certificate, message size limits, keepalive), wiring the servicers to one `Federation`, and the serve loop
with a graceful stop. Nothing is served without TLS, and nothing but Enroll without a client certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fedgate.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    enrollment_service_pb2,
    enrollment_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    site_pb2,
    site_pb2_grpc,
)
from gateway.config import GatewayConfig
from gateway.dispatch import Dispatcher
from gateway.federation import Federation, utc_now
from gateway.policy import PolicyHolder, load_catalogue
from gateway.store import open_store
from gateway.transport.admin_service import AdminServicer
from gateway.transport.auth import Authenticator
from gateway.transport.enrollment_service import EnrollmentServicer
from gateway.transport.job_service import JobServicer
from gateway.transport.site_service import SiteServicer

log = logging.getLogger("fedgate.gateway")

SERVICE_NAMES = (
    job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    site_pb2.DESCRIPTOR.services_by_name["SiteService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    enrollment_service_pb2.DESCRIPTOR.services_by_name["EnrollmentService"].full_name,
)


@dataclass
class RunningGateway:
    server: grpc.aio.Server
    port: int
    federation: Federation
    scheduler: asyncio.Task[None]

    async def stop(self, grace: float = 2.0) -> None:
        self.scheduler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.scheduler
        await self.server.stop(grace)
        self.federation.store.close()


def server_credentials(config: GatewayConfig) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(config.tls.key.read_bytes(), config.tls.cert.read_bytes())],
        root_certificates=config.tls.ca.read_bytes(),
        require_client_auth=True,
    )


async def start_gateway(config: GatewayConfig) -> RunningGateway:
    """Build and start the gateway; returns once it listens. Port 0 in `listen` picks a free port."""
    catalogue = load_catalogue(config.catalogue)
    policy = PolicyHolder(config.policy, catalogue, utc_now())
    federation = Federation(open_store(config.store), policy)
    auth = Authenticator(config.federation)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    )
    job_service_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(federation, auth), server)
    site_pb2_grpc.add_SiteServiceServicer_to_server(
        SiteServicer(Dispatcher(federation), auth, config.report_interval), server
    )
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(federation, auth), server)
    enrollment_service_pb2_grpc.add_EnrollmentServiceServicer_to_server(EnrollmentServicer(), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
    port = server.add_secure_port(config.listen, server_credentials(config))
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}: the address is in use or not local")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    scheduler = asyncio.create_task(federation.run_scheduler(config.schedule_period.total_seconds()))
    log.info("gateway of federation %s listening on %s (port %d)", config.federation, config.listen, port)
    return RunningGateway(server, port, federation, scheduler)
