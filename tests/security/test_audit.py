"""The audit log is append-only in effect: every entry's hash covers the previous hash and the entry, and each
hash is signed with the gateway's audit key, so an edited, removed or rewritten entry is found, online (admin
API) and offline (`fedgate admin audit verify --store`, straight from the database)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.cli import admin as admin_cli
from gateway.transport.client import FederationClient
from gateway.trust.audit import seal
from tests.integration.harness import GatewayHandle
from tests.security.support import ALICE, assert_refused, audited


@pytest.fixture
def denied_call(gateway: GatewayHandle) -> int:
    """Make one refused call (a user asking for the admin API); the sequence of its audit entry."""
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        assert_refused(alice.policy_status, "PERMISSION_DENIED", "WRONG_ROLE")
    entries = audited(gateway, "call.denied", method="GetPolicyStatus", reason="WRONG_ROLE")
    assert len(entries) == 1 and entries[0].principal.endswith("/tenant/deepsea-ai/user/alice")
    return entries[0].sequence


@pytest.fixture
def database(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """The gateway's own SQLite file (the harness puts it at workdir/gateway.db), opened behind its back."""
    with closing(sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)) as db:
        yield db


def offline_verify(
    gateway: GatewayHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    argv = ["audit", "verify", "--store", f"sqlite:///{tmp_path / 'gateway.db'}"]
    checkpoint = str(tmp_path / "audit-checkpoint.json")  # where the harness keeps this gateway's checkpoint
    code = admin_cli.main(
        [*argv, "--authority", str(gateway.pki.root / "ca"), "--checkpoint", checkpoint, "-o", "json"]
    )
    return code, json.loads(capsys.readouterr().out)


def test_intact_audit_log_verifies_online_and_offline(
    gateway: GatewayHandle,
    admin: FederationClient,
    denied_call: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    verdict = admin.verify_audit()
    assert verdict.intact and verdict.entries >= 2, verdict.problem
    code, offline = offline_verify(gateway, tmp_path, capsys)
    assert (code, offline["intact"]) == (0, True)
    kinds = [e.kind for e in admin.audit_events()]
    assert kinds[0] == "gateway.started" and "call.denied" in kinds


def test_edited_audit_entry_is_detected(
    gateway: GatewayHandle,
    admin: FederationClient,
    denied_call: int,
    database: sqlite3.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Someone with access to the database hides who was refused.
    (details,) = database.execute("SELECT details FROM audit WHERE sequence = ?", (denied_call,)).fetchone()
    edited = {**json.loads(details), "reason": "NOTHING_TO_SEE"}
    database.execute("UPDATE audit SET details = ? WHERE sequence = ?", (json.dumps(edited), denied_call))
    verdict = admin.verify_audit()
    assert not verdict.intact
    assert verdict.first_bad_sequence == denied_call
    assert f"entry {denied_call}" in verdict.problem and "edited" in verdict.problem
    code, offline = offline_verify(gateway, tmp_path, capsys)
    assert (code, offline["intact"], offline["first_bad_sequence"]) == (1, False, denied_call)


def test_removed_audit_entry_is_detected(
    gateway: GatewayHandle,
    denied_call: int,
    database: sqlite3.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with gateway.client(gateway.pki.user(*ALICE)) as alice:  # so that the removed entry is not the last
        # (another method: the same refusal again would only be counted, refusals being coalesced)
        assert_refused(lambda: alice.create_join_token("centre-x"), "PERMISSION_DENIED")
    database.execute("DELETE FROM audit WHERE sequence = ?", (denied_call,))
    code, offline = offline_verify(gateway, tmp_path, capsys)
    assert (code, offline["intact"]) == (1, False)
    assert "removed" in offline["problem"]


def test_audit_entry_rewritten_without_the_audit_key_is_detected(
    gateway: GatewayHandle,
    denied_call: int,
    database: sqlite3.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A consistent chain (every hash recomputed) is not enough: each entry is signed with the audit key.
    store = gateway.running.core.store
    last = store.last_audit()
    assert last is not None
    previous = store.audit_entries(last.sequence - 2, 1)[0] if last.sequence > 1 else None  # after is exclusive
    forged = seal(previous, last.time, last.kind, last.principal, {"forged": "yes"}, Ed25519PrivateKey.generate())
    database.execute(
        "UPDATE audit SET details = ?, hash = ?, signature = ? WHERE sequence = ?",
        (json.dumps(dict(forged.details)), forged.hash, forged.signature, last.sequence),
    )
    code, offline = offline_verify(gateway, tmp_path, capsys)
    assert (code, offline["intact"], offline["first_bad_sequence"]) == (1, False, last.sequence)
    assert "signature" in offline["problem"]
