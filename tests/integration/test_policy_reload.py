"""Hot reload of the policy on a real gateway: a broken file never replaces the policy in force, a valid edit
swaps in whole (by RPC and by the file watcher), every attempt is audited, and decisions made while the
policy flips are each made under exactly one version."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml

from gateway.app.config import REPO_POLICIES, load_gateway_config
from gateway.errors import ClientError
from gateway.jobs.model import Capability, JobSpec, JobState, Resources, StackRun
from gateway.transport.server import start_gateway
from tests.integration.harness import FEDERATION, GatewayHandle, LoopThread, Pki
from tests.waiting import eventually

BASE = (REPO_POLICIES / "federation.yaml").read_text()
NEWCO = BASE.replace("tenants:\n", "tenants:\n  - name: newco\n    projects: [{name: launch}]\n", 1)
BROKEN = BASE.replace("display_name: DeepSea AI", "display_nmae: DeepSea AI", 1)
BROKEN_LINE = next(i for i, line in enumerate(BROKEN.splitlines(), 1) if "display_nmae" in line)
SFT = JobSpec("deepsea-ai", "llama-sft", Resources("ascend-910b", None, 1), (StackRun("cann", "", ("true",)),))
LAUNCH = JobSpec("newco", "launch", Resources("ascend-910b", None, 1), (StackRun("cann", "", ("true",)),))


def version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def start_gateway_with_policy(
    pki: Pki, workdir: Path, loop: LoopThread, policy: Path, watch_s: float = 0
) -> GatewayHandle:
    """As `harness.start_test_gateway`, with the policy file given and the file watcher period set."""
    gateway_dir = pki.root / "gateway"
    config = {
        "apiVersion": "fedgate.io/v1",
        "kind": "Gateway",
        "federation": FEDERATION,
        "listen": "127.0.0.1:0",
        "tls": {k: str(gateway_dir / f"{k}.pem") for k in ("ca", "cert", "key")},
        "store": f"sqlite:///{workdir / 'gateway.db'}",
        "policy": str(policy),
        "authority": str(pki.root / "ca"),
        "audit_checkpoint": str(workdir / "audit-checkpoint.json"),  # the CA is shared, each store not
        "credential_check_s": 0.2,
        "report_interval_s": 0.5,
        "schedule_period_s": 0.2,
        "policy_watch_s": watch_s,
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return GatewayHandle(loop, loop.run(start_gateway(load_gateway_config(path))), pki)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy" / "federation.yaml"
    path.parent.mkdir()
    path.write_text(BASE)
    return path


@pytest.fixture
def gateway(pki: Pki, loop: LoopThread, tmp_path: Path, policy_file: Path) -> Iterator[GatewayHandle]:
    handle = start_gateway_with_policy(pki, tmp_path, loop, policy_file)
    yield handle
    handle.stop()


@pytest.fixture
def watched(pki: Pki, loop: LoopThread, tmp_path: Path, policy_file: Path) -> Iterator[GatewayHandle]:
    handle = start_gateway_with_policy(pki, tmp_path, loop, policy_file, watch_s=0.1)
    yield handle
    handle.stop()


def _refused_reason(gateway: GatewayHandle, user: tuple[str, str], spec: JobSpec) -> str:
    with gateway.client(gateway.pki.user(*user)) as client, pytest.raises(ClientError) as refused:
        client.create_job(spec)
    return refused.value.reason


def test_a_broken_file_leaves_the_old_policy_in_force(gateway: GatewayHandle, policy_file: Path) -> None:
    with gateway.client(gateway.pki.admin()) as admin, gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        assert admin.policy_status().version == version(BASE)
        policy_file.write_text(BROKEN)
        assert alice.create_job(SFT).state == JobState.QUEUED  # written, not yet reloaded
        with pytest.raises(ClientError) as refused:
            admin.reload_policy()
        assert refused.value.code == "INVALID_ARGUMENT" and refused.value.reason == "INVALID_CONFIG"
        status = admin.policy_status()
        assert status.version == version(BASE)
        assert f"{policy_file}:{BROKEN_LINE}: tenants[0].display_nmae: unknown key" in status.last_error
        assert alice.create_job(SFT).state == JobState.QUEUED  # still admitted, under the old policy
        kinds = [e.kind for e in admin.audit_events()]
        assert "policy.reload_refused" in kinds


def test_a_valid_edit_swaps_in_on_reload(gateway: GatewayHandle, policy_file: Path) -> None:
    assert _refused_reason(gateway, ("newco", "ann"), LAUNCH) == "UNKNOWN_TENANT"
    policy_file.write_text(NEWCO)
    with gateway.client(gateway.pki.admin()) as admin:
        assert admin.reload_policy() == (version(NEWCO), True)
        status = admin.policy_status()
        assert (status.version, status.last_error, status.tenants) == (version(NEWCO), "", 3)
        assert admin.reload_policy() == (version(NEWCO), False)  # the same file again changes nothing
        audited = [e for e in admin.audit_events() if e.kind == "policy.reloaded"]
        assert [e.details["version"] for e in audited] == [version(NEWCO)] * 2
        assert audited[0].details["changed"] == "true" and audited[1].details["changed"] == "false"
    with gateway.client(gateway.pki.user("newco", "ann")) as ann:
        assert ann.create_job(LAUNCH).state == JobState.QUEUED


def test_the_file_watcher_swaps_in_a_valid_edit_and_refuses_a_broken_one(
    watched: GatewayHandle, policy_file: Path
) -> None:
    with watched.client(watched.pki.admin()) as admin:
        policy_file.write_text(BROKEN)
        eventually(lambda: "display_nmae" in admin.policy_status().last_error, what="the refused reload")
        assert admin.policy_status().version == version(BASE)
        with watched.client(watched.pki.user("deepsea-ai", "alice")) as alice:
            assert alice.create_job(SFT).state == JobState.QUEUED
        policy_file.write_text(NEWCO)
        eventually(lambda: admin.policy_status().version == version(NEWCO), what="the watcher's reload")
        assert admin.policy_status().last_error == ""
        events = {e.kind: e for e in admin.audit_events() if e.kind.startswith("policy.")}
        assert events["policy.reload_refused"].details["trigger"] == "file change"
        assert "display_nmae" in events["policy.reload_refused"].details["error"]
        assert events["policy.reloaded"].details == {"trigger": "file change", "version": version(NEWCO)}
    with watched.client(watched.pki.user("newco", "ann")) as ann:
        assert ann.create_job(LAUNCH).state == JobState.QUEUED


# ---- decisions while the policy flips --------------------------------------------------------------------

RULES = "rules:\n  - {{name: no-{0}, effect: deny, message: not {0} today, match: {{classes: [nvidia-{0}]}}}}\n"
FLIP_A = BASE + RULES.format("h20")
FLIP_B = BASE + RULES.format("h100")
ANY_CUDA = JobSpec(
    "deepsea-ai",
    "llama-sft",
    Resources("", Capability(min_memory_gib=80, stacks=("cuda",)), 1),
    (StackRun("cuda", "", ("true",)),),
)
MESSAGE = "tenant deepsea-ai/llama-sft may run on: {} (rules: {})"
EXPECTED = {
    version(FLIP_A): MESSAGE.format("nvidia-h100, nvidia-h200, nvidia-a100, nvidia-a800", "no-h20"),
    version(FLIP_B): MESSAGE.format("nvidia-h200, nvidia-h20, nvidia-a100, nvidia-a800", "no-h100"),
}


def _made_more_than(seen: dict[str, int], problems: list[str], count: int) -> bool:
    return sum(seen.values()) > count or bool(problems)


def test_decisions_while_the_policy_flips_are_each_made_under_one_version(
    gateway: GatewayHandle, policy_file: Path
) -> None:
    policy_file.write_text(FLIP_A)
    seen: dict[str, int] = dict.fromkeys(EXPECTED, 0)
    problems: list[str] = []
    done = threading.Event()

    def submit() -> None:
        try:
            with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
                while not done.is_set():
                    explanation = alice.explain_job(spec=ANY_CUDA)
                    admitted = explanation.reasons[0].message
                    if EXPECTED.get(explanation.policy_version) != admitted:
                        problems.append(f"{explanation.policy_version[:12]}: {admitted}")
                    seen[explanation.policy_version] = seen.get(explanation.policy_version, 0) + 1
                    job = alice.create_job(ANY_CUDA)
                    if job.reasons[0].message not in EXPECTED.values():
                        problems.append(f"job {job.job_id}: {job.reasons[0].message}")
        except Exception as exc:  # the test fails on anything the loop did not expect
            problems.append(repr(exc))

    with gateway.client(gateway.pki.admin()) as admin:
        admin.reload_policy()
        thread = threading.Thread(target=submit)
        thread.start()
        try:
            for flip in range(20):
                policy_file.write_text(FLIP_B if flip % 2 == 0 else FLIP_A)
                admin.reload_policy()
                wanted = 2 * (flip + 1)  # a few decisions under each version before the next flip
                eventually(partial(_made_more_than, seen, problems, wanted), what="decisions")
        finally:
            done.set()
            thread.join(30)
        assert admin.policy_status().version == version(FLIP_A)
    assert not problems, problems[:5]
    assert all(count > 0 for count in seen.values()), seen
    assert set(seen) == set(EXPECTED)
