"""Credentials directories as the CA writes them, and the `fedgate ca` command."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from gateway.cli import ca as ca_cli
from gateway.errors import ConfigError
from gateway.identity import CertificateAuthority, Principal, init_ca
from gateway.trust.credentials import Credentials

FED = "demo"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return init_ca(tmp_path_factory.mktemp("ca") / "ca", FED)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# ---- credentials directories --------------------------------------------------------------------------


def test_credentials_directory_loads(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = ca.issue(Principal.admin(FED, "root"), tmp_path / "root")
    creds = Credentials.from_dir(out)
    assert creds.ca_pem == ca.cert_pem
    assert creds == Credentials.from_files(out / "ca.pem", out / "cert.pem", out / "key.pem")
    assert creds.not_after > datetime.now(UTC)


def test_missing_credentials_file_is_named_with_the_fix(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = ca.issue(Principal.admin(FED, "root"), tmp_path / "root")
    (out / "key.pem").unlink()
    with pytest.raises(ConfigError) as missing:
        Credentials.from_dir(out)
    assert str(out / "key.pem") in missing.value.message and "fedgate ca issue" in missing.value.message


def test_credentials_from_another_ca_are_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = ca.issue(Principal.admin(FED, "root"), tmp_path / "root")
    other = init_ca(tmp_path / "other", FED)
    (out / "ca.pem").write_bytes(other.cert_pem)
    with pytest.raises(ConfigError, match="was not issued by a CA"):
        Credentials.from_dir(out)


def test_credentials_with_someone_elses_key_are_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    mine = ca.issue(Principal.site(FED, "alpha"), tmp_path / "alpha")
    theirs = ca.issue(Principal.site(FED, "beta"), tmp_path / "beta")
    with pytest.raises(ConfigError, match="does not belong to"):
        Credentials.from_files(mine / "ca.pem", mine / "cert.pem", theirs / "key.pem")


# ---- fedgate ca ---------------------------------------------------------------------------------------


def test_cli_init_then_issue_a_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ca_cli.main(["init", "--dir", str(tmp_path / "ca"), "--federation", FED]) == 0
    assert "ca-key.pem" in capsys.readouterr().out
    argv = ["issue", "--ca-dir", str(tmp_path / "ca"), "--out", str(tmp_path / "u")]
    assert ca_cli.main([*argv, "--user", "alice", "--tenant", "panda-lm", "-o", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["identity"] == "spiffe://demo/tenant/panda-lm/user/alice"
    assert Credentials.from_dir(tmp_path / "u").cert_pem == (tmp_path / "u" / "cert.pem").read_bytes()


def test_cli_issues_a_server_certificate_for_given_hosts(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca", FED)
    argv = ["issue", "--ca-dir", str(tmp_path / "ca"), "--out", str(tmp_path / "gw"), "--server"]
    assert ca_cli.main([*argv, "--host", "gw.example", "--days", "30"]) == 0
    san = _cert(tmp_path / "gw" / "cert.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["gw.example", "localhost"]  # loopback stays named
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert ca_cli.main([*argv, "--host", "gw.example", "--no-loopback"]) == 0
    san = _cert(tmp_path / "gw" / "cert.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["gw.example"]
    assert san.value.get_values_for_type(x509.IPAddress) == []


@pytest.mark.parametrize(
    "extra",
    [
        ["--user", "alice"],  # no tenant
        ["--site", "alpha", "--tenant", "t"],
        ["--site", "alpha", "--host", "x"],
        ["--server", "--no-loopback"],  # naming nothing
        ["--site", "Bad_Name"],
        ["--site", "alpha", "--admin", "root"],
        ["--site", "alpha", "--days", "0"],
    ],
)
def test_cli_bad_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    init_ca(tmp_path / "ca", FED)
    assert ca_cli.main(["issue", "--ca-dir", str(tmp_path / "ca"), "--out", str(tmp_path / "x"), *extra]) == 2
    assert capsys.readouterr().err.strip()


def test_cli_init_over_an_existing_ca_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_ca(tmp_path / "ca", FED)
    assert ca_cli.main(["init", "--dir", str(tmp_path / "ca"), "--federation", FED]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_cli_issue_without_a_ca_says_how_to_make_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ca_cli.main(["issue", "--ca-dir", str(tmp_path), "--out", str(tmp_path / "x"), "--site", "a"]) == 2
    assert "fedgate ca init" in capsys.readouterr().err
