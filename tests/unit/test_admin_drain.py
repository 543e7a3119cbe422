"""Draining names a site the gateway knows: one that connected, or one its policy names (which may not have
connected yet); any other name is refused with the known ones, and nothing is created for it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.app.compose import compose
from gateway.errors import NotFound
from gateway.identity.principal import Principal
from gateway.policy import load_catalogue
from gateway.policy.document import REPO_POLICIES
from gateway.policy.holder import PolicyHolder
from gateway.store import open_store

NOW = datetime(2026, 12, 7, tzinfo=UTC)
ADMIN = Principal("admin", "fed-example", "root")


def test_a_site_the_policy_names_can_be_drained_before_it_connects_and_a_typo_cannot() -> None:
    policy = REPO_POLICIES / "examples" / "residency.yaml"  # names shanghai, beijing, oslo, frankfurt
    core = compose(
        open_store("sqlite://:memory:"),
        PolicyHolder(policy, load_catalogue(REPO_POLICIES / "accelerators.yaml"), NOW),
        clock=lambda: NOW,
    )
    view = core.admin.drain_site(ADMIN, "oslo", True)
    assert view.draining
    with pytest.raises(NotFound, match=r"site 'olso' is not known .* known sites: beijing, frankfurt, oslo, shanghai"):
        core.admin.drain_site(ADMIN, "olso", True)
    assert "olso" not in core.registry.names()
