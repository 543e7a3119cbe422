"""The gateway's gRPC server: every service on one mTLS port, and what tokens authenticate on the public port.

Owns: building the grpc.aio server from a `GatewayConfig` (credentials that require and verify a client
certificate, message size limits, keepalive), wiring the servicers to the parts of one `Core` (built by the
composition root, `gateway.app.compose`), and the running gateway: its long-lived tasks (the scheduler loop, the
policy watcher, the site lease check) started under one `Supervisor`, so that a task that dies stops the process
(`wait_failure`), and a graceful stop: no new jobs (UNAVAILABLE, GATEWAY_SHUTTING_DOWN), no more scheduling,
every agent stream ended with a status that says why, in-flight calls and store writes finished, all within a
bounded time (`shutdown_grace`). Both ports answer health and reflection (`gateway.transport.discovery`); health
says NOT_SERVING from the first moment of a stop. Nothing is served without TLS; on the public port, nothing but
Enroll, health and reflection without a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from fedgate.common.supervise import Cycles, Failure, Supervisor
from fedgate.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    enrollment_service_pb2,
    enrollment_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    reservation_service_pb2,
    reservation_service_pb2_grpc,
    site_pb2,
    site_pb2_grpc,
)
from gateway.app.compose import Core, compose, utc_now
from gateway.app.config import GatewayConfig
from gateway.app.leadership import Leadership, LeaderTerm
from gateway.errors import ConfigError
from gateway.identity.authority import Authority
from gateway.policy import load_catalogue
from gateway.policy.holder import PolicyHolder
from gateway.sites.liveness import SiteLeases
from gateway.store import Store, open_store
from gateway.transport.admin_service import AdminServicer
from gateway.transport.auth import CertificateAuthenticator, CredentialGuard, TokenAuthenticator
from gateway.transport.brakes import Brakes, BrakeSettings, limiters
from gateway.transport.discovery import mark_serving, serve_discovery
from gateway.transport.enrollment_service import EnrollmentServicer
from gateway.transport.job_service import JobServicer
from gateway.transport.metrics import gateway_registry, serve_metrics
from gateway.transport.receipts import record_from_bytes
from gateway.transport.reservation_service import ReservationServicer
from gateway.transport.site_service import SiteServicer
from gateway.transport.status_http import serve_status
from gateway.trust.pagetokens import PageTokens
from gateway.trust.service import DENIAL_WINDOW_S, Trust
from gateway.usage.receipts import Countersigner

log = logging.getLogger("fedgate.gateway")

SERVICE_NAMES = (
    job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    site_pb2.DESCRIPTOR.services_by_name["SiteService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    enrollment_service_pb2.DESCRIPTOR.services_by_name["EnrollmentService"].full_name,
    reservation_service_pb2.DESCRIPTOR.services_by_name["ReservationService"].full_name,
)
PUBLIC_SERVICE_NAMES = (SERVICE_NAMES[0], SERVICE_NAMES[3], SERVICE_NAMES[4])
"""What the public port serves (beside health and reflection): what a token or a join token authenticates."""


@dataclass
class RunningGateway:
    server: grpc.aio.Server
    port: int
    core: Core
    trust: Trust
    supervisor: Supervisor
    leases: SiteLeases
    public_server: grpc.aio.Server | None = None
    public_port: int = 0
    metrics: asyncio.Server | None = None
    metrics_port: int = 0
    status: asyncio.Server | None = None
    status_port: int = 0
    shutdown_grace: float = 5.0
    """On SIGTERM, how long in-flight calls get to finish (`GatewayConfig.shutdown_grace`)."""
    policy_looks: Cycles = field(default_factory=lambda: Cycles(log, "policy file check"))
    """The policy watcher's looks at the file, completed and failed."""
    leadership: Leadership | None = None
    term: LeaderTerm | None = None
    """The leader lease this gateway holds, on a store shared with standby gateways (None: the only one)."""
    health: tuple[Any, ...] = ()
    """The health servicers of both ports: NOT_SERVING from the first moment of a stop, for load balancers."""

    def reload_policy(self, by: str) -> None:
        """Reload the policy file (SIGHUP, a file change): audited either way; a bad file changes nothing."""
        who = f"spiffe://{self.trust.federation}/gateway"
        try:
            policy, changed = self.core.admin.reload_policy()
        except ConfigError as exc:
            log.error("%s", exc.message)
            self.trust.audit("policy.reload_refused", who, {"trigger": by, "error": exc.message[:300]})
            return
        if changed:
            log.info("policy reloaded (%s): version %s", by, policy.version[:12])
            self.trust.audit("policy.reloaded", who, {"trigger": by, "version": policy.version})

    def _look_at_policy(self) -> None:
        if self.core.admin.policy_changed_on_disk():
            self.reload_policy("file change")

    async def watch_policy(self, period: float) -> None:
        """Look at the policy file every `period` s until cancelled; a look that fails (an unreadable file, a
        store error while auditing) is logged with its traceback and counted, and the next look runs."""
        while True:
            await asyncio.sleep(period)
            self.policy_looks.run(self._look_at_policy)

    async def flush_refusals(self, period: float) -> None:
        """Write the counts of coalesced refusals once their window has ended, even when no refusal follows."""
        while True:
            await asyncio.sleep(period)
            try:
                self.trust.flush_refusals()
            except Exception:  # a store that cannot write now: the counts wait for the next look
                log.exception("could not write the coalesced refusals")

    async def wait_failure(self) -> Failure:
        """Return when a long-lived task has died: the process must stop with a non-zero exit."""
        return await self.supervisor.wait_failure()

    async def stop(self, grace: float = 2.0) -> None:
        """Stop gracefully, in this order: refuse new jobs (UNAVAILABLE with GATEWAY_SHUTTING_DOWN, so that
        clients retry elsewhere or later), stop scheduling and the lease check (nothing is declared lost by a
        gateway on its way out), end every agent stream with a status that says why (the agents re-dial, their
        jobs run on), let in-flight calls finish for at most `grace` s, wait for the store writes they made,
        hand the leader lease over (a standby takes over at once rather than after the lease), close the store."""
        why = "the gateway is shutting down; retry shortly (the jobs already accepted are kept)"
        for checks in self.health:
            await checks.enter_graceful_shutdown()
        self.core.jobs.refuse_new_jobs(why)
        for http in (self.metrics, self.status):
            if http is not None:
                http.close()
        await self.supervisor.stop()
        self.core.registry.close_all(why)
        await self.core.registry.wait_closed(grace)  # each stream sends its status before the server stops
        await asyncio.gather(*(s.stop(grace) for s in (self.public_server, self.server) if s is not None))
        await self.core.jobs.settle()  # the job creations already accepted are durable
        await self.core.dispatcher.settle()  # and the site updates handed to the group commit
        with contextlib.suppress(Exception):  # the refusals counted but not yet written
            self.trust.flush_refusals(force=True)
        if self.leadership is not None and self.term is not None:
            await asyncio.to_thread(self.leadership.release, self.term)  # a standby takes over at its next look
        self.core.store.close()


