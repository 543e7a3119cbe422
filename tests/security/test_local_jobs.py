"""A tenant's job on a site's `local` backend, tried as a tenant who wants the site's key: it looks for the key
the agent signs with (by the relative path that once worked, and by its absolute path), prints the agent's
environment to find a secret set on the agent, and writes into the agent's state folder. Each must fail: the
agent here runs as root, so jobs run as `nobody` with a scrubbed environment, and the agent refuses to start
when its secrets are open to that user."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.backends import localguard
from agents.backends.base import BackendSettings
from agents.backends.local import LocalBackend
from agents.backends.localguard import LocalOptions
from agents.errors import ConfigError
from gateway.errors import ClientError
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.jobs import JOB_PYTHON, reachable
from tests.security.support import BOB
from tests.waiting import eventually

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="jobs switch to an unprivileged user only under root")

SITE = "centre-c"
SECRET = "agent-secret-7f3a"
# The attacker's job: report, as JSON on stdout, what it could reach.
ATTACK = r"""
import json, os, sys
key, state = sys.argv[1], sys.argv[2]
found = {"uid": os.getuid(), "env_secret": [k for k, v in os.environ.items() if "agent-secret" in v],
         "home": os.environ.get("HOME", ""), "read": [], "wrote": []}
for path in [key, "../../../key.pem", "../../../../key.pem", "../../../state/journal.db",
             os.path.join(state, "journal.db")]:
    try:
        with open(path, "rb") as f:
            f.read(1)
        found["read"].append(path)
    except OSError:
        pass
for path in [os.path.join(state, "planted"), "../../../state/planted", os.path.join(os.path.dirname(key), "x")]:
    try:
        with open(path, "w") as f:
            f.write("x")
        found["wrote"].append(path)
    except OSError:
        pass
print(json.dumps(found))
"""


@pytest.fixture
def agent(gateway: GatewayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentHandle]:
    monkeypatch.setenv("FEDGATE_AGENT_TOKEN", SECRET)  # the agent's own settings and secrets
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    pools = [{"class": "nvidia-h20", "cards": 8, "offered": 8, "cards_per_node": 8}]
    handle = start_test_agent(gateway, SITE, pools, tmp_path / "site")
    wait_for_capacity(gateway, SITE)
    yield handle
    handle.stop()


def test_a_local_job_cannot_read_the_agents_key_environment_or_state(
    gateway: GatewayHandle, agent: AgentHandle
) -> None:
    key = gateway.pki.site(SITE) / "key.pem"
    state = agent.workdir / "state"
    spec = JobSpec(
        "panda-lm",
        "eval",
        Resources("nvidia-h20", None, 1),
        (StackRun("cuda", "", (JOB_PYTHON, "-c", ATTACK, str(key), str(state))),),
    )
    with gateway.client(gateway.pki.user(*BOB)) as bob:
        job = bob.create_job(spec)
        eventually(lambda: bob.get_job(job.job_id).state.terminal, timeout=30, what="the attack job to end")
        output = b"".join(p.data for p in bob.stream_job_logs(job.job_id, timeout=20))
        ended = bob.get_job(job.job_id)
        assert ended.state == JobState.SUCCEEDED, (ended.reasons, output)
    found = json.loads(output.decode().strip().splitlines()[-1])
    assert found["uid"] != 0
    assert found["env_secret"] == [], "the agent's environment reached the job"
    assert found["read"] == [], f"the job read the agent's secrets: {found['read']}"
    assert found["wrote"] == [], f"the job wrote into the agent's folders: {found['wrote']}"
    assert found["home"].endswith(f"{job.job_id}/1") or "/jobs/" in found["home"]
    assert not (state / "planted").exists()


def test_a_job_cannot_have_the_agent_serve_the_key_as_its_output(gateway: GatewayHandle, agent: AgentHandle) -> None:
    key = gateway.pki.site(SITE) / "key.pem"
    swap = (  # replace its own output.log (in a folder it owns) by a link to the key, then end
        "import os, sys\nprint('swapping', flush=True)\n"
        "os.remove('output.log')\nos.symlink(sys.argv[1], 'output.log')\n"
    )
    spec = JobSpec(
        "panda-lm",
        "eval",
        Resources("nvidia-h20", None, 1),
        (StackRun("cuda", "", (JOB_PYTHON, "-c", swap, str(key))),),
    )
    with gateway.client(gateway.pki.user(*BOB)) as bob:
        job = bob.create_job(spec)
        eventually(lambda: bob.get_job(job.job_id).state.terminal, timeout=30, what="the job to end")
        try:
            output = b"".join(p.data for p in bob.stream_job_logs(job.job_id, timeout=20))
        except ClientError as refused:
            output = refused.message.encode()
    assert b"PRIVATE KEY" not in output and key.read_bytes()[40:80] not in output


def test_the_agent_refuses_to_start_when_its_key_is_open_to_the_job_user(tmp_path: Path) -> None:
    creds = reachable(tmp_path / "creds")
    (creds / "key.pem").write_text("not really a key")
    (creds / "key.pem").chmod(0o644)
    backend = LocalBackend(_settings(tmp_path))
    with pytest.raises(ConfigError) as refused:
        backend.guard_secrets(creds / "key.pem", None)
    assert "nobody" in refused.value.message and "key.pem" in refused.value.message
    (creds / "key.pem").chmod(0o600)
    state = reachable(tmp_path / "state")
    state.chmod(0o777)
    with pytest.raises(ConfigError):
        backend.guard_secrets(creds / "key.pem", state)
    state.chmod(0o700)
    backend.guard_secrets(creds / "key.pem", state)  # closed: the agent starts


def test_run_as_is_refused_unless_the_agent_is_root() -> None:
    with pytest.raises(ConfigError) as refused:
        localguard.job_user(LocalOptions(run_as="nobody"), euid=1000)
    assert "root" in refused.value.message
    assert localguard.job_user(LocalOptions(), euid=1000) is None
    assert localguard.job_user(LocalOptions(), euid=0).name == "nobody"  # type: ignore[union-attr]


def _settings(tmp_path: Path) -> BackendSettings:
    return BackendSettings("local", reachable(tmp_path / "work"), LocalOptions())
