"""Chaos tests share the session's PKI (tests/conftest.py) and get a fleet of gateway processes on a SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.fleet import GatewayFleet
from tests.integration.harness import Pki


@pytest.fixture
def fleet(pki: Pki, tmp_path: Path) -> Iterator[GatewayFleet]:
    made = GatewayFleet(pki, tmp_path / "fleet", f"sqlite:///{tmp_path / 'gateway.db'}")
    yield made
    made.close()
