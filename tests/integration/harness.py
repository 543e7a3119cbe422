"""Real servers for integration tests: a gateway (and agents) on port 0 with real mTLS, each in an event loop
of its own thread, so that tests can use the same synchronous client library a user would."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from gateway.app.config import REPO_POLICIES, load_gateway_config
from gateway.identity.ca import CertificateAuthority, init_ca
from gateway.identity.principal import Principal
from gateway.transport.client import FederationClient
from gateway.transport.server import RunningGateway, start_gateway
from gateway.trust.credentials import Credentials
from tests.jobs import reachable
from tests.waiting import eventually

T = TypeVar("T")
FEDERATION = "itest"


class LoopThread:
    """An asyncio loop running in a daemon thread; `run` executes a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Pki:
    root: Path
    ca: CertificateAuthority
    foreign: CertificateAuthority

    def creds(self, principal: Principal, name: str) -> Path:
        out = self.root / "issued" / name
        if not (out / "cert.pem").exists():
            self.ca.issue(principal, out)
        return out

    def site(self, name: str) -> Path:
        return self.creds(Principal.site(FEDERATION, name), f"site-{name}")

    def user(self, tenant: str, name: str) -> Path:
        return self.creds(Principal.user(FEDERATION, tenant, name), f"user-{tenant}-{name}")

    def admin(self) -> Path:
        return self.creds(Principal.admin(FEDERATION, "root"), "admin")


def make_pki(root: Path) -> Pki:
    ca = init_ca(root / "ca", FEDERATION)
    ca.issue_server(root / "gateway")
    foreign = init_ca(root / "foreign-ca", FEDERATION)
    return Pki(root, ca, foreign)


@dataclass
class GatewayHandle:
    loop: LoopThread
    running: RunningGateway
    pki: Pki

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    @property
    def public_address(self) -> str:
        """The public port: TLS without client certificates (join-token enrolment, bearer tokens)."""
        return f"127.0.0.1:{self.running.public_port}"

    def token_client(self, token: str) -> FederationClient:
        ca = (self.pki.root / "ca" / "ca.pem").read_bytes()
        return FederationClient(self.public_address, token=token, ca_pem=ca, timeout=10)

    def client(self, creds_dir: Path) -> FederationClient:
        return FederationClient(self.address, Credentials.from_dir(creds_dir), timeout=10)

    def stop(self) -> None:
        self.loop.run(self.running.stop(0.5))


def start_test_gateway(
    pki: Pki, workdir: Path, loop: LoopThread, port: int = 0, store: str = "", extra: dict[str, object] | None = None
) -> GatewayHandle:
    """A gateway on `port` (0: any free one) over the store in `workdir` (or the `store` URL given); a restart
    reuses both. `extra`: more config keys (e.g. a short `site_lease_s`)."""
    running = loop.run(
        start_gateway(load_gateway_config(write_gateway_config(pki, workdir, port, store, **(extra or {}))))
    )
    return GatewayHandle(loop, running, pki)


def write_gateway_config(pki: Pki, workdir: Path, port: int = 0, store: str = "", **extra: object) -> Path:
    """The test gateway's config file in `workdir` (listening on `port`, its store in `workdir` unless a
    `store` URL is given)."""
    config_path = workdir / "gateway.yaml"
    gateway_dir = pki.root / "gateway"
    config_path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Gateway",
                "federation": FEDERATION,
                "listen": f"127.0.0.1:{port}",
                "tls": {k: str(gateway_dir / f"{k}.pem") for k in ("ca", "cert", "key")},
                "store": store or f"sqlite:///{workdir / 'gateway.db'}",
                "policy": str(REPO_POLICIES / "federation.yaml"),
                "authority": str(pki.root / "ca"),
                "audit_checkpoint": str(workdir / "audit-checkpoint.json"),  # the CA is shared, each store not
                "public_listen": "127.0.0.1:0",
                "credential_check_s": 0.2,
                "metrics_listen": "127.0.0.1:0",
                "report_interval_s": 0.5,
                "schedule_period_s": 0.2,
                **extra,
            }
        )
    )
    return config_path


@dataclass
class AgentHandle:
    loop: LoopThread
    stop_event: asyncio.Event
    task: concurrent.futures.Future[None]
    workdir: Path

    def stop(self, timeout: float = 15) -> None:
        self.loop.loop.call_soon_threadsafe(self.stop_event.set)
        self.task.result(timeout)


def start_test_agent(
    gateway: GatewayHandle, site: str, pools: list[dict[str, object]], workdir: Path, **extra: object
) -> AgentHandle:
    """Run a real site agent (local backend, real processes) in the gateway's loop thread."""
    from agents.core.config import load_agent_config
    from agents.transport.connection import run_agent

    creds = gateway.pki.site(site)
    reachable(workdir)  # its jobs run as `nobody` when the tests run as root
    config_path = workdir / "agent.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Agent",
                "site": site,
                "gateway": gateway.address,
                "tls": {k: str(creds / f"{k}.pem") for k in ("ca", "cert", "key")},
                "backend": {"type": "local", "workdir": str(workdir / "jobs")},
                "report_interval_s": 0.5,
                "pools": pools,
                **extra,
            }
        )
    )
    config = load_agent_config(config_path)

    async def make_event() -> asyncio.Event:
        return asyncio.Event()

    stop_event = gateway.loop.run(make_event())
    task = asyncio.run_coroutine_threadsafe(run_agent(config, stop_event), gateway.loop.loop)
    return AgentHandle(gateway.loop, stop_event, task, workdir)


def wait_for_capacity(gateway: GatewayHandle, site: str) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        eventually(
            lambda: any(s.name == site and s.pools for s in admin.list_sites()), what=f"{site}'s capacity report"
        )


class Dialable(Protocol):
    """What an agent needs of a gateway: the test PKI and the address to dial (a `GatewayHandle`, a gateway
    process of the chaos fleet, or a proxy in front of either)."""

    @property
    def pki(self) -> Pki: ...

    @property
    def address(self) -> str: ...


class AgentProcess:
    """One site agent as its own `fedgate agent run` process on the `local` backend, which a test may start,
    signal (SIGSTOP, SIGCONT) and kill with -9, then start again on the same state and jobs folders."""

    def __init__(
        self, gateway: Dialable, root: Path, site: str, pools: list[dict[str, Any]], report_interval_s: float
    ) -> None:
        creds = gateway.pki.site(site)
        self.site = site
        self.jobs = root / "jobs"
        self.config = root / "agent.yaml"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "fedgate.io/v1",
                    "kind": "Agent",
                    "site": site,
                    # Several gateways on one store: "a,b" in the address, a list in the agent's config.
                    "gateway": gateway.address.split(",") if "," in gateway.address else gateway.address,
                    "tls": {k: str(creds / f"{k}.pem") for k in ("ca", "cert", "key")},
                    "backend": {"type": "local", "workdir": str(self.jobs)},
                    "state_dir": str(root / "state"),
                    "report_interval_s": report_interval_s,
                    "cancel_grace_s": 1,
                    "pools": pools,
                }
            )
        )
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fedgate.cli", "agent", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
