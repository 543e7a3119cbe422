"""Certificates rotate before they expire, through the gateway, without anyone handing over a key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.cli import creds as creds_cli
from gateway.errors import ClientError
from gateway.identity.principal import load_certificate
from gateway.trust.credentials import Credentials
from tests.integration.harness import GatewayHandle


def serial(directory: Path) -> int:
    return load_certificate(Credentials.from_dir(directory).cert_pem).serial_number


def test_user_renews_its_certificate_and_keeps_working(gateway: GatewayHandle, tmp_path: Path) -> None:
    mine = tmp_path / "alice"
    shutil.copytree(gateway.pki.user("deepsea-ai", "alice"), mine)
    old_serial, old_key = serial(mine), (mine / "key.pem").read_bytes()
    with gateway.client(mine) as alice:
        alice.renew_certificate(mine)
    assert serial(mine) != old_serial and (mine / "key.pem").read_bytes() != old_key
    assert (mine / "key.pem").stat().st_mode & 0o777 == 0o600
    with gateway.client(mine) as alice:
        assert alice.list_jobs() == []
    entries = gateway.running.core.store.audit_entries()
    renewed = [e for e in entries if e.kind == "certificate.renewed"]
    assert renewed and renewed[-1].principal.endswith("/tenant/deepsea-ai/user/alice")


def test_renew_if_due_leaves_a_fresh_certificate_alone(
    gateway: GatewayHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "bob"
    shutil.copytree(gateway.pki.user("panda-lm", "bob"), mine)
    before = serial(mine)
    flags = ["--gateway", gateway.address, "--creds", str(mine)]
    assert creds_cli.main(["renew", "--if-due", *flags]) == 0
    assert serial(mine) == before
    assert creds_cli.main(["renew", *flags, "-o", "json"]) == 0
    assert serial(mine) != before and '"renewed": true' in capsys.readouterr().out


def test_a_token_cannot_be_turned_into_a_certificate(gateway: GatewayHandle, tmp_path: Path) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        token = admin.issue_token("panda-lm", "ci-bot").token
    target = tmp_path / "ci"
    shutil.copytree(gateway.pki.user("panda-lm", "bob"), target)
    before = serial(target)
    with gateway.token_client(token) as ci, pytest.raises(ClientError) as refused:
        ci.renew_certificate(target)
    assert (refused.value.code, refused.value.reason) == ("PERMISSION_DENIED", "WRONG_CREDENTIAL")
    assert serial(target) == before
