"""The agent config loader: a valid file, and each class of bad input with file, line and fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agents.backends.registry import BACKEND_TYPES
from agents.core.config import AgentConfig, load_agent_config
from agents.errors import ConfigError

from .conftest import agent_yaml
from .pki import MintedPki

Write = Callable[[str], Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def write(text: str) -> Path:
        path = tmp_path / "agent.yaml"
        path.write_text(text)
        return path

    return write


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_agent_config(path)
    assert caught.value.reason == "INVALID_CONFIG"
    return caught.value.message


def test_valid_config_loads_with_paths_resolved_against_its_folder(write: Write, pki: MintedPki) -> None:
    path = write(agent_yaml(pki))
    config = load_agent_config(path)
    assert isinstance(config, AgentConfig)
    assert config.site == "centre-a"
    assert config.gateway == "127.0.0.1:7443"
    assert config.tls.ca == pki.ca
    assert config.backend.type == "local"
    assert config.backend.workdir == path.parent / "work"
    assert config.report_interval_s == 0.2
    h100, ascend = config.pools
    assert (h100.accelerator_class, h100.cards, h100.offered, h100.stack) == ("nvidia-h100", 8, 4, "cuda")
    assert h100.labels == {"zone": "a"}
    assert (ascend.offered, ascend.cards_per_node, ascend.interconnect) == (4, 4, "hccs")


def test_relative_tls_paths_and_defaults(write: Write, pki: MintedPki, tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    path = write(
        "apiVersion: fedgate.io/v1\nkind: Agent\nsite: centre-b\ngateway: '[::1]:7443'\n"
        "tls: {ca: ca.pem, cert: cert.pem, key: key.pem}\nbackend: {type: local}\n"
        "pools:\n  - {class: hygon-k100, cards: 2}\n"
    )
    config = load_agent_config(path)
    assert config.tls.key == tmp_path / "key.pem"
    assert config.backend.workdir == tmp_path / "work"
    assert (config.report_interval_s, config.cancel_grace_s) == (2.0, 5.0)
    (pool,) = config.pools
    assert (pool.offered, pool.cards_per_node, pool.labels) == (2, 2, {})


def test_unknown_key_is_rejected_with_its_line_and_a_suggestion(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace("offered: 4, cards_per_node: 4", "ofered: 4, cards_per_node: 4")
    message = load_error(write(text))
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "ofered" in row)
    assert f"agent.yaml:{line}:" in message
    assert "unknown key 'ofered'" in message
    assert "did you mean 'offered'?" in message


def test_unknown_top_level_key_lists_the_valid_ones(write: Write, pki: MintedPki) -> None:
    message = load_error(write(agent_yaml(pki) + "colour: blue\n"))
    assert "unknown key 'colour'" in message
    assert "valid keys:" in message and "gateway" in message and "pools" in message


def test_duplicate_key_is_rejected_naming_both_lines(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace("site: centre-a\n", "site: centre-a\nsite: centre-b\n")
    message = load_error(write(text))
    assert "agent.yaml:4:" in message
    assert "duplicate key 'site' (first defined on line 3)" in message


def test_offered_more_than_cards_is_rejected(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace("cards: 4, offered: 4", "cards: 4, offered: 5")
    message = load_error(write(text))
    assert "offered (5) is more than cards (4)" in message
    assert "agent.yaml:" in message


def test_zero_cards_is_rejected(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace("cards: 4, offered: 4", "cards: 0, offered: 0")
    assert "cards must be at least 1" in load_error(write(text))


def test_missing_tls_file_names_the_key_and_the_path(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace(str(pki.site_key), "/nonexistent/site-key.pem")
    message = load_error(write(text))
    assert "tls.key file /nonexistent/site-key.pem does not exist" in message
    assert "agent.yaml:5:" in message


def test_unknown_backend_type_lists_the_valid_ones(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace("{type: local, workdir: ./work}", "{type: slurmm}")
    message = load_error(write(text))
    assert "unknown backend type 'slurmm'" in message
    assert "valid types: " + ", ".join(sorted(BACKEND_TYPES)) in message


def test_wrong_types_are_rejected(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace("cards: 4, offered: 4", "cards: '4', offered: 4")
    assert "cards must be a whole number, got a string ('4')" in load_error(write(text))
    text = agent_yaml(pki).replace("report_interval_s: 0.2", "report_interval_s: true")
    assert "report_interval_s must be a number, got a boolean" in load_error(write(text))


def test_site_name_must_be_a_dns_label(write: Write, pki: MintedPki) -> None:
    message = load_error(write(agent_yaml(pki).replace("site: centre-a", "site: Centre_A")))
    assert "site 'Centre_A' is not a valid site name" in message


def test_yaml_1_1_surprises_stay_strings(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace("labels: {zone: a}", "labels: {country: NO, rack: '0700'}")
    config = load_agent_config(write(text))
    assert config.pools[0].labels == {"country": "NO", "rack": "0700"}


def test_anchors_and_aliases_are_rejected(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace("site: centre-a", "site: &s centre-a\ngateway_copy: *s")
    assert "anchor &s is not allowed" in load_error(write(text))


def test_wrong_kind_and_unreadable_file_are_clear(write: Write, pki: MintedPki, tmp_path: Path) -> None:
    assert "kind must be 'Agent', got 'Gateway'" in load_error(
        write(agent_yaml(pki).replace("kind: Agent", "kind: Gateway"))
    )
    assert "cannot read" in load_error(tmp_path / "missing.yaml")


def test_duplicate_pool_class_is_rejected(write: Write, pki: MintedPki) -> None:
    text = agent_yaml(pki).replace("class: ascend-910b", "class: nvidia-h100")
    assert "class 'nvidia-h100' is declared twice" in load_error(write(text))


def test_several_gateway_addresses_are_dialled_in_turn(write: Write, pki: MintedPki) -> None:
    path = write(agent_yaml(pki).replace("gateway: 127.0.0.1:7443", "gateway: [127.0.0.1:7443, '[::1]:7444']"))
    config = load_agent_config(path)
    assert config.gateway == "127.0.0.1:7443" and config.gateways == ("127.0.0.1:7443", "[::1]:7444")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[]", "at least one address"),
        ("[127.0.0.1:7443, gw]", "'gw' must be host:port"),
        ("[127.0.0.1:7443, 127.0.0.1:7443]", "twice"),
        ("[127.0.0.1:7443, 7]", "must be a string"),
    ],
)
def test_a_bad_list_of_gateways_names_the_entry(write: Write, pki: MintedPki, value: str, problem: str) -> None:
    path = write(agent_yaml(pki).replace("gateway: 127.0.0.1:7443", f"gateway: {value}"))
    assert problem in load_error(path)
