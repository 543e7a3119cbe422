"""A CA rollover without downtime, phase by phase as docs/security.md ("CA rollover") describes it:

A. trust first: the gateway trusts a bundle of the old and the new CA but still signs and serves with the old
   one; every renewal and enrolment hands out the bundle, so clients come to trust the new CA;
B. switch: the gateway signs with the new CA (its token and audit keys carried over) and serves a new-CA
   certificate; certificates of both CAs work, and every renewal moves a client to the new CA;
C. end: restarted with only the new CA in its bundle, the gateway refuses what the old CA issued.
The store and the audit chain survive every restart, and the CA fingerprint a join token comes with is always
the CA of the certificate the gateway serves (what `fedgate agent enroll` pins)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.exceptions import InvalidSignature

from gateway.app.config import REPO_POLICIES, load_gateway_config
from gateway.errors import ConfigError
from gateway.identity.authority import AUDIT_KEY, TOKEN_KEY, Authority, ca_fingerprint
from gateway.identity.ca import CertificateAuthority, init_ca
from gateway.identity.principal import Principal, load_certificate
from gateway.store import open_store
from gateway.transport.client import FederationClient
from gateway.transport.server import RunningGateway, start_gateway
from gateway.trust.credentials import Credentials
from gateway.trust.service import verify_audit_store
from tests.integration.harness import FEDERATION, LoopThread, Pki
from tests.security.support import ALICE, BOB, CALL_TIMEOUT_S, assert_refused, spec_for


@dataclass
class Rollover:
    """The old CA (the session's) and a new CA of the same federation, and gateways on one store."""

    root: Path
    loop: LoopThread
    old: CertificateAuthority
    new: CertificateAuthority
    bundle: Path  # old + new: what the gateway and the clients trust during the overlap
    old_server: Path  # the gateway's serving credentials from the old CA
    new_server: Path  # ... and from the new one

    def start(self, trusted: Path, authority: CertificateAuthority, server: Path) -> RunningGateway:
        return start(self.loop, self.root, trusted, authority, server)

    def stop(self, running: RunningGateway) -> None:
        self.loop.run(running.stop(0.5))

    def audit_intact(self) -> bool:
        store = open_store(f"sqlite:///{self.root / 'gateway.db'}")
        try:
            authority = Authority.load(self.new.directory, self.new.directory / "ca.pem")
            verdict = verify_audit_store(store, authority)
        finally:
            store.close()
        assert verdict.intact, verdict.problem
        return verdict.entries > 0


def start(loop: LoopThread, root: Path, trusted: Path, authority: CertificateAuthority, server: Path) -> RunningGateway:
    """A gateway trusting the CAs in `trusted`, signing with `authority`, serving `server`'s certificate, on
    the store in `root` (the same store across restarts)."""
    config = root / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Gateway",
                "federation": FEDERATION,
                "listen": "127.0.0.1:0",
                "tls": {"ca": str(trusted), "cert": str(server / "cert.pem"), "key": str(server / "key.pem")},
                "store": f"sqlite:///{root / 'gateway.db'}",
                "policy": str(REPO_POLICIES / "federation.yaml"),
                "authority": str(authority.directory),
                "audit_checkpoint": str(root / "audit-checkpoint.json"),  # kept across the CA change
                "credential_check_s": 0.2,
            }
        )
    )
    return loop.run(start_gateway(load_gateway_config(config)))


def client(running: RunningGateway, creds_dir: Path, ca_pem: bytes) -> FederationClient:
    """A client with this directory's certificate and key, trusting `ca_pem` (files taken as they are)."""
    creds = Credentials(ca_pem, (creds_dir / "cert.pem").read_bytes(), (creds_dir / "key.pem").read_bytes())
    return FederationClient(f"127.0.0.1:{running.port}", creds, timeout=CALL_TIMEOUT_S)


