"""Certificate renewal: when it is due, how the files are replaced, and the running agent renewing over its own
connection (a fake gateway on a real mTLS server) without touching its jobs."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agents.core.commands import Launch
from agents.core.config import AgentConfig, load_agent_config
from agents.errors import GatewayRefused
from agents.identity.credentials import CredentialFiles, install_credentials, write_atomically
from agents.identity.renewal import RenewalSettings, renewal_due, renewal_time, seconds_until_renewal
from fedgate.v1 import job_pb2
from tests.jobs import JOB_PYTHON, shared_folder
from tests.waiting import eventually_async

from .conftest import POOLS_YAML, running_agent
from .fake_gateway import FakeEnrollment, FakeGateway, FakeStream, Refusal, start_fake_gateway
from .gateway_wire import launch_message
from .pki import MintedPki, site_certificate

FAST = RenewalSettings(check_interval_s=0.05, retry_base_s=0.05, retry_cap_s=0.2, rpc_timeout_s=5)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- when -----------------------------------------------------------------------------------------------------


def certificate_valid(start: datetime, end: datetime, pki: MintedPki, folder: Path) -> x509.Certificate:
    _, cert, _ = site_certificate(pki, folder, not_before=start, not_after=end)
    return x509.load_pem_x509_certificate(cert.read_bytes())


def test_renewal_is_due_at_two_thirds_of_the_certificates_life(pki: MintedPki, tmp_path: Path) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    cert = certificate_valid(start, start + timedelta(days=90), pki, tmp_path)
    assert renewal_time(start, start + timedelta(days=90)) == start + timedelta(days=60)
    assert not renewal_due(cert, start)
    assert not renewal_due(cert, start + timedelta(days=60) - timedelta(seconds=1))
    assert renewal_due(cert, start + timedelta(days=60))
    assert renewal_due(cert, start + timedelta(days=91))  # already expired: still "due", never "fine"
    assert seconds_until_renewal(cert, start + timedelta(days=59)) == 86_400
    assert seconds_until_renewal(cert, start + timedelta(days=70)) == 0


# ---- how the files are replaced --------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> CredentialFiles:
    folder = tmp_path / "tls"
    folder.mkdir()
    creds = CredentialFiles(key=folder / "key.pem", cert=folder / "cert.pem", ca=folder / "ca.pem")
    for path, data, perm in (
        (creds.key, b"old key", 0o600),
        (creds.cert, b"old cert", 0o640),
        (creds.ca, b"old ca", 0o644),
    ):
        path.write_bytes(data)
        path.chmod(perm)
    return creds


def test_replacing_credentials_keeps_the_key_at_0600_and_the_others_modes(files: CredentialFiles) -> None:
    files.key.chmod(0o644)  # even a key an operator left readable comes back private
    install_credentials(files, b"new key", b"new cert", b"new ca")
    assert (files.key.read_bytes(), files.cert.read_bytes(), files.ca.read_bytes()) == (
        b"new key",
        b"new cert",
        b"new ca",
    )
    assert (mode(files.key), mode(files.cert), mode(files.ca)) == (0o600, 0o640, 0o644)
    assert sorted(p.name for p in files.key.parent.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]


def test_replacement_is_a_rename_so_an_open_reader_keeps_the_old_file(files: CredentialFiles) -> None:
    with files.key.open("rb") as reader:
        before = os.fstat(reader.fileno()).st_ino
        write_atomically(files.key, b"new key", 0o600)
        assert reader.read() == b"old key"
    assert files.key.stat().st_ino != before and files.key.read_bytes() == b"new key"


def test_a_replacement_that_cannot_be_staged_changes_nothing(files: CredentialFiles, tmp_path: Path) -> None:
    broken = CredentialFiles(key=files.key, cert=files.cert, ca=tmp_path / "missing-dir" / "ca.pem")
    with pytest.raises(FileNotFoundError):
        install_credentials(broken, b"new key", b"new cert", b"new ca")
    assert (files.key.read_bytes(), files.cert.read_bytes()) == (b"old key", b"old cert")
    assert sorted(p.name for p in files.key.parent.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]


# ---- the running agent -----------------------------------------------------------------------------------------


class FakeClock:
    """Aware UTC time that a test moves forward; the agent's renewal reads it, nothing else does, once per check:
    `reads` counts the checks."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return datetime.now(UTC) + self.offset

    async def checks(self, more: int) -> None:
        """Wait until the renewal loop has looked at the time `more` more times."""
        target = self.reads + more
        await eventually_async(lambda: self.reads >= target, what=f"{more} more renewal checks")


@dataclass
class Site:
    fake: FakeGateway
    enrollment: FakeEnrollment
    config: AgentConfig
    clock: FakeClock

    @property
    def tls(self) -> CredentialFiles:
        return CredentialFiles(key=self.config.tls.key, cert=self.config.tls.cert, ca=self.config.tls.ca)


@pytest.fixture
async def site(pki: MintedPki, tmp_path: Path) -> AsyncIterator[Site]:
    """A fake gateway with RenewCertificate, and an agent config whose certificate (valid one day from five
    minutes ago) lives in tmp_path, where the agent may replace it."""
    fake, enrollment = FakeGateway(), FakeEnrollment(pki)
    server, port = await start_fake_gateway(fake, pki, enrollment=enrollment)
    now = datetime.now(UTC)
    ca, cert, key = site_certificate(
        pki, tmp_path / "tls", not_before=now - timedelta(minutes=5), not_after=now + timedelta(days=1)
    )
    path = tmp_path / "agent.yaml"
    path.write_text(
        "apiVersion: fedgate.io/v1\nkind: Agent\nsite: centre-a\n"
        f"gateway: 127.0.0.1:{port}\n"
        f"tls: {{ca: {ca}, cert: {cert}, key: {key}}}\n"
        "backend: {type: local, workdir: ./work}\nreport_interval_s: 0.2\ncancel_grace_s: 0.5\n" + POOLS_YAML
    )
    yield Site(fake, enrollment, load_agent_config(path), FakeClock())
    await server.stop(grace=None)


