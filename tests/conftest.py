"""Shared by every test: hygiene (no test may leak environment variables it did not own), and the real
servers of the integration and security suites: certificates minted once per session, an event loop thread,
and a fresh gateway (real mTLS on loopback, port 0) per test; the real services: Slurm and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import GatewayHandle, LoopThread, Pki, make_pki, start_test_gateway
from tests.jobs import reachable
from tests.pgserver import PgServer, PostgresUnavailable, start_server
from tests.slurmcluster import ClusterUnavailable, SlurmCluster, start_cluster


@pytest.fixture(autouse=True)
def _environment_unchanged() -> Iterator[None]:
    before = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    yield
    after = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    leaked = {k for k in set(after) | set(before) if after.get(k) != before.get(k)}
    for key in leaked:
        if key in before:
            os.environ[key] = before[key]
        else:
            os.environ.pop(key, None)
    assert not leaked, f"test changed environment variables {sorted(leaked)}; use monkeypatch.setenv"


@pytest.fixture(autouse=True)
def _no_cli_config_of_the_user(
    _environment_unchanged: None, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The CLI reads a context from ~/.config/fedgate/config.yaml when flags leave a gap: never the user's here."""
    monkeypatch.setenv("FEDGATE_CONFIG", str(tmp_path_factory.mktemp("cli-config") / "config.yaml"))


@pytest.fixture(autouse=True)
def _jobs_reach_tmp_path(request: pytest.FixtureRequest) -> None:
    """Local-backend jobs run as `nobody` when the tests run as root: let that user traverse (not list) a
    test's tmp_path, where its agent's workdir is; what a job must not see stays in folders of mode 0700."""
    if "tmp_path" in request.fixturenames and os.geteuid() == 0:
        reachable(request.getfixturevalue("tmp_path"))


def require_service(name: str, problem: str) -> None:
    """Skip a service-backed test when `name` is missing here; fail instead under FEDGATE_REQUIRE_SERVICES=1
    (as .ci/run sets), so that CI can never pass by skipping what it was meant to test."""
    message = f"{name} is not available: {problem}"
    if os.environ.get("FEDGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (FEDGATE_REQUIRE_SERVICES=1: .ci/run must install and start it)")
    pytest.skip(message)


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


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A real Slurm of two nodes (munged, slurmctld, one slurmd per node) for the whole session; every daemon
    is stopped at the end. Skips where Slurm is not installed, fails there under FEDGATE_REQUIRE_SERVICES=1."""
    try:
        cluster = start_cluster()
    except ClusterUnavailable as exc:
        require_service("Slurm", str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL (initdb into a temp dir, pg_ctl on a free loopback port) for the whole session,
    stopped and removed at the end. Skips where it is not installed, fails there under
    FEDGATE_REQUIRE_SERVICES=1."""
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        require_service("PostgreSQL", str(exc))
    yield server
    server.destroy()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's PostgreSQL, dropped after the test."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
