"""`fedgate config` contexts: where the file is, how it is read and written, and flags > environment > context."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import pytest

from gateway.cli import config as config_cli
from gateway.cli.connect import add_connection_flags, connection_from_args
from gateway.cli.contextfile import config_path, load_config
from gateway.errors import ConfigError, GatewayError
from tests.integration.harness import make_pki


def test_the_file_is_found_where_kubectl_users_look() -> None:
    assert config_path({"FEDGATE_CONFIG": "/x/c.yaml", "XDG_CONFIG_HOME": "/y"}) == Path("/x/c.yaml")
    assert config_path({"XDG_CONFIG_HOME": "/y"}) == Path("/y/fedgate/config.yaml")
    assert config_path({}) == Path("~/.config/fedgate/config.yaml").expanduser()


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "conf" / "config.yaml"
    monkeypatch.setenv("FEDGATE_CONFIG", str(path))
    return path


@pytest.fixture
def creds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki")).user("panda-lm", "bob")


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_connection_flags(parser)
    return parser.parse_args(argv)


def test_set_context_writes_the_file_atomically_for_its_owner_only_and_the_first_becomes_current(
    config_file: Path, creds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config_cli.main(["set-context", "prod", "--gateway", "gw:7443", "--creds", str(creds)]) == 0
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert [p.name for p in config_file.parent.iterdir()] == ["config.yaml"]  # no temporary file left
    assert config_cli.main(["set-context", "pub", "--gateway", "gw:7445", "--ca", str(creds / "ca.pem"),
                            "--token-file", str(creds / "cert.pem")]) == 0  # fmt: skip
    config = load_config()
    assert config.current_context == "prod" and sorted(config.contexts) == ["prod", "pub"]
    assert config.contexts["prod"].get("cert") == str(creds / "cert.pem")
    capsys.readouterr()
    assert config_cli.main(["get-contexts"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["CURRENT", "NAME", "GATEWAY", "AUTH"] and table[1].split()[:2] == ["*", "prod"]
    assert config_cli.main(["use-context", "pub"]) == 0 and config_cli.main(["current-context"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "pub"


def test_a_context_fills_only_what_flags_and_environment_leave_unset(
    config_file: Path, creds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert config_cli.main(["set-context", "prod", "--gateway", "gw-1:7443,gw-2:7443", "--creds", str(creds)]) == 0
    from_context = connection_from_args(_args([]))
    assert from_context.gateway == "gw-1:7443,gw-2:7443" and from_context.context == "prod"
    assert from_context.credentials is not None and from_context.ca == creds / "ca.pem"
    monkeypatch.setenv("FEDGATE_GATEWAY", "env:1")
    assert connection_from_args(_args([])).gateway == "env:1"
    assert connection_from_args(_args(["--gateway", "flag:1"])).gateway == "flag:1"


def test_an_explicit_context_beats_the_environment_and_flags_beat_both(
    config_file: Path, creds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert config_cli.main(["set-context", "prod", "--gateway", "prod:7443", "--creds", str(creds)]) == 0
    monkeypatch.setenv("FEDGATE_GATEWAY", "staging:7443")
    monkeypatch.setenv("FEDGATE_TOKEN", "staging-token")
    monkeypatch.setenv("FEDGATE_CA", str(creds / "ca.pem"))
    chosen = connection_from_args(_args(["--context", "prod"]))  # prod's credentials never go to staging
    assert (chosen.gateway, chosen.token, chosen.context) == ("prod:7443", "", "prod")
    assert chosen.credentials is not None
    assert connection_from_args(_args([])).gateway == "staging:7443"  # no --context: the environment fills in
    flagged = connection_from_args(_args(["--context", "prod", "--gateway", "flag:1"]))
    assert (flagged.gateway, flagged.context) == ("flag:1", "prod")


def test_explicit_flags_never_read_the_file(config_file: Path, creds: Path) -> None:
    config_file.parent.mkdir()
    config_file.write_text("contexts: [broken\n")
    connection = connection_from_args(_args(["--gateway", "gw:1", "--creds", str(creds)]))
    assert connection.gateway == "gw:1" and connection.context == ""
    with pytest.raises(ConfigError, match=rf"{config_file}:2: expected"):
        connection_from_args(_args(["--gateway", "gw:1", "--creds", str(creds), "--context", "prod"]))


def test_an_unknown_context_lists_the_known_ones(config_file: Path, creds: Path) -> None:
    assert config_cli.main(["set-context", "prod", "--gateway", "gw:1", "--creds", str(creds)]) == 0
    assert config_cli.main(["set-context", "lab", "--gateway", "gw:2", "--creds", str(creds)]) == 0
    with pytest.raises(ConfigError, match=r"no context 'staging' in .* \(known: lab, prod\)"):
        connection_from_args(_args(["--context", "staging"]))
    assert config_cli.main(["use-context", "staging"]) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("contexts:\n  a: {gateway: 'x:1'\n", r"config.yaml:3: expected ',' or '}'"),
        (
            "contexts:\n  a:\n    gateway: x:1\n    tokenfile: t\n",
            r"config.yaml:4: unknown key 'tokenfile'.*'token-file'",
        ),
        ("contexts:\n  a: {ca: ca.pem}\n", r"config.yaml:2: context 'a' has no gateway"),
        ("current-context: b\ncontexts:\n  a: {gateway: 'x:1'}\n", r"config.yaml:1: current-context 'b' names no"),
    ],
)
def test_a_malformed_file_is_named_with_its_line(config_file: Path, text: str, message: str) -> None:
    config_file.parent.mkdir()
    config_file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config()


def test_relative_paths_are_relative_to_the_file_and_a_missing_one_names_its_key(
    config_file: Path, creds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.parent.mkdir()
    os.symlink(creds, config_file.parent / "creds")
    config_file.write_text(
        "current-context: a\ncontexts:\n"
        "  a: {gateway: 'gw:1', ca: creds/ca.pem, cert: creds/cert.pem, key: creds/key.pem}\n"
        "  b: {gateway: 'gw:1', ca: creds/nothing.pem, token: abc}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert connection_from_args(_args([])).ca == config_file.parent / "creds" / "ca.pem"
    with pytest.raises(ConfigError, match=r"config.yaml:4: context 'b': ca .*nothing.pem does not exist"):
        connection_from_args(_args(["--context", "b"]))


def test_no_gateway_anywhere_says_all_three_ways_to_give_one() -> None:
    with pytest.raises(GatewayError, match="--gateway HOST:PORT, set FEDGATE_GATEWAY, or save a context"):
        connection_from_args(_args([]))


def test_view_redacts_an_inline_token(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file.parent.mkdir()
    config_file.write_text("contexts:\n  a: {gateway: 'gw:1', ca: ca.pem, token: fgt_secret}\n")
    assert config_cli.main(["view"]) == 0
    out = capsys.readouterr().out
    assert "fgt_secret" not in out and "REDACTED" in out
    assert config_cli.main(["view", "--raw"]) == 0 and "fgt_secret" in capsys.readouterr().out