def launch_waiting_for(marker: Path) -> Launch:
    script = f"import pathlib, time\nwhile not pathlib.Path({str(marker)!r}).exists():\n    time.sleep(0.02)"
    return Launch("j1", 1, 1, "nvidia-h100", cards=2, command=(JOB_PYTHON, "-c", script), stack="cuda")


def snapshot(files: CredentialFiles) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (files.key, files.cert, files.ca)}


async def test_agent_renews_at_two_thirds_over_its_connection_and_keeps_its_job_running(
    site: Site, tmp_path: Path
) -> None:
    marker = shared_folder(tmp_path / "shared") / "finish"  # the job runs as nobody: it may read it there
    old = snapshot(site.tls)
    async with running_agent(site.config, renewal=FAST, clock=site.clock):
        first = await site.fake.next_stream()
        first.send(launch=launch_message(launch_waiting_for(marker)))
        running = await first.update(job_pb2.JOB_STATE_RUNNING)
        await site.clock.checks(3)  # not due yet
        assert site.enrollment.renew_requests == []

        site.clock.offset = timedelta(hours=17)  # past 2/3 of the 24 h 5 min validity
        second = await site.fake.next_stream()

        [request] = site.enrollment.renew_requests
        assert site.enrollment.renew_peers == [old["cert.pem"]]  # asked with the certificate in use
        assert "CN=centre-a" in x509.load_pem_x509_csr(request.csr_pem.encode()).subject.rfc4514_string()
        new = snapshot(site.tls)
        assert new["key.pem"] != old["key.pem"] and new["cert.pem"] != old["cert.pem"]
        assert mode(site.tls.key) == 0o600
        key = serialization.load_pem_private_key(new["key.pem"], password=None)
        assert x509.load_pem_x509_certificate(new["cert.pem"]).public_key() == key.public_key()

        # The job was not touched: the new stream reports it running in Hello, then it finishes on its own.
        assert [(r.job_id, r.epoch) for r in second.hello.running] == [("j1", 1)]
        marker.touch()
        done = await second.update(job_pb2.JOB_STATE_SUCCEEDED)
        assert (done.job_id, done.epoch, done.exit_code) == ("j1", 1, 0)
        assert done.sequence > running.sequence
        await site.clock.checks(3)
        assert len(site.enrollment.renew_requests) == 1, "the renewed certificate is not due again"


async def test_certificate_already_due_is_renewed_right_after_connecting(site: Site) -> None:
    site.clock.offset = timedelta(hours=20)
    # The default 30 s check interval: only the check on connect can make this renewal happen in time.
    async with running_agent(site.config, clock=site.clock):
        await site.fake.next_stream()
        second = await site.fake.next_stream()
        assert second.hello.site == "centre-a" and len(site.enrollment.renew_requests) == 1


async def test_failed_renewal_keeps_the_working_credentials_and_retries(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    old = snapshot(site.tls)
    site.enrollment.refuse = Refusal(grpc.StatusCode.UNAVAILABLE, "signer is down", "SIGNER_DOWN")
    caplog.set_level(logging.WARNING, logger="agents")
    async with running_agent(site.config, renewal=FAST, clock=site.clock):
        stream = await site.fake.next_stream()
        site.clock.offset = timedelta(hours=17)
        await eventually_async(lambda: len(site.enrollment.renew_requests) >= 3, what="the agent to retry the renewal")
        assert snapshot(site.tls) == old
        assert "certificate renewal failed" in caplog.text and "signer is down" in caplog.text
        assert site.fake.streams.empty(), "a failed renewal must not cost the stream"
        await stream.next("capacity")  # still talking on the same stream

        site.enrollment.refuse = None
        await site.fake.next_stream()
        assert snapshot(site.tls)["cert.pem"] != old["cert.pem"]


async def test_revoked_certificate_cut_by_the_gateway_stops_the_agent_for_good(site: Site) -> None:
    async with running_agent(site.config, renewal=FAST, clock=site.clock) as agent:
        stream = await site.fake.next_stream()
        stream.abort(grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")
        with pytest.raises(GatewayRefused) as caught:
            await asyncio.wait_for(agent.task, 5)
    assert caught.value.code == "UNAUTHENTICATED" and "certificate revoked" in caught.value.message
    assert len(site.fake.hellos) == 1


async def test_operator_replaced_files_are_used_on_the_next_reconnect(
    site: Site, pki: MintedPki, tmp_path: Path
) -> None:
    async with running_agent(site.config, renewal=FAST, clock=site.clock):
        first: FakeStream = await site.fake.next_stream()
        now = datetime.now(UTC)
        _, cert, _ = site_certificate(
            pki, tmp_path / "tls", not_before=now - timedelta(minutes=1), not_after=now + timedelta(days=2)
        )
        first.end()
        await site.fake.next_stream()
    assert site.fake.peers[-1] == cert.read_bytes() != site.fake.peers[0]
    assert site.enrollment.renew_requests == []
