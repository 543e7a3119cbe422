"""Trust between organisations, end to end: a centre enrols with a join token and the pinned CA fingerprint
against the real gateway's public port, its agent runs jobs with the credentials it got, and a running agent
renews its certificate over its own connection without touching the job it runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from agents.cli import main as cli
from agents.core.config import load_agent_config
from agents.identity.pinning import fingerprint_of
from agents.identity.renewal import RenewalSettings
from agents.transport.connection import run_agent
from gateway.identity.principal import Principal
from gateway.identity.revocation import Credential
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import FEDERATION, GatewayHandle, wait_for_capacity
from tests.jobs import JOB_PYTHON
from tests.waiting import eventually

POOLS = [{"class": "ascend-910b", "cards": 8, "offered": 4, "cards_per_node": 8}]


def spec(command: tuple[str, ...]) -> JobSpec:
    return JobSpec(
        tenant="deepsea-ai",
        project="llama-sft",
        resources=Resources("ascend-910b", None, 2),
        runs=(StackRun("cann", "", command),),
    )


def serial(cert: Path) -> int:
    return x509.load_pem_x509_certificate(cert.read_bytes()).serial_number


class AgentClock:
    """The running agent's clock for renewal decisions: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class RunningAgent:
    gateway: GatewayHandle
    stop_event: asyncio.Event
    task: concurrent.futures.Future[None]

    def stop(self) -> None:
        self.gateway.loop.loop.call_soon_threadsafe(self.stop_event.set)
        self.task.result(15)


@pytest.fixture
def agents() -> Iterator[list[RunningAgent]]:
    started: list[RunningAgent] = []
    yield started
    for agent in started:
        agent.stop()


def start_agent(
    gateway: GatewayHandle,
    agents: list[RunningAgent],
    site: str,
    creds: Path,
    workdir: Path,
    clock: AgentClock | None = None,
) -> RunningAgent:
    """A real agent (local backend) on `creds`, in the gateway's loop thread, with a fast renewal check."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Agent",
                "site": site,
                "gateway": gateway.address,
                "tls": {k: str(creds / f"{k}.pem") for k in ("ca", "cert", "key")},
                "backend": {"type": "local", "workdir": str(workdir / "jobs")},
                "report_interval_s": 0.5,
                "pools": POOLS,
            }
        )
    )
    config = load_agent_config(path)
    renewal = RenewalSettings(check_interval_s=0.1, retry_base_s=0.1, retry_cap_s=0.5)

    async def make_event() -> asyncio.Event:
        return asyncio.Event()

    stop = gateway.loop.run(make_event())
    coro = run_agent(config, stop, renewal=renewal, clock=clock or AgentClock())
    agent = RunningAgent(gateway, stop, asyncio.run_coroutine_threadsafe(coro, gateway.loop.loop))
    agents.append(agent)
    return agent


def enroll(gateway: GatewayHandle, site: str, token: str, fingerprint: str, out: Path, *extra: str) -> int:
    return cli.main(
        [
            "enroll", "--gateway", gateway.public_address, "--token", token, "--ca-fingerprint", fingerprint,
            "--site", site, "--out", str(out), "--timeout", "10", *extra,
        ]
    )  # fmt: skip


def test_enrolled_site_connects_with_its_new_credentials_and_runs_a_job(
    gateway: GatewayHandle, agents: list[RunningAgent], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        join = admin.create_join_token("centre-new", timedelta(minutes=10))
    creds = tmp_path / "centre-new-tls"

    assert enroll(gateway, "centre-new", join.token, join.ca_fingerprint, creds) == 0

    out = capsys.readouterr().out
    assert f"enrolled site centre-new as spiffe://{FEDERATION}/site/centre-new" in out
    assert f"tls:\n  ca: {creds / 'ca.pem'}" in out
    assert (creds / "key.pem").stat().st_mode & 0o777 == 0o600
    assert join.token not in (creds / "cert.pem").read_text()
    start_agent(gateway, agents, "centre-new", creds, tmp_path / "agent")
    wait_for_capacity(gateway, "centre-new")
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(spec(("python3", "-c", "print('hello from a new member')")))
        eventually(lambda: alice.get_job(job.job_id).state.terminal, timeout=20, what="the job to finish")
        final = alice.get_job(job.job_id)
    assert final.state == JobState.SUCCEEDED, final.reasons
    assert final.placements[0].site == "centre-new"
    kinds = [e.kind for e in gateway.running.core.store.audit_entries()]
    assert "enrolment" in kinds


def test_wrong_fingerprint_sends_nothing_and_leaves_the_token_for_a_correct_attempt(
    gateway: GatewayHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        join = admin.create_join_token("centre-pin", timedelta(minutes=10))
    wrong = str(fingerprint_of(gateway.pki.foreign.certificate))  # another federation's CA
    assert enroll(gateway, "centre-pin", join.token, wrong, tmp_path / "first") == 1
    err = capsys.readouterr().err
    assert f"did not present the CA with fingerprint {wrong}" in err
    assert "check the fingerprint the admin gave you" in err
    assert not (tmp_path / "first").exists()
    assert not [e for e in gateway.running.core.store.audit_entries() if e.kind.startswith("enrolment")]

    colons = ":".join(join.ca_fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    assert enroll(gateway, "centre-pin", join.token, f"sha256:{colons}", tmp_path / "second") == 0
    assert (tmp_path / "second" / "cert.pem").exists()

    # The token worked once; the gateway says so, with its reason.
    assert enroll(gateway, "centre-pin", join.token, join.ca_fingerprint, tmp_path / "third") == 1
    assert "reason: JOIN_TOKEN_USED" in capsys.readouterr().err
    assert not (tmp_path / "third" / "key.pem").exists()


def test_token_for_another_site_is_refused_with_its_reason(
    gateway: GatewayHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        join = admin.create_join_token("centre-x", timedelta(minutes=10))
    assert enroll(gateway, "centre-y", join.token, join.ca_fingerprint, tmp_path / "y") == 1
    assert "reason: JOIN_TOKEN_WRONG_SITE" in capsys.readouterr().err
    assert enroll(gateway, "centre-x", join.token, join.ca_fingerprint, tmp_path / "x") == 0


def count_rechecks(gateway: GatewayHandle, monkeypatch: pytest.MonkeyPatch, principal_uri: str) -> list[str]:
    """From now on, note every re-check of an open stream's credential held by `principal_uri`."""
    rechecks: list[str] = []
    check = gateway.running.trust.check

    def counting(credential: Credential) -> None:
        if credential.principal.uri == principal_uri:
            rechecks.append(credential.credential_id)
        check(credential)

    monkeypatch.setattr(gateway.running.trust, "check", counting)
    return rechecks


