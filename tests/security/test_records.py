"""Records the database administrator cannot quietly rewrite: a revocation holds whatever notation the admin
typed the serial in, and the revocation list and the audit log are anchored by a signed checkpoint outside the
database (`gateway.trust.checkpoint`). Deleting or editing a revocation row, or the newest audit entries, and
restarting does not bring a revoked credential back nor leave `audit verify` saying intact: the gateway
refuses to start (exit 2, RECORDS_TAMPERED) and verify reports the log broken, online and offline. On both
store engines; the attacker edits the rows behind the gateway's back."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.app.config import load_gateway_config
from gateway.cli import admin as admin_cli
from gateway.cli import server as server_cli
from gateway.errors import GatewayError
from gateway.identity.principal import Principal, load_certificate
from gateway.store import open_store
from gateway.trust.checkpoint import RecordsTampered
from tests.integration.harness import (
    FEDERATION,
    GatewayHandle,
    LoopThread,
    Pki,
    start_test_gateway,
    write_gateway_config,
)
from tests.security.support import ALICE, assert_refused, client_of
from tests.security.test_certificates import issue_user


def openssl_forms(serial: int) -> dict[str, str]:
    """A serial as OpenSSL and people write it: `x509 -serial` pads to whole bytes in upper case (a leading zero
    about one time in eight... and always when the top nibble is below 8 after padding), `-text` prints
    colon-separated bytes, and some tools print decimal."""
    hex_digits = f"{serial:X}"
    padded = hex_digits.rjust(len(hex_digits) + len(hex_digits) % 2, "0")
    colons = ":".join(padded[i : i + 2] for i in range(0, len(padded), 2))
    return {
        "openssl -serial": f"serial={padded}",
        "leading zero": f"0{hex_digits}",
        "zero byte": f"00{padded.lower()}",
        "colons upper": colons,
        "colons lower": colons.lower(),
        "0x": f"0x{hex_digits}",
        "decimal": f"dec:{serial}",
    }


@pytest.mark.parametrize(
    "notation", ["openssl -serial", "leading zero", "zero byte", "colons upper", "colons lower", "0x", "decimal"]
)
def test_revoking_a_serial_in_any_notation_revokes_that_certificate(
    gateway: GatewayHandle, tmp_path: Path, notation: str
) -> None:
    creds = issue_user(gateway, tmp_path / "alice-fresh")
    serial = load_certificate((creds / "cert.pem").read_bytes()).serial_number
    with client_of(gateway, creds) as alice:
        alice.list_jobs()  # the control: it works before
        with gateway.client(gateway.pki.admin()) as admin:
            revocation = admin.revoke(serial=openssl_forms(serial)[notation], reason="lost laptop")
        assert revocation.value == f"{serial:x}"  # stored canonical: one form to compare
        assert_refused(alice.list_jobs, "UNAUTHENTICATED", "REVOKED")
    with gateway.client(gateway.pki.user(*ALICE)) as other:
        other.list_jobs()  # alice's other certificate is not caught


@pytest.mark.parametrize("text", ["0xZZ", "12:3G", "dec:12a", "", "serial="])
def test_a_serial_that_is_not_one_is_refused_and_nothing_is_stored(gateway: GatewayHandle, text: str) -> None:
    before = gateway.running.core.store.revocations()
    with gateway.client(gateway.pki.admin()) as admin:
        assert_refused(lambda: admin.revoke(serial=text or " "), "INVALID_ARGUMENT")
    assert gateway.running.core.store.revocations() == before


# ---- tampering with the records behind the gateway's back, on both engines ------------------------------------


@dataclass
class Federation:
    """A gateway on a store the attacker can also open directly, and restartable on it."""

    pki: Pki
    loop: LoopThread
    workdir: Path
    url: str  # "" for the harness's SQLite file in workdir
    handle: GatewayHandle | None = None

    def start(self) -> GatewayHandle:
        self.handle = start_test_gateway(self.pki, self.workdir, self.loop, store=self.url)
        return self.handle

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None

    @property
    def store_url(self) -> str:
        return self.url or f"sqlite:///{self.workdir / 'gateway.db'}"

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run SQL on the store directly, as a database administrator would (`?` placeholders)."""
        if not self.url:
            with closing(sqlite3.connect(self.workdir / "gateway.db", isolation_level=None)) as db:
                return db.execute(statement, params).fetchall()
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []

    def offline_verify(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
        code = admin_cli.main(
            [
                *("audit", "verify", "--store", self.store_url, "--authority", str(self.pki.root / "ca")),
                *("--checkpoint", str(self.workdir / "audit-checkpoint.json"), "-o", "json"),
            ]
        )
        return code, json.loads(capsys.readouterr().out)


@pytest.fixture(params=["sqlite", "postgresql"])
def federation(request: pytest.FixtureRequest, pki: Pki, loop: LoopThread, tmp_path: Path) -> Iterator[Federation]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    federation = Federation(pki, loop, tmp_path, url)
    federation.start()
    yield federation
    federation.stop()


def refused_start(federation: Federation) -> RecordsTampered:
    with pytest.raises(RecordsTampered) as caught:
        federation.start()
    return caught.value


def test_deleting_a_revocation_row_does_not_bring_the_certificate_back(
    federation: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert federation.handle is not None
    creds = issue_user(federation.handle, tmp_path / "alice-lost")
    serial = f"{load_certificate((creds / 'cert.pem').read_bytes()).serial_number:x}"
    with federation.handle.client(federation.pki.admin()) as admin:
        admin.revoke(serial=serial, reason="stolen")
    federation.stop()
    federation.start()  # the control: an untouched store starts
    federation.stop()
    federation.sql("DELETE FROM revocations WHERE value = ?", serial)

    refusal = refused_start(federation)
    assert refusal.reason == "RECORDS_TAMPERED" and f"serial {serial}" in refusal.message
    code, verdict = federation.offline_verify(capsys)
    assert (code, verdict["intact"]) == (1, False) and serial in verdict["problem"]
    # As a command: exit 2 with the reason on stderr, never serving the revoked certificate again.
    config = write_gateway_config(federation.pki, federation.workdir, store=federation.url)
    assert server_cli.main(["run", "--config", str(config)]) == 2
    assert "revocation list in the store lacks 1 revocation" in capsys.readouterr().err


def test_editing_a_principal_revocation_is_found(federation: Federation) -> None:
    assert federation.handle is not None
    principal = Principal.user(FEDERATION, *ALICE).uri
    with federation.handle.client(federation.pki.admin()) as admin:
        admin.revoke(principal=principal, reason="left the company")
    federation.stop()
    # Moving the revocation back in time would accept every certificate issued after the new time.
    federation.sql("UPDATE revocations SET time = ? WHERE value = ?", "2000-01-01T00:00:00+00:00", principal)
    assert principal in refused_start(federation).message


def test_removing_the_newest_audit_entries_is_found_online_offline_and_at_start(
    federation: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = federation.handle
    assert handle is not None
    with handle.client(federation.pki.admin()) as admin:
        admin.revoke(token_id="leaked-ci-token", reason="leaked")
        (revoked,) = [e for e in admin.audit_events() if e.kind == "credential.revoked"]
        with handle.client(federation.pki.user(*ALICE)) as alice:
            assert_refused(alice.policy_status, "PERMISSION_DENIED")
        assert admin.verify_audit().intact
        # From credential.revoked on, the history is cut off; what is left is a perfect chain.
        federation.sql("DELETE FROM audit WHERE sequence >= ?", revoked.sequence)
        online = admin.verify_audit()
    assert not online.intact and "removed" in online.problem, online
    code, offline = federation.offline_verify(capsys)
    assert (code, offline["intact"]) == (1, False) and "removed" in offline["problem"]
    federation.stop()
    assert "does not reach entry" in refused_start(federation).message


def test_offline_verify_refuses_a_store_that_does_not_exist(
    federation: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = (
        "sqlite:///no-such.db"
        if not federation.url
        else federation.url.rsplit("/", 1)[0] + "/postgres"  # a database that exists but holds no store
    )
    monkeypatch.chdir(tmp_path)
    code = admin_cli.main(["audit", "verify", "--store", missing, "--authority", str(federation.pki.root / "ca")])
    assert code != 0
    err = capsys.readouterr().err
    assert "no store at" in err or "no fedgate store in the PostgreSQL database" in err, err
    assert not (tmp_path / "no-such.db").exists()
    if federation.url:  # nothing was created in the database looked at
        with psycopg.connect(missing) as conn:
            row = conn.execute("SELECT to_regclass('schema_version')").fetchone()
        assert row == (None,)


def test_a_relative_sqlite_url_means_the_current_directory_on_the_command_line(
    gateway: GatewayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's command, run where the gateway's database is: it checks that file, not /gateway.db.
    monkeypatch.chdir(tmp_path)
    checkpoint = str(tmp_path / "audit-checkpoint.json")
    argv = ["audit", "verify", "--store", "sqlite:///gateway.db", "--authority", str(gateway.pki.root / "ca")]
    assert admin_cli.main([*argv, "--checkpoint", checkpoint, "-o", "json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["intact"] and verdict["entries"] >= 1
    # The same words in a config file mean the file beside the config, wherever the gateway is started from.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = write_gateway_config(gateway.pki, elsewhere, store="sqlite:///gateway.db")
    assert load_gateway_config(config).store == f"sqlite:///{elsewhere / 'gateway.db'}"


def test_a_store_url_with_no_file_is_refused() -> None:
    with pytest.raises(GatewayError):
        open_store("sqlite:", read_only=True)
