"""The `policy:` section of the agent config: a valid one, and each bad input refused with file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.core.config import load_agent_config
from agents.errors import ConfigError
from agents.policy.terms import Hours, OfferWindow

from .conftest import agent_yaml
from .pki import MintedPki

FULL_POLICY = """\
policy:
  tenants: [deepsea-ai, panda-lm]
  projects: [deepsea-ai/llama-sft]
  max_job_cards: 16
  image_registries: [registry.example.org, harbor.centre-a.cn/ai]
  timezone: Asia/Shanghai
  offers:
    ascend-910b:
      - {hours: 08:00-20:00, days: [mon, tue, wed, thu, fri], share: 0.3}
      - {share: 0.8}
"""


def write_policy(tmp_path: Path, pki: MintedPki, policy: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(agent_yaml(pki) + policy)
    return path


def policy_error(tmp_path: Path, pki: MintedPki, policy: str) -> tuple[str, int]:
    """The message of the ConfigError, and the line it points at."""
    path = write_policy(tmp_path, pki, policy)
    with pytest.raises(ConfigError) as caught:
        load_agent_config(path)
    message = caught.value.message
    assert message.startswith(f"{path}:"), message
    return message, int(message.split(":")[1])


def line_of(tmp_path: Path, text: str) -> int:
    """The first line of the policy section that holds `text`."""
    lines = (tmp_path / "agent.yaml").read_text().splitlines()
    start = lines.index("policy:")
    return next(i for i, line in enumerate(lines, 1) if i > start and text in line)


def test_a_full_policy_section_loads(tmp_path: Path, pki: MintedPki) -> None:
    policy = load_agent_config(write_policy(tmp_path, pki, FULL_POLICY)).policy
    assert policy.tenants == ("deepsea-ai", "panda-lm")
    assert policy.projects == ("deepsea-ai/llama-sft",)
    assert policy.max_job_cards == 16
    assert policy.image_registries == ("registry.example.org", "harbor.centre-a.cn/ai")
    assert policy.timezone == "Asia/Shanghai"
    weekdays = ("mon", "tue", "wed", "thu", "fri")
    assert policy.offers == {"ascend-910b": (OfferWindow(0.3, Hours(480, 1200), weekdays), OfferWindow(0.8))}


def test_without_a_policy_section_everything_is_accepted_and_offered_as_declared(
    tmp_path: Path, pki: MintedPki
) -> None:
    for text in ("", "policy:\n", "policy: {}\n"):
        policy = load_agent_config(write_policy(tmp_path, pki, text)).policy
        assert (policy.tenants, policy.projects, policy.max_job_cards, policy.image_registries) == ((), (), None, ())
        assert (policy.timezone, dict(policy.offers)) == ("UTC", {})


@pytest.mark.parametrize(
    ("policy", "at", "words"),
    [
        ("policy:\n  tenant: [a]\n", "tenant:", "unknown key 'tenant' in policy; did you mean 'tenants'?"),
        ("policy:\n  tenants: deepsea-ai\n", "tenants:", "policy.tenants must be a list of strings"),
        ("policy:\n  tenants:\n    - deepsea-ai\n    - Panda_LM\n", "Panda_LM", "'Panda_LM' is not a tenant name"),
        ("policy:\n  tenants: [a, b, a]\n", "tenants:", "lists 'a' twice"),
        ("policy:\n  tenants: [7]\n", "tenants:", "policy.tenants[0] must be a string, got an integer (7)"),
        ("policy:\n  projects: [llama-sft]\n", "projects:", "must be tenant/project"),
        (
            "policy:\n  tenants: [panda-lm]\n  projects: [deepsea-ai/llama-sft]\n",
            "projects:",
            "names tenant 'deepsea-ai', which policy.tenants does not accept; add deepsea-ai to policy.tenants",
        ),
        ("policy:\n  max_job_cards: 0\n", "max_job_cards", "policy.max_job_cards must be at least 1, got 0"),
        ("policy:\n  max_job_cards: '16'\n", "max_job_cards", "must be a whole number, got a string ('16')"),
        (
            "policy:\n  image_registries: ['https://registry.example.org']\n",
            "image_registries",
            "is not an image prefix; write host[:port][/path] in lowercase without https://",
        ),
        ("policy:\n  image_registries: [registry.example.org/]\n", "image_registries", "is not an image prefix"),
        ("policy:\n  image_registries: ['harbor.example/ai:1.0']\n", "image_registries", "is not an image prefix"),
        ("policy:\n  timezone: Mars/Olympus\n", "timezone", "'Mars/Olympus' is not a time zone"),
        ("policy:\n  timezone: +08:00\n", "timezone", "use an IANA name such as Asia/Shanghai"),
    ],
)
def test_bad_terms_are_refused_at_their_line_with_the_fix(
    tmp_path: Path, pki: MintedPki, policy: str, at: str, words: str
) -> None:
    message, line = policy_error(tmp_path, pki, policy)
    assert words in message
    assert line == line_of(tmp_path, at)


@pytest.mark.parametrize(
    ("offers", "at", "words"),
    [
        ("    tpu-v5: [{share: 0.5}]\n", "tpu-v5", "which no pool declares; declared pools: nvidia-h100"),
        ("    ascend-910b: []\n", "ascend-910b", "policy.offers.ascend-910b is empty"),
        ("    ascend-910b: [{share: 1.5}]\n", "ascend-910b", "share must be between 0 and 1 (0.3 = 30 %), got 1.5"),
        ("    ascend-910b: [{share: 30%}]\n", "ascend-910b", "share must be a number, got a string ('30%')"),
        ("    ascend-910b: [{share: 0.5, hour: '08:00-20:00'}]\n", "ascend-910b", "did you mean 'hours'?"),
        ("    ascend-910b: [{share: 0.5, hours: '8-20'}]\n", "ascend-910b", "must be HH:MM-HH:MM on a 24-hour clock"),
        (
            "    ascend-910b:\n      - {share: 0.5, days: [mon, funday]}\n      - {share: 1}\n",
            "funday",
            "'funday' is not a day; use mon, tue, wed, thu, fri, sat, sun",
        ),
        ("    ascend-910b: [{share: 0.5, days: []}, {share: 1}]\n", "ascend-910b", "days is empty"),
        (
            "    ascend-910b:\n      - {share: 0.5, hours: '08:00-20:00'}\n",
            "08:00-20:00",
            "end the list with a window without hours and days, e.g. - {share: 0}",
        ),
        (
            "    ascend-910b:\n      - {share: 0.5}\n      - {share: 0.3, hours: '08:00-20:00'}\n",
            "0.3",
            "policy.offers.ascend-910b[1] is never used: policy.offers.ascend-910b[0] above it has no hours",
        ),
        ("    ascend-910b: {share: 0.5}\n", "ascend-910b", "policy.offers.ascend-910b must be a list"),
    ],
)
def test_bad_offer_windows_are_refused_at_their_line_with_the_fix(
    tmp_path: Path, pki: MintedPki, offers: str, at: str, words: str
) -> None:
    message, line = policy_error(tmp_path, pki, "policy:\n  offers:\n" + offers)
    assert words in message
    assert line == line_of(tmp_path, at)


def test_tls_files_may_be_left_unchecked_for_tools_that_only_read_the_policy(tmp_path: Path, pki: MintedPki) -> None:
    path = write_policy(tmp_path, pki, FULL_POLICY)
    path.write_text(path.read_text().replace(str(pki.ca), "missing/ca.pem"))
    with pytest.raises(ConfigError, match=r"tls\.ca file .* does not exist"):
        load_agent_config(path)
    config = load_agent_config(path, validate_files=False)
    assert config.tls.ca == tmp_path / "missing" / "ca.pem"
    assert config.policy.max_job_cards == 16
