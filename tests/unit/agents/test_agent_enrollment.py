"""`fedgate agent enroll`: the key is made here and written first, the token goes only to the pinned CA's
gateway, and existing credentials are never lost. The flow against a fake network, then the command against
a real TLS port."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding

from agents.cli import main as cli
from agents.errors import (
    AgentError,
    CaPinMismatch,
    CredentialsError,
    CredentialsExist,
    EnrollmentRefused,
    UsageError,
)
from agents.identity.credentials import IssuedCertificate, new_site_key
from agents.identity.enrollment import EnrollmentRequest, enroll_site
from agents.identity.pinning import CaPin

from .fake_gateway import FakeEnrollment, Refusal, start_public_port
from .pki import MintedPki, make_pki, sign_csr

GATEWAY = "127.0.0.1:7444"


def der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def pin_of(path: Path) -> CaPin:
    return CaPin(hashlib.sha256(der(path)).hexdigest())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> MintedPki:
    return make_pki(tmp_path_factory.mktemp("other-pki"))


@dataclass
class FakeNetwork:
    """The two network steps of enrolment, scripted; records everything that would have been sent."""

    pki: MintedPki
    chain: list[bytes]
    out: Path
    refuse: AgentError | None = None
    issue_for: bytes | None = None
    """A CSR whose key the certificate is issued for instead of the one sent."""
    validity: tuple[datetime, datetime] | None = None
    sent: list[dict[str, object]] = field(default_factory=list)

    def server_chain(self, gateway: str) -> list[bytes]:
        return self.chain

    def enroll(self, gateway: str, ca_pem: bytes, join_token: str, csr_pem: bytes, site: str) -> IssuedCertificate:
        key = self.out / "key.pem"
        self.sent.append(
            {
                "ca_pem": ca_pem,
                "token": join_token,
                "csr": x509.load_pem_x509_csr(csr_pem),
                "site": site,
                "key_mode_at_send": mode(key) if key.exists() else None,
                "cert_at_send": (self.out / "cert.pem").exists(),
            }
        )
        if self.refuse is not None:
            raise self.refuse
        start, end = self.validity or (None, None)
        issued = sign_csr(self.pki, self.issue_for or csr_pem, site, not_before=start, not_after=end)
        return IssuedCertificate(issued, self.pki.ca.read_bytes(), None)


@pytest.fixture
def network(pki: MintedPki, tmp_path: Path) -> FakeNetwork:
    return FakeNetwork(pki, [der(pki.server_cert), der(pki.ca)], tmp_path / "creds")


def request(
    network: FakeNetwork, *, pin: CaPin | None = None, force: bool = False, overrides: dict[str, str] | None = None
) -> EnrollmentRequest:
    fields = {"gateway": GATEWAY, "join_token": "fgj_good", "site": "centre-a", **(overrides or {})}
    return EnrollmentRequest(
        gateway=fields["gateway"],
        join_token=fields["join_token"],
        pin=pin or pin_of(network.pki.ca),
        site=fields["site"],
        out_dir=network.out,
        force=force,
    )


def test_enrolment_writes_the_key_at_0600_before_sending_then_cert_and_ca(network: FakeNetwork) -> None:
    enrolled = enroll_site(request(network), network)

    [sent] = network.sent
    assert sent["key_mode_at_send"] == 0o600 and sent["cert_at_send"] is False
    assert sent["ca_pem"] == network.pki.ca.read_bytes()  # TLS for the token trusts only the pinned CA
    assert sent["token"] == "fgj_good" and sent["site"] == "centre-a"
    csr = sent["csr"]
    assert isinstance(csr, x509.CertificateSigningRequest)
    assert csr.subject.rfc4514_string() == "CN=centre-a"
    files = enrolled.files
    assert mode(files.key) == 0o600 and mode(network.out) == 0o700
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert cert.public_key() == key.public_key() == csr.public_key()
    assert files.ca.read_bytes() == network.pki.ca.read_bytes()
    assert enrolled.principal == "spiffe://test/site/centre-a"
    assert "tls:\n  ca: " in enrolled.tls_snippet() and str(files.key) in enrolled.tls_snippet()
    assert not [p for p in network.out.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_gateway_without_the_pinned_ca_gets_nothing_and_nothing_is_written(
    network: FakeNetwork, other: MintedPki
) -> None:
    network.chain = [der(other.server_cert), der(other.ca)]
    with pytest.raises(CaPinMismatch, match="did not present the CA with fingerprint"):
        enroll_site(request(network), network)
    assert network.sent == []
    assert not network.out.exists()


def test_enrol_refuses_to_overwrite_a_certificate_without_force(network: FakeNetwork) -> None:
    first = enroll_site(request(network), network)
    before = {p.name: p.read_bytes() for p in (first.files.key, first.files.cert, first.files.ca)}

    with pytest.raises(CredentialsExist, match="--force"):
        enroll_site(request(network), network)
    assert len(network.sent) == 1
    assert {p.name: p.read_bytes() for p in (first.files.key, first.files.cert, first.files.ca)} == before

    second = enroll_site(request(network, force=True), network)
    assert second.files.cert.read_bytes() != before["cert.pem"]
    assert second.files.key.read_bytes() != before["key.pem"] and mode(second.files.key) == 0o600


def test_failed_forced_enrolment_leaves_the_working_credentials_as_they_were(network: FakeNetwork) -> None:
    first = enroll_site(request(network), network)
    before = {p.name: p.read_bytes() for p in (first.files.key, first.files.cert, first.files.ca)}
    network.refuse = EnrollmentRefused("used", reason="JOIN_TOKEN_USED", code="PERMISSION_DENIED")

    with pytest.raises(EnrollmentRefused):
        enroll_site(request(network, force=True), network)
    assert network.sent[-1]["key_mode_at_send"] == 0o600  # a new key was on disk while the token was out
    assert {p.name: p.read_bytes() for p in (first.files.key, first.files.cert, first.files.ca)} == before
    assert mode(first.files.key) == 0o600


def test_refused_first_enrolment_leaves_no_orphan_key(network: FakeNetwork) -> None:
    network.refuse = EnrollmentRefused("unknown", reason="JOIN_TOKEN_UNKNOWN", code="UNAUTHENTICATED")
    with pytest.raises(EnrollmentRefused):
        enroll_site(request(network), network)
    assert sorted(p.name for p in network.out.iterdir()) == []


def test_certificate_for_another_key_is_not_written(network: FakeNetwork) -> None:
    network.issue_for = new_site_key("centre-a").csr_pem
    with pytest.raises(CredentialsError, match="different key"):
        enroll_site(request(network), network)
    assert not (network.out / "cert.pem").exists() and not (network.out / "key.pem").exists()


def test_certificate_starting_in_this_machines_future_is_accepted(network: FakeNetwork) -> None:
    # The gateway judges the certificate by its own clock; a few minutes of skew here must not waste the token.
    now = datetime.now(UTC)
    network.validity = (now + timedelta(minutes=10), now + timedelta(days=90))
    assert enroll_site(request(network), network).files.cert.exists()


def test_certificate_already_expired_is_not_written_and_the_operator_learns_the_token_is_gone(
    network: FakeNetwork,
) -> None:
    now = datetime.now(UTC)
    network.validity = (now - timedelta(days=2), now - timedelta(days=1))
    with pytest.raises(CredentialsError, match=r"check this machine's clock.*ask the admin for a new one"):
        enroll_site(request(network), network)
    assert not (network.out / "cert.pem").exists()


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"site": "Centre_A"}, "not a valid site name"),
        ({"gateway": "gateway.example.org"}, "host:port"),
        ({"join_token": "  "}, "token is empty"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_sent(
    network: FakeNetwork, changes: dict[str, str], says: str
) -> None:
    with pytest.raises(UsageError, match=says):
        enroll_site(request(network, overrides=changes), network)
    assert network.sent == [] and not network.out.exists()


# ---- the command, against a real TLS port presenting the gateway certificate and the CA ---------------------


@dataclass
class PublicPort:
    enrollment: FakeEnrollment
    address: str
    pin: str


@pytest.fixture
async def public_port(pki: MintedPki) -> AsyncIterator[PublicPort]:
    enrollment = FakeEnrollment(pki)
    server, port = await start_public_port(enrollment, pki)
    yield PublicPort(enrollment, f"127.0.0.1:{port}", pin_of(pki.ca).digest)
    await server.stop(grace=None)


async def run_enroll(*args: str) -> int:
    """The command runs synchronous gRPC: keep it off the loop that serves the fake gateway."""
    return await asyncio.to_thread(cli.main, ["enroll", *args])


def enroll_args(port: PublicPort, out: Path, *, pin: str | None = None, token: str = "fgj_good") -> list[str]:
    return [
        "--gateway", port.address, "--token", token, "--ca-fingerprint", pin or port.pin,
        "--site", "centre-a", "--out", str(out),
    ]  # fmt: skip


async def test_enroll_command_over_real_tls_writes_credentials_and_prints_the_tls_snippet(
    public_port: PublicPort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    colons = ":".join(public_port.pin[i : i + 2] for i in range(0, 64, 2)).upper()
    assert await run_enroll(*enroll_args(public_port, tmp_path / "creds", pin=f"sha256:{colons}")) == 0
    out = capsys.readouterr().out
    assert "enrolled site centre-a as spiffe://test/site/centre-a" in out
    assert f"tls:\n  ca: {tmp_path / 'creds' / 'ca.pem'}\n  cert: {tmp_path / 'creds' / 'cert.pem'}" in out
    assert mode(tmp_path / "creds" / "key.pem") == 0o600
    [sent] = public_port.enrollment.enroll_requests
    assert sent.site == "centre-a" and sent.join_token == "fgj_good" and "PRIVATE" not in sent.csr_pem


async def test_enroll_command_prints_json_when_asked(
    public_port: PublicPort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_enroll(*enroll_args(public_port, tmp_path / "creds"), "-o", "json") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["principal"] == "spiffe://test/site/centre-a"
    assert record["files"]["key"] == str(tmp_path / "creds" / "key.pem")


async def test_enroll_command_with_a_wrong_fingerprint_exits_1_and_sends_no_token(
    public_port: PublicPort, other: MintedPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = pin_of(other.ca).digest
    assert await run_enroll(*enroll_args(public_port, tmp_path / "creds", pin=wrong)) == 1
    err = capsys.readouterr().err
    assert f"did not present the CA with fingerprint {wrong}" in err
    assert "check the fingerprint the admin gave you" in err
    assert public_port.enrollment.enroll_requests == []
    assert not (tmp_path / "creds").exists()


async def test_enroll_command_prints_the_gateways_refusal_and_reason_and_exits_1(
    public_port: PublicPort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_enroll(*enroll_args(public_port, tmp_path / "creds", token="fgj_stale")) == 1
    err = capsys.readouterr().err
    assert "unknown token" in err and "reason: JOIN_TOKEN_UNKNOWN" in err and "what to do:" in err

    public_port.enrollment.refuse = Refusal(grpc.StatusCode.PERMISSION_DENIED, "token used", "JOIN_TOKEN_USED")
    assert await run_enroll(*enroll_args(public_port, tmp_path / "creds")) == 1
    assert "reason: JOIN_TOKEN_USED" in capsys.readouterr().err
    assert not (tmp_path / "creds" / "key.pem").exists()


async def test_enroll_command_refuses_an_existing_certificate_with_exit_2(
    public_port: PublicPort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_enroll(*enroll_args(public_port, tmp_path / "creds")) == 0
    assert await run_enroll(*enroll_args(public_port, tmp_path / "creds")) == 2
    assert "--force" in capsys.readouterr().err
    assert len(public_port.enrollment.enroll_requests) == 1
    assert await run_enroll(*enroll_args(public_port, tmp_path / "creds"), "--force") == 0


async def test_enroll_command_usage_errors_exit_2(public_port: PublicPort, tmp_path: Path) -> None:
    assert await run_enroll(*enroll_args(public_port, tmp_path / "c", pin="sha1:" + "ab" * 20)) == 2
    assert await run_enroll("--gateway", public_port.address) == 2  # missing flags (argparse)
    missing = tmp_path / "no-such-token"
    args = enroll_args(public_port, tmp_path / "c")
    args[args.index("--token") : args.index("--token") + 2] = ["--token-file", str(missing)]
    assert await run_enroll(*args) == 2
    assert public_port.enrollment.enroll_requests == []


async def test_enroll_command_reads_the_token_from_a_file(public_port: PublicPort, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("fgj_good\n")
    args = enroll_args(public_port, tmp_path / "creds")
    args[args.index("--token") : args.index("--token") + 2] = ["--token-file", str(token_file)]
    assert await run_enroll(*args) == 0
    assert public_port.enrollment.enroll_requests[0].join_token == "fgj_good"


async def test_enroll_command_exits_3_when_the_gateway_is_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--gateway", f"127.0.0.1:{port}", "--token", "fgj_good", "--ca-fingerprint", "ab" * 32]
    assert await run_enroll(*args, "--site", "centre-a", "--out", str(tmp_path / "c"), "--timeout", "2") == 3
    assert f"cannot reach the gateway at 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
