"""One gateway process among several on a shared PostgreSQL store: stand by, lead when elected, step down when
the lease is lost, and do it again, until stopped.

Owns: the roles of the process over time and their order. It binds the addresses once as a standby (so a
port 0 is fixed for the life of the process and its advertised address is known before it campaigns),
campaigns (`gateway.app.leadership`), and on winning stops the standby servers and starts the whole gateway
on the same addresses with the store fenced at the won epoch (`start_gateway`): the core is built from the
store as after a restart, so running jobs are re-attached when their agents dial in, and every site has the
whole restart grace. When the lease is lost the gateway stops (streams ended with a reason, the store closed)
and the process stands by again. SIGTERM stops either role; a leader hands its lease over as it goes.
Also `serve_until_stopped`, which both the single gateway and the replicas use.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Callable

from gateway.app.compose import utc_now
from gateway.app.config import GatewayConfig
from gateway.app.leadership import Leadership, LeadershipLost
from gateway.errors import Unavailable
from gateway.identity.authority import Authority
from gateway.policy import load_catalogue
from gateway.policy.holder import PolicyHolder
from gateway.store import STANDBY, Store, open_leader_lease, open_store
from gateway.transport.server import RunningGateway, start_gateway
from gateway.transport.standby import start_standby
from gateway.trust.service import Trust

log = logging.getLogger("fedgate.gateway")

Ready = Callable[[int, int], None]
"""Called once the process listens, with its main and public ports (0: no public port)."""


def shares_store(config: GatewayConfig) -> bool:
    """Whether this gateway's store can be shared by several gateways (then they elect a leader)."""
    return config.store.startswith(("postgresql://", "postgres://"))


async def serve_until_stopped(running: RunningGateway, stop: asyncio.Event) -> int:
    """Wait for `stop` (a signal) or for a supervised task to die; stop the gateway either way. Returns the
    exit code: 0 on `stop`, 1 on a dead task (a lost lease included: the caller may stand by instead)."""
    stopped = asyncio.create_task(stop.wait(), name="signal")
    failed = asyncio.create_task(running.wait_failure(), name="failure")
    try:
        await asyncio.wait((stopped, failed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, failed):
            task.cancel()
    failure = running.supervisor.failure
    await running.stop(running.shutdown_grace)
    if failure is not None:
        if isinstance(failure.error, LeadershipLost):
            log.warning("stepped down: %s", failure.error)
        else:
            log.critical("the gateway stops with exit code 1: %s", failure.describe())
        return 1
    return 0


async def serve_replica(config: GatewayConfig, stop: asyncio.Event, ready: Ready) -> int:
    """Run as one of the gateways on `config.store` until `stop`; returns the exit code (0 after `stop`)."""
    catalogue = load_catalogue(config.catalogue)
    authority = Authority.load(config.authority, config.tls.ca)
    store = open_store(config.store, fence=STANDBY)  # migrates the schema before the lease is read
    lease = open_leader_lease(config.store)
    assert lease is not None, "serve_replica needs a store that can be shared"
    leadership = Leadership(lease, config.advertise, config.leader_lease)
    first = True
    leading: list[RunningGateway] = []  # the gateway while this process leads
    _reload_on_sighup(leading)
    try:
        while True:
            policy = PolicyHolder(config.policy, catalogue, utc_now())
            trust = _standby_trust(config, store, authority)
            standby, port, public_port = await start_standby(config, store, policy, trust, leadership)
            announce = first
            if first:
                first = False
                config = _bound(config, port, public_port)  # the same ports in every role from now on
                leadership.address = config.advertise or config.listen
                # One look before saying "ready": a gateway that leads at once is announced once it leads, so
                # its callers never meet the moment its ports close to change roles.
                term = await leadership.try_acquire()
                if term is None:
                    ready(port, public_port)
                    announce = False
                    log.info("gateway process %s on %s, standing by", leadership.holder, leadership.address)
            else:
                term = None
            if term is None:
                term = await leadership.campaign(stop)
            await standby.stop()
            if term is None:
                return 0
            running = await start_gateway(config, leadership=leadership, term=term)
            if announce:
                ready(running.port, running.public_port)
            leading.append(running)
            try:
                code = await serve_until_stopped(running, stop)
            finally:
                leading.clear()
            failure = running.supervisor.failure
            if stop.is_set() or failure is None or not isinstance(failure.error, LeadershipLost):
                return code
            reopened = await _reopen(config.store, stop)
            if reopened is None:
                return 0
            store = reopened
    finally:
        leadership.close()


def _reload_on_sighup(leading: list[RunningGateway]) -> None:
    """SIGHUP: the leader reloads its policy; a standby reads the file when it comes to lead."""

    def reload_policy() -> None:
        for running in leading:
            running.reload_policy("SIGHUP")

    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_policy)


def _standby_trust(config: GatewayConfig, store: Store, authority: Authority) -> Trust:
    """The trust service of a standby: it authenticates callers; its store is fenced, so it records nothing."""
    return Trust(
        store,
        authority,
        config.federation,
        utc_now,
        certificate_lifetime=config.certificate_lifetime,
        checkpoint=config.checkpoint_path,
    )


async def _reopen(url: str, stop: asyncio.Event) -> Store | None:
    """The standby's store again after stepping down; the database may be the reason (cut off), so keep trying
    every second until it answers or `stop` is set (None)."""
    while not stop.is_set():
        try:
            return await asyncio.to_thread(open_store, url, fence=STANDBY)
        except Unavailable as exc:
            log.warning("standing by needs the store: %s; trying again", exc.message)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await stop.wait()
    return None


def _bound(config: GatewayConfig, port: int, public_port: int) -> GatewayConfig:
    listen = f"{config.listen.rsplit(':', 1)[0]}:{port}"
    public = f"{config.public_listen.rsplit(':', 1)[0]}:{public_port}" if config.public_listen else ""
    return dataclasses.replace(config, listen=listen, public_listen=public)