def copy_creds(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def signed_by(creds_dir: Path, ca: CertificateAuthority) -> bool:
    try:
        load_certificate((creds_dir / "cert.pem").read_bytes()).verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@pytest.fixture
def rollover(pki: Pki, loop: LoopThread, tmp_path: Path) -> Iterator[Rollover]:
    # Before the rollover: a gateway of the old CA has been running (and made its token and audit keys).
    running = start(loop, tmp_path, pki.ca.directory / "ca.pem", pki.ca, pki.root / "gateway")
    loop.run(running.stop(0.5))
    # The procedure, steps 1-3: a new CA, the old token and audit keys carried over, the bundle.
    new = init_ca(tmp_path / "new-ca", FEDERATION)
    for name in (TOKEN_KEY, AUDIT_KEY):
        shutil.copy2(pki.ca.directory / name, new.directory / name)
    bundle = tmp_path / "trust-bundle.pem"
    bundle.write_bytes(pki.ca.cert_pem + new.cert_pem)
    new_server = new.issue_server(tmp_path / "new-server")
    yield Rollover(tmp_path, loop, pki.ca, new, bundle, pki.root / "gateway", new_server)


def test_overlap_begins_by_handing_every_client_the_bundle(rollover: Rollover, pki: Pki, tmp_path: Path) -> None:
    running = rollover.start(rollover.bundle, rollover.old, rollover.old_server)  # phase A
    try:
        alice = copy_creds(pki.user(*ALICE), tmp_path / "alice")  # trusts only the old CA
        with client(running, alice, pki.ca.cert_pem) as old_client:
            job = old_client.create_job(spec_for())
            old_client.renew_certificate(alice)
        assert signed_by(alice, rollover.old)  # still the old CA signs
        assert (alice / "ca.pem").read_bytes() == rollover.bundle.read_bytes()  # but now it trusts both
        assert Credentials.from_dir(alice).ca_pem == rollover.bundle.read_bytes()
        with client(running, alice, (alice / "ca.pem").read_bytes()) as renewed:
            assert [j.job_id for j in renewed.list_jobs()] == [job.job_id]
        with client(running, pki.admin(), pki.ca.cert_pem) as admin:
            assert admin.create_join_token("centre-n").ca_fingerprint == ca_fingerprint(rollover.old.certificate)
    finally:
        rollover.stop(running)


def test_old_and_new_ca_certificates_both_work_during_the_overlap(rollover: Rollover, pki: Pki, tmp_path: Path) -> None:
    trusted = rollover.bundle.read_bytes()
    alice = copy_creds(pki.user(*ALICE), tmp_path / "alice")
    (alice / "ca.pem").write_bytes(trusted)  # as phase A left it
    new_user = rollover.new.issue(Principal.user(FEDERATION, *BOB), tmp_path / "bob")
    running = rollover.start(rollover.bundle, rollover.new, rollover.new_server)  # phase B
    try:
        with client(running, alice, trusted) as old_cert, client(running, new_user, trusted) as new_cert:
            job = old_cert.create_job(spec_for())
            assert [j.job_id for j in old_cert.list_jobs()] == [job.job_id]
            assert new_cert.list_jobs() == []
            old_cert.renew_certificate(alice)  # a renewal moves the holder to the new CA
        assert signed_by(alice, rollover.new)
        with client(running, alice, trusted) as renewed:
            assert [j.job_id for j in renewed.list_jobs()] == [job.job_id]
        with client(running, pki.admin(), trusted) as admin:
            assert [j.job_id for j in admin.list_jobs()] == [job.job_id]
            assert admin.create_join_token("centre-n").ca_fingerprint == ca_fingerprint(rollover.new.certificate)
        # Why phase A comes first: a client that trusts only the old CA cannot verify a new-CA gateway.
        with client(running, pki.user(*ALICE), pki.ca.cert_pem) as stale:
            assert_refused(stale.list_jobs, "UNAVAILABLE")
    finally:
        rollover.stop(running)


def test_after_the_overlap_the_old_ca_is_refused(rollover: Rollover, pki: Pki, tmp_path: Path) -> None:
    trusted, new_only = rollover.bundle.read_bytes(), rollover.new.directory / "ca.pem"
    for authority, server in ((rollover.old, rollover.old_server), (rollover.new, rollover.new_server)):
        running = rollover.start(rollover.bundle, authority, server)  # phases A and B, on one store
        try:
            with client(running, pki.user(*ALICE), trusted) as alice:
                job = alice.create_job(spec_for())
        finally:
            rollover.stop(running)
    running = rollover.start(new_only, rollover.new, rollover.new_server)  # phase C
    try:
        with client(running, pki.user(*ALICE), trusted) as alice:
            assert_refused(alice.list_jobs, "UNAVAILABLE")  # the TLS handshake no longer accepts the old CA
        with client(running, pki.admin(), trusted) as old_admin:
            assert_refused(old_admin.list_jobs, "UNAVAILABLE")
        admin_creds = rollover.new.issue(Principal.admin(FEDERATION, "root"), tmp_path / "admin")
        with client(running, admin_creds, new_only.read_bytes()) as admin:
            assert len(admin.list_jobs()) == 2 and job.job_id in {j.job_id for j in admin.list_jobs()}
    finally:
        rollover.stop(running)
    assert rollover.audit_intact()  # one chain across three configurations: the audit key was carried over


def test_gateway_refuses_to_start_when_its_signing_ca_is_not_trusted(rollover: Rollover, pki: Pki) -> None:
    # Signing with the new CA while trusting only the old one would issue certificates the gateway refuses.
    with pytest.raises(ConfigError, match="not in the trust bundle"):
        rollover.start(pki.ca.directory / "ca.pem", rollover.new, rollover.old_server)


def test_credentials_directory_with_a_rollover_bundle_loads(rollover: Rollover, pki: Pki, tmp_path: Path) -> None:
    # During the overlap ca.pem holds both CAs (renewal installs it); certificates of either CA must load.
    trusted = rollover.bundle.read_bytes()
    for name, ca in (("old", pki.ca), ("new", rollover.new)):
        creds = ca.issue(Principal.user(FEDERATION, "deepsea-ai", f"user-{name}"), tmp_path / name)
        (creds / "ca.pem").write_bytes(trusted)
        assert Credentials.from_dir(creds).ca_pem == trusted
