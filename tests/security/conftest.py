"""Fixtures for the security tests: certificates minted once per session, a fresh gateway (real mTLS on
loopback, port 0) per test, and an admin client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.transport.client import FederationClient
from tests.integration.harness import GatewayHandle, LoopThread, Pki, make_pki, start_test_gateway


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def gateway(pki: Pki, loop: LoopThread, tmp_path: Path) -> Iterator[GatewayHandle]:
    handle = start_test_gateway(pki, tmp_path, loop)
    yield handle
    handle.stop()


@pytest.fixture
def admin(gateway: GatewayHandle) -> Iterator[FederationClient]:
    with gateway.client(gateway.pki.admin()) as client:
        yield client
