"""Fixtures for the agent's unit tests: minted certificates, agent configs, a fake gateway on port 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agents.backends.base import Backend, BackendSettings
from agents.backends.local import LocalBackend
from agents.core.config import AgentConfig, load_agent_config
from agents.transport.backoff import Backoff
from agents.transport.connection import run_agent

from .fake_gateway import FakeGateway, start_fake_gateway
from .pki import MintedPki, make_pki

POOLS_YAML = """\
pools:
  - {class: nvidia-h100, cards: 8, offered: 4, cards_per_node: 8, interconnect: nvlink, stack: cuda,
     labels: {zone: a}}
  - {class: ascend-910b, cards: 4, offered: 4, cards_per_node: 4, interconnect: hccs}
"""


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> MintedPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def agent_yaml(pki: MintedPki, *, gateway: str = "127.0.0.1:7443", extra: str = "") -> str:
    return (
        "apiVersion: fedgate.io/v1\n"
        "kind: Agent\n"
        "site: centre-a\n"
        f"gateway: {gateway}\n"
        f"tls: {{ca: {pki.ca}, cert: {pki.site_cert}, key: {pki.site_key}}}\n"
        "backend: {type: local, workdir: ./work}\n"
        "report_interval_s: 0.2\n"
        "cancel_grace_s: 0.5\n" + extra + POOLS_YAML
    )


@pytest.fixture
def make_config(pki: MintedPki, tmp_path: Path) -> Callable[..., AgentConfig]:
    """Write an agent YAML into tmp_path and load it with the real loader."""

    def make(*, gateway: str = "127.0.0.1:7443", extra: str = "") -> AgentConfig:
        path = tmp_path / "agent.yaml"
        path.write_text(agent_yaml(pki, gateway=gateway, extra=extra))
        return load_agent_config(path)

    return make


@dataclass
class GatewayUnderTest:
    fake: FakeGateway
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def gateway(pki: MintedPki) -> AsyncIterator[GatewayUnderTest]:
    fake = FakeGateway()
    server, port = await start_fake_gateway(fake, pki)
    yield GatewayUnderTest(fake, port)
    await server.stop(grace=None)


@dataclass
class RunningAgent:
    task: asyncio.Task[None]
    stop: asyncio.Event

    async def stopped(self, wait_s: float = 10.0) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, wait_s)


@contextlib.asynccontextmanager
async def running_agent(
    config: AgentConfig, backend: Backend | None = None, **options: Any
) -> AsyncIterator[RunningAgent]:
    """Run `run_agent` in the background with a fast backoff; always stop it, bounded, on the way out.
    `options` go to run_agent (e.g. renewal=, clock=)."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_agent(config, stop, backend=backend, backoff=Backoff(base_s=0.05, cap_s=0.2), **options)
    )
    agent = RunningAgent(task, stop)
    try:
        yield agent
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), 10.0)
        task.cancel()


def backend_in(workdir: Path) -> LocalBackend:
    return LocalBackend(BackendSettings(type="local", workdir=workdir))


@pytest.fixture
def groups() -> Iterator[list[int]]:
    """Process groups a test started; whatever of them is left is killed afterwards."""
    started: list[int] = []
    yield started
    for group in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
