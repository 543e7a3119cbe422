"""A real `fedgate agent run` with the local backend, killed with -9 while its jobs run, then started again: the
restarted agent adopts the job that still runs and reports its real exit code once, reports the real outcome of
a job that ended while it was dead (also one whose command was killed), reports LOST a job whose whole process
group was killed (the gateway queues it again under epoch 2), and never hands a device to two live jobs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.jobs.model import Job, JobSpec, JobState, Resources, StackRun
from tests.integration.harness import AgentProcess, GatewayHandle, wait_for_capacity
from tests.waiting import alive, eventually

CARDS = 4
POOLS = [{"class": "ascend-910b", "cards": CARDS, "offered": CARDS, "cards_per_node": CARDS}]
# The job: writes who it is and which devices it was given, then waits for its release file (argv[1]) and exits
# with argv[2].
JOB = (
    "import json, os, sys, time\n"
    "identity = {'pid': os.getpid(), 'group': os.getpgid(0),"
    " 'devices': os.environ['ASCEND_RT_VISIBLE_DEVICES']}\n"
    "open('identity.json.partial', 'w').write(json.dumps(identity))\n"
    "os.replace('identity.json.partial', 'identity.json')\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.02)\n"
    "sys.exit(int(sys.argv[2]))\n"
)


class Site(AgentProcess):
    """centre-a's agent as its own process, which the test may kill with -9 and start again."""

    def __init__(self, gateway: GatewayHandle, root: Path) -> None:
        super().__init__(gateway, root, "centre-a", POOLS, report_interval_s=0.5)

    def identity(self, job_id: str, epoch: int) -> dict[str, object] | None:
        path = self.jobs / job_id / str(epoch) / "identity.json"
        return json.loads(path.read_text()) if path.exists() else None

    def exit_file(self, job_id: str, epoch: int) -> Path:
        return self.jobs / job_id / str(epoch) / "exit_code"

    def groups(self) -> list[int]:
        """The process group of every attempt started so far."""
        found = (json.loads(p.read_text()) for p in self.jobs.glob("*/*/identity.json"))
        return [int(i["group"]) for i in found]


@pytest.fixture
def site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[Site]:
    made = Site(gateway, tmp_path / "agent")
    yield made
    if made.process is not None and made.process.poll() is None:
        made.kill()
    for group in made.groups():  # the jobs outlive the agent by design: end them with the test
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def spec(release: Path, code: int) -> JobSpec:
    command = ("python3", "-c", JOB, str(release), str(code))
    return JobSpec("deepsea-ai", "llama-sft", Resources("ascend-910b", None, 1), (StackRun("cann", "", command),))


def test_a_killed_local_agent_adopts_its_jobs_reports_each_truly_and_never_double_books_a_device(
    gateway: GatewayHandle, site: Site, tmp_path: Path
) -> None:
    release = {name: tmp_path / f"release-{name}" for name in ("keep", "done", "never")}
    site.start()
    wait_for_capacity(gateway, "centre-a")
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        jobs = {
            "keep": alice.create_job(spec(release["keep"], 3)),  # runs through the agent's death
            "done": alice.create_job(spec(release["done"], 0)),  # ends while the agent is dead
            "shot": alice.create_job(spec(release["never"], 0)),  # its command is killed while the agent is dead
            "gone": alice.create_job(spec(release["never"], 0)),  # its whole group is killed: no trace
        }
        ids = {name: job.job_id for name, job in jobs.items()}

        def state(name: str) -> Job:
            return alice.get_job(ids[name])

        for name in ids:
            eventually(lambda n=name: state(n).state == JobState.RUNNING, what=f"job {name} to run")  # type: ignore[misc]
            eventually(lambda n=name: site.identity(ids[n], 1) is not None, what=f"job {name} to start")  # type: ignore[misc]
        first = {name: site.identity(ids[name], 1) for name in ids}

        site.kill()  # kill -9: no drain, no final updates
        release["done"].touch()
        eventually(site.exit_file(ids["done"], 1).exists, what="the ended job's exit file")
        os.kill(int(str(first["shot"]["pid"])), signal.SIGKILL)  # type: ignore[index]
        eventually(site.exit_file(ids["shot"], 1).exists, what="the killed command's exit file")
        gone_group = int(str(first["gone"]["group"]))  # type: ignore[index]
        os.killpg(gone_group, signal.SIGKILL)
        eventually(lambda: not alive(gone_group), what="the lost job's wrapper to die")
        assert alive(int(str(first["keep"]["pid"])))  # type: ignore[index]  # orphaned, still running

        site.start()
        eventually(lambda: state("done").state == JobState.SUCCEEDED, what="the outcome of the job that ended")
        eventually(lambda: state("shot").state == JobState.FAILED, what="the outcome of the killed command")
        assert state("shot").exit_code == 137
        # Lost, not failed: the gateway queues it again, and it runs as a new attempt under a new epoch.
        eventually(lambda: state("gone").state == JobState.RUNNING and state("gone").epoch == 2, what="a new epoch")
        assert state("gone").attempt == 2
        gone_events = [e.state for e in gateway.running.core.store.events(ids["gone"])]
        assert JobState.LOST in gone_events and JobState.FAILED not in gone_events
        assert state("keep").state == JobState.RUNNING

        # New work on the freed devices: every card is now held by exactly one live job.
        ids["new1"] = alice.create_job(spec(release["never"], 0)).job_id
        ids["new2"] = alice.create_job(spec(release["never"], 0)).job_id
        live = {"keep": 1, "gone": 2, "new1": 1, "new2": 1}
        for name, epoch in live.items():
            eventually(lambda n=name, e=epoch: site.identity(ids[n], e) is not None, what=f"job {name} to start")  # type: ignore[misc]
        held: dict[str, set[str]] = {}
        for name, epoch in live.items():
            identity = site.identity(ids[name], epoch)
            assert identity is not None and alive(int(str(identity["pid"]))), name
            held[name] = set(str(identity["devices"]).split(","))
        for name, devices in held.items():
            others = set().union(*(d for other, d in held.items() if other != name))
            assert not devices & others, f"{name} shares devices {devices & others} with another live job"
        assert len(set().union(*held.values())) == CARDS

        # The adopted job ends with its real exit code, reported once.
        release["keep"].touch()
        eventually(lambda: state("keep").state == JobState.FAILED, what="the adopted job's end")
        assert state("keep").exit_code == 3
        keep_events = [e.state for e in gateway.running.core.store.events(ids["keep"])]
        assert keep_events.count(JobState.FAILED) == 1 and JobState.LOST not in keep_events
