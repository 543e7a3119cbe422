"""Fixtures for the security tests: the shared pki / loop / gateway of tests/conftest.py, and an admin client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.transport.client import FederationClient
from tests.integration.harness import GatewayHandle


@pytest.fixture
def admin(gateway: GatewayHandle) -> Iterator[FederationClient]:
    with gateway.client(gateway.pki.admin()) as client:
        yield client