def server_options(config: GatewayConfig) -> list[tuple[str, int]]:
    # Keepalive pings find a dead or stopped peer within the site lease: a ping every third of it, an answer due
    # within a sixth, and pings go on on a quiet stream (gRPC's default stops after two pings without data,
    # which is why a stopped agent was once noticed only after about 79 s). The lease check
    # (`gateway.sites.liveness`) is what declares a site lost; keepalive only ends the dead connection.
    lease_ms = int(config.site_lease.total_seconds() * 1000)
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", max(1_000, min(20_000, lease_ms // 3))),
        ("grpc.keepalive_timeout_ms", max(1_000, min(10_000, lease_ms // 6))),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # gRPC sets SO_REUSEPORT by default, so a second gateway on the same port would bind too and the kernel
        # would split the agents between the two: each would dispatch. One process per port.
        ("grpc.so_reuseport", 0),
    ]


def server_credentials(config: GatewayConfig, *, require_client_auth: bool = True) -> grpc.ServerCredentials:
    """The gateway's certificate; the chain it presents includes the CA bundle so that `fedgate agent enroll`
    can check the pinned CA fingerprint before it sends its join token."""
    bundle = config.tls.ca.read_bytes()
    chain = config.tls.cert.read_bytes().rstrip(b"\n") + b"\n" + bundle
    return grpc.ssl_server_credentials(
        [(config.tls.key.read_bytes(), chain)], root_certificates=bundle, require_client_auth=require_client_auth
    )


def bind_port(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials) -> int:
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises where older versions returned 0
        port = 0
    if port == 0:
        raise OSError(
            errno.EADDRINUSE,
            f"cannot listen on {address}: the address is in use (is another gateway running?) or not local; "
            "stop the other process or change `listen`/`public_listen` in the config",
        )
    return port


async def start_gateway(
    config: GatewayConfig, *, leadership: Leadership | None = None, term: LeaderTerm | None = None
) -> RunningGateway:
    """Build and start the gateway; returns once it listens. Port 0 in `listen` picks a free port. On a shared
    store, `term` is the leader lease won by `leadership`: every write carries its epoch, and the lease is
    renewed by a supervised task (its loss stops the gateway, see `gateway.transport.replica`)."""
    catalogue = load_catalogue(config.catalogue)
    policy = PolicyHolder(config.policy, catalogue, utc_now())
    authority = Authority.load(config.authority, config.tls.ca)  # before the store: a refusal leaves nothing open
    # SQLite: holds the store's lock, so a second gateway on the file is refused here. PostgreSQL: fenced.
    store = open_store(config.store, fence=term.epoch if term is not None else None)
    try:
        running = await _start_on(config, policy, authority, store)
    except BaseException:
        store.close()  # releases the lock, so that a gateway that could not bind leaves the file free
        raise
    if leadership is not None and term is not None:
        running.leadership, running.term = leadership, term
        running.supervisor.spawn(leadership.keep(term), "leadership")
    return running


async def _start_on(config: GatewayConfig, policy: PolicyHolder, authority: Authority, store: Store) -> RunningGateway:
    countersigner = Countersigner.load(config.tls.key, config.tls.cert)  # settles usage receipts
    core = compose(
        store,
        policy,
        countersigner=countersigner,
        page_tokens=PageTokens.derived(authority.token_key),
        signed_record=record_from_bytes,  # listed receipts are judged by what the site signed
    )
    trust = Trust(
        store,
        authority,
        config.federation,
        core.clock,
        certificate_lifetime=config.certificate_lifetime,
        checkpoint=config.checkpoint_path,
    )
    check = config.credential_check.total_seconds()
    certificates = CertificateAuthenticator(trust)

    metrics, events = gateway_registry(core, trust)
    calls, failures = limiters(BrakeSettings())  # per source address; failures counted on both ports
    brakes = Brakes(failures, observer=lambda *call: events.call_ended("mtls", *call))
    server = grpc.aio.server(
        options=server_options(config), interceptors=[brakes, CredentialGuard(certificates, trust)]
    )
    job_service_pb2_grpc.add_JobServiceServicer_to_server(
        JobServicer(core.jobs, core.logs, certificates, trust, check, config.max_message_bytes), server
    )
    site_pb2_grpc.add_SiteServiceServicer_to_server(
        SiteServicer(core.dispatcher, certificates, trust, config.report_interval, check, config.site_lease), server
    )
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(core.admin, certificates, trust, config.max_message_bytes), server
    )
    enrollment_service_pb2_grpc.add_EnrollmentServiceServicer_to_server(EnrollmentServicer(certificates, trust), server)
    reservation_service_pb2_grpc.add_ReservationServiceServicer_to_server(
        ReservationServicer(core.reservations, certificates, trust, config.max_message_bytes), server
    )
    checks = [serve_discovery(server, SERVICE_NAMES)]
    port = bind_port(server, config.listen, server_credentials(config))

    public_server, public_port = None, 0
    if config.public_listen:
        # No client certificate here, so only what a token or a join token can authenticate is served.
        tokens = TokenAuthenticator(trust)
        public_brakes = Brakes(failures, calls, lambda *call: events.call_ended("public", *call))
        public_server = grpc.aio.server(options=server_options(config), interceptors=[public_brakes])
        job_service_pb2_grpc.add_JobServiceServicer_to_server(
            JobServicer(core.jobs, core.logs, tokens, trust, check, config.max_message_bytes), public_server
        )
        reservation_service_pb2_grpc.add_ReservationServiceServicer_to_server(
            ReservationServicer(core.reservations, tokens, trust, config.max_message_bytes), public_server
        )
        enrollment_service_pb2_grpc.add_EnrollmentServiceServicer_to_server(
            EnrollmentServicer(tokens, trust), public_server
        )
        checks.append(serve_discovery(public_server, PUBLIC_SERVICE_NAMES))  # a load balancer probes it
        public_credentials = server_credentials(config, require_client_auth=False)
        public_port = bind_port(public_server, config.public_listen, public_credentials)
        await public_server.start()
        await mark_serving(checks[1], PUBLIC_SERVICE_NAMES)

    await server.start()
    await mark_serving(checks[0], SERVICE_NAMES)
    trust.audit(
        "gateway.started",
        f"spiffe://{config.federation}/gateway",
        {"policy": policy.policy.version, "checkpoint": trust.checkpoint_state},
    )
    log.info("gateway of federation %s listening on %s (port %d)", config.federation, config.listen, port)
    if public_server is not None:
        log.info("public port (join tokens, bearer tokens) on %s (port %d)", config.public_listen, public_port)
    supervisor = Supervisor(log)
    leases = SiteLeases(
        core.registry,
        core.book,
        core.gangs,
        lease=config.site_lease,
        suspect_after=config.suspect_after,
        restart_grace=config.restart_grace,
    )
    running = RunningGateway(server, port, core, trust, supervisor, leases, public_server, public_port)
    running.health = tuple(checks)
    supervisor.spawn(core.scheduler.run(config.schedule_period.total_seconds()), "scheduler")
    running.shutdown_grace = config.shutdown_grace.total_seconds()
    supervisor.spawn(leases.run(min(1.0, config.site_lease.total_seconds() / 10)), "site lease check")
    supervisor.spawn(running.flush_refusals(DENIAL_WINDOW_S / 4), "audit coalescing")
    if config.policy_watch.total_seconds() > 0:
        supervisor.spawn(running.watch_policy(config.policy_watch.total_seconds()), "policy watcher")
    await serve_pages(running, metrics, config)
    return running


async def serve_pages(running: RunningGateway, metrics: CollectorRegistry, config: GatewayConfig) -> None:
    """Start the HTTP endpoints the config names: the metrics and the status page."""
    running.metrics = await serve_metrics(metrics, config)
    if running.metrics is not None:
        running.metrics_port = running.metrics.sockets[0].getsockname()[1]
    running.status = await serve_status(running.trust, running.core.jobs, config)
    if running.status is not None:
        running.status_port = running.status.sockets[0].getsockname()[1]