def test_running_agent_renews_at_two_thirds_of_its_certificates_life_and_keeps_its_job(
    gateway: GatewayHandle, agents: list[RunningAgent], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    creds = tmp_path / "centre-r-tls"
    # One hour of validity from five minutes ago: renewal is due at +35 min, which the agent's clock reaches
    # when the test says so. The gateway issues the new certificate for its default 90 days.
    gateway.pki.ca.issue(
        Principal.site(FEDERATION, "centre-r"),
        creds,
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(hours=1),
    )
    old_serial = serial(creds / "cert.pem")
    clock = AgentClock()
    marker = tmp_path / "finish"
    script = f"import pathlib, time\nwhile not pathlib.Path({str(marker)!r}).exists():\n    time.sleep(0.05)"
    agent = start_agent(gateway, agents, "centre-r", creds, tmp_path / "agent", clock)
    wait_for_capacity(gateway, "centre-r")
    site = gateway.running.core.registry.get("centre-r")
    first_connection = site.connection_id
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(spec((JOB_PYTHON, "-c", script)))
        eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, what="the job to run")
        assert serial(creds / "cert.pem") == old_serial

        clock.offset = timedelta(minutes=40)
        eventually(lambda: serial(creds / "cert.pem") != old_serial, what="the agent to renew its certificate")

        new = x509.load_pem_x509_certificate((creds / "cert.pem").read_bytes())
        assert new.not_valid_after_utc > now + timedelta(days=30)
        assert (creds / "key.pem").stat().st_mode & 0o777 == 0o600
        renewed = [e for e in gateway.running.core.store.audit_entries() if e.kind == "certificate.renewed"]
        assert renewed and renewed[-1].principal == f"spiffe://{FEDERATION}/site/centre-r"
        eventually(lambda: site.connected and site.connection_id != first_connection, what="the agent to re-dial")
        running = alice.get_job(job.job_id)
        assert (running.state, running.attempt, running.epoch) == (JobState.RUNNING, 1, 1)

        # The new stream stands on the new certificate: revoking the old one does not cut it.
        with gateway.client(gateway.pki.admin()) as admin:
            admin.revoke(serial=f"{old_serial:x}", reason="superseded by renewal")
        rechecks = count_rechecks(gateway, monkeypatch, f"spiffe://{FEDERATION}/site/centre-r")
        marker.touch()
        eventually(lambda: alice.get_job(job.job_id).state.terminal, timeout=20, what="the job to finish")
        final = alice.get_job(job.job_id)
        # The gateway re-checks the stream's credential every 0.2 s: once it has done so three times after the
        # revocation, a stream still on the old certificate would have been cut.
        eventually(lambda: len(rechecks) >= 3, what="three re-checks of centre-r's stream after the revocation")
    assert not agent.task.done(), "the agent stopped: it was still using the revoked certificate"
    assert site.connected
    assert (final.state, final.attempt, final.exit_code) == (JobState.SUCCEEDED, 1, 0)
    states = [e.state for e in gateway.running.core.store.events(job.job_id)]
    assert states == [JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING, JobState.SUCCEEDED]
