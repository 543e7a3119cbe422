"""The CLI tells a TLS failure (expired or wrong-CA certificate, host name mismatch, a token on the mTLS port)
from a gateway that is not there, against real gateways with real certificates."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import ca as ca_cli
from gateway.cli import job as job_cli
from gateway.identity.principal import Principal
from tests.integration.harness import FEDERATION, GatewayHandle, LoopThread, make_pki, start_test_gateway

EXIT_UNREACHABLE, EXIT_TLS = 3, 5
PAST = datetime.now(UTC) - timedelta(days=3), datetime.now(UTC) - timedelta(days=1)


def _list(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    code = job_cli.main(["list", *flags, "--timeout", "5"])
    return code, capsys.readouterr().err


def test_certificate_problems_are_not_reported_as_an_unreachable_gateway(
    gateway: GatewayHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = Principal.user(FEDERATION, "panda-lm", "bob")
    expired = gateway.pki.ca.issue(bob, tmp_path / "expired", not_before=PAST[0], not_after=PAST[1])
    code, err = _list(capsys, "--gateway", gateway.address, "--creds", str(expired))
    assert code == EXIT_TLS and "TLS_CLIENT_CERT_EXPIRED" in err and "your certificate expired" in err

    foreign = gateway.pki.foreign.issue(bob, tmp_path / "foreign")  # another federation's CA and certificate
    code, err = _list(capsys, "--gateway", gateway.address, "--creds", str(foreign))
    assert code == EXIT_TLS and "TLS_UNKNOWN_CA" in err and "not issued by the CA you trust" in err

    ca = str(gateway.pki.root / "ca" / "ca.pem")
    code, err = _list(capsys, "--gateway", gateway.address, "--token", "fgt_whatever", "--ca", ca)
    assert code == EXIT_TLS and "TLS_CLIENT_CERT_REQUIRED" in err and "public port" in err

    code, err = _list(capsys, "--gateway", "127.0.0.1:1", "--creds", str(gateway.pki.user("panda-lm", "bob")))
    assert code == EXIT_UNREACHABLE and "is the gateway running" in err


def test_gateway_certificate_problems_name_the_fix(
    loop: LoopThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = make_pki(tmp_path / "pki")
    bob = str(pki.user("panda-lm", "bob"))
    shutil.rmtree(pki.root / "gateway")
    pki.ca.issue_server(pki.root / "gateway", ["gw.example.org"])
    (tmp_path / "named").mkdir()
    named = start_test_gateway(pki, tmp_path / "named", loop)
    try:
        code, err = _list(capsys, "--gateway", named.address, "--creds", bob)
    finally:
        named.stop()
    assert code == EXIT_TLS and "TLS_HOSTNAME_MISMATCH" in err
    assert "does not name '127.0.0.1'" in err and "gw.example.org" in err

    shutil.rmtree(pki.root / "gateway")
    pki.ca.issue_server(pki.root / "gateway", not_before=PAST[0], not_after=PAST[1])
    (tmp_path / "expired").mkdir()
    expired = start_test_gateway(pki, tmp_path / "expired", loop)
    try:
        code, err = _list(capsys, "--gateway", expired.address, "--creds", bob)
    finally:
        expired.stop()
    assert code == EXIT_TLS and "TLS_SERVER_CERT_EXPIRED" in err


def test_a_gateway_certificate_issued_for_a_host_name_also_serves_loopback(
    loop: LoopThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the README issues it (`--server --host gw.example.org`), the gateway still answers on 127.0.0.1."""
    pki = make_pki(tmp_path / "pki")
    shutil.rmtree(pki.root / "gateway")
    ca_dir, out = str(pki.root / "ca"), str(pki.root / "gateway")
    assert ca_cli.main(["issue", "--ca-dir", ca_dir, "--out", out, "--server", "--host", "gw.example.org"]) == 0
    capsys.readouterr()
    (tmp_path / "gw").mkdir()
    gateway = start_test_gateway(pki, tmp_path / "gw", loop)
    try:
        code, err = _list(capsys, "--gateway", gateway.address, "--creds", str(pki.user("panda-lm", "bob")))
    finally:
        gateway.stop()
    assert code == 0, err
