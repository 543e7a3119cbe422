"""A task that must run as long as the agent dies: the real `fedgate agent run` process drains (its running job
is stopped and reported, as on SIGTERM) and exits non-zero, saying which task died and why, so that its own
supervisor restarts it. The backend used is the simulated one with a watch hook that breaks once a job runs:
the way a Slurm or Kubernetes backend's watch would end, with no test hook in the agent's code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import GatewayHandle
from tests.waiting import eventually

# Runs the agent's own command line (`agents.cli.main.main`, what `fedgate agent run` calls) after registering a
# backend type whose watch hook raises once it has launched a job.
AGENT = textwrap.dedent(
    """
    import asyncio
    import sys

    from agents.backends import registry
    from agents.backends.simulated import SimulatedBackend

    class BreakingWatch(SimulatedBackend):
        def __init__(self, settings):
            super().__init__(settings)
            self.launched = asyncio.Event()

        async def launch(self, spec):
            handle = await super().launch(spec)
            self.launched.set()
            return handle

        async def watch(self):
            await self.launched.wait()
            raise RuntimeError("the engine's event stream broke")

    simulated = registry.BACKEND_TYPES["simulated"]
    registry.BACKEND_TYPES["breaking"] = registry.BackendType(
        factory=BreakingWatch, options=simulated.options, summary="test", read_options=simulated.read_options
    )
    from agents.cli.main import main

    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_dead_long_lived_task_stops_the_agent_process_with_a_non_zero_exit(
    gateway: GatewayHandle, tmp_path: Path
) -> None:
    creds = gateway.pki.site("centre-d")
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Agent",
                "site": "centre-d",
                "gateway": gateway.address,
                "tls": {k: str(creds / f"{k}.pem") for k in ("ca", "cert", "key")},
                "backend": {"type": "breaking", "default_duration_s": 600},
                "report_interval_s": 0.5,
                "state_dir": str(tmp_path / "state"),
                "pools": [{"class": "nvidia-h100", "cards": 8, "offered": 8, "cards_per_node": 8}],
            }
        )
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with gateway.client(gateway.pki.admin()) as admin:
            eventually(
                lambda: agent.poll() is not None or any(s.name == "centre-d" and s.pools for s in admin.list_sites()),
                what="capacity",
            )
        assert agent.poll() is None, agent.communicate()[1]
        spec = JobSpec(
            tenant="deepsea-ai",
            project="llama-sft",
            resources=Resources("nvidia-h100", None, 2),
            runs=(StackRun("cuda", "", ("train",)),),
        )
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(spec)
            code = agent.wait(timeout=30)
            _, stderr = agent.communicate(timeout=5)

            # The drain stopped the job and reported it before the process went: the gateway does not wait
            # for a lease to expire to know the attempt is over. (The job is then queued again and may already
            # be dispatched anew, so the stored history is what tells, not the job's state of the moment.)
            def first_attempt_ended() -> bool:
                events = gateway.running.core.store.events(job.job_id)
                return any(e.attempt == 1 and e.state == JobState.PREEMPTED for e in events)

            eventually(first_attempt_ended, what="the drained attempt reported PREEMPTED")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(5)
    assert code == 1, stderr
    assert (
        "agent[centre-d]: task 'simulated watch' died: RuntimeError: the engine's event stream broke; stopping"
        in stderr
    )
    assert "Traceback" in stderr
    assert "exit 1 so that the agent's supervisor restarts it" in stderr
    history = [(e.attempt, e.state) for e in gateway.running.core.store.events(job.job_id)]
    assert (1, JobState.RUNNING) in history and history.index((1, JobState.RUNNING)) < history.index(
        (1, JobState.PREEMPTED)
    ), history
