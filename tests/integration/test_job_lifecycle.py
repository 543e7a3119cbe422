"""A job's life through real parts: JobService over mTLS, the gateway, a real agent, a real process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import ClientError
from gateway.jobs.model import Capability, JobSpec, JobState, Resources, StackRun
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.jobs import shared_folder
from tests.waiting import alive, eventually

PRINT_ENV = (
    "import os; print('job', os.environ['FEDGATE_JOB_ID'], 'attempt', os.environ['FEDGATE_ATTEMPT'],"
    " 'devices', os.environ.get('ASCEND_RT_VISIBLE_DEVICES', os.environ.get('CUDA_VISIBLE_DEVICES')))"
)


def spec(command: tuple[str, ...], **changes: object) -> JobSpec:
    base: dict[str, object] = {
        "tenant": "deepsea-ai",
        "project": "llama-sft",
        "resources": Resources("ascend-910b", None, 2),
        "runs": (StackRun("cann", "", command),),
    }
    base.update(changes)
    return JobSpec(**base)  # type: ignore[arg-type]


@pytest.fixture
def ascend_site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    agent = start_test_agent(
        gateway, "centre-a", [{"class": "ascend-910b", "cards": 8, "offered": 4, "cards_per_node": 8}], tmp_path / "a"
    )
    wait_for_capacity(gateway, "centre-a")
    yield agent
    agent.stop()


def test_submitted_job_runs_on_the_agent_and_succeeds(gateway: GatewayHandle, ascend_site: AgentHandle) -> None:
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(spec(("python3", "-c", PRINT_ENV)))
        # The watch starts after the submission: a job this quick may have ended by then, so the watch shows a
        # tail of its history (at least the current state), and the stored history shows all of it.
        watched = [event.state for event, _ in alice.watch_job(job.job_id, timeout=20)]
        final = alice.get_job(job.job_id)
    assert final.state == JobState.SUCCEEDED, final.reasons
    assert watched[-1] == JobState.SUCCEEDED
    assert final.attempt == 1 and final.epoch == 1 and final.exit_code == 0
    assert final.placements[0].site == "centre-a" and len(final.placements[0].device_indices) == 2
    log = ascend_site.workdir / "jobs" / job.job_id / "1" / "output.log"
    assert f"job {job.job_id} attempt 1 devices" in log.read_text()
    history = [e.state for e in gateway.running.core.store.events(job.job_id)]
    assert history == [JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING, JobState.SUCCEEDED]
    assert in_order_within(watched, history), (watched, history)


def in_order_within(part: list[JobState], whole: list[JobState]) -> bool:
    """Is `part` a subsequence of `whole` (each element found after the previous one)? A state seen twice in a
    row counts once: the watch's "current state" may also arrive as the event that made it current."""
    rest = iter(whole)
    return all(state in rest for i, state in enumerate(part) if i == 0 or state != part[i - 1])


def held_until(release: Path) -> tuple[str, ...]:
    """A job that runs until the file `release` exists (the test says when it ends, not a timer)."""
    return (
        "python3",
        "-c",
        f"import pathlib, time\nwhile not pathlib.Path({str(release)!r}).exists():\n    time.sleep(0.05)",
    )


def test_failing_command_ends_failed_with_its_exit_code(gateway: GatewayHandle, ascend_site: AgentHandle) -> None:
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(spec(("python3", "-c", "raise SystemExit(3)")))
        for _ in alice.watch_job(job.job_id, timeout=20):
            pass
        final = alice.get_job(job.job_id)
    assert final.state == JobState.FAILED and final.exit_code == 3


def test_cancel_stops_a_running_job_at_the_site(gateway: GatewayHandle, ascend_site: AgentHandle) -> None:
    pid_file = shared_folder(ascend_site.workdir / "shared") / "job.pid"  # written by the job, run as nobody
    script = (  # says its pid (whole: written aside, then renamed), then runs until stopped
        f"import os, pathlib, time\np = pathlib.Path({str(pid_file)!r})\n"
        "p.with_suffix('.tmp').write_text(str(os.getpid())); p.with_suffix('.tmp').rename(p)\ntime.sleep(120)"
    )
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(spec(("python3", "-c", script)))
        eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, what="the job to run")
        eventually(pid_file.exists, what="the job to say its pid")
        pid = int(pid_file.read_text())
        assert alive(pid)
        assert alice.cancel_job(job.job_id, "changed my mind").state == JobState.CANCELLED
        eventually(lambda: not alive(pid), what="the job's process to end after the cancel")
        eventually(lambda: ascend_site_free(gateway) == 4, what="the site to report its cards free again")
        # The agent's word on the stopped process comes after the cancel; the job keeps it (SIGTERM: 143).
        eventually(lambda: alice.get_job(job.job_id).exit_code == 143, what="the agent's exit code on the job")
        assert alice.get_job(job.job_id).state == JobState.CANCELLED


def ascend_site_free(gateway: GatewayHandle) -> int:
    with gateway.client(gateway.pki.admin()) as admin:
        return sum(p.free for s in admin.list_sites() for p in s.pools)


def test_jobs_beyond_the_offer_wait_with_a_reason_then_run(gateway: GatewayHandle, ascend_site: AgentHandle) -> None:
    release = ascend_site.workdir / "release"
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        # The first job holds the whole offer until the test releases it: however slow this machine, the
        # second cannot have started by the time it is looked at.
        first = alice.create_job(spec(held_until(release), resources=Resources("ascend-910b", None, 4)))
        second = alice.create_job(spec(held_until(release), resources=Resources("ascend-910b", None, 4)))
        eventually(lambda: alice.get_job(first.job_id).state == JobState.RUNNING, what="the first job to run")
        waiting = alice.get_job(second.job_id)
        assert waiting.state == JobState.QUEUED
        assert any(r.code == "NO_FREE_CAPACITY" for r in waiting.reasons), waiting.reasons
        explanation = alice.explain_job(second.job_id)
        assert explanation.admitted and not any(c.feasible for c in explanation.candidates)
        release.touch()
        eventually(lambda: alice.get_job(second.job_id).state == JobState.SUCCEEDED, timeout=20, what="second job")


def test_capability_request_runs_the_matching_stack(gateway: GatewayHandle, ascend_site: AgentHandle) -> None:
    runs = (
        StackRun("cuda", "", ("python3", "-c", "raise SystemExit(9)")),
        StackRun("cann", "", ("python3", "-c", "import os; assert os.environ['ASCEND_RT_VISIBLE_DEVICES']")),
    )
    capability = Resources("", Capability(min_memory_gib=32, stacks=("cuda", "cann")), 1)
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(spec((), runs=runs, resources=capability))
        eventually(lambda: alice.get_job(job.job_id).state.terminal, what="the job to end")
        final = alice.get_job(job.job_id)
    assert final.state == JobState.SUCCEEDED and final.placements[0].accelerator_class == "ascend-910b"


def test_same_request_id_returns_the_same_job(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        first = alice.create_job(spec(("true",)), request_id="retry-1")
        again = alice.create_job(spec(("true",)), request_id="retry-1")
        assert again.job_id == first.job_id
        assert len(alice.list_jobs()) == 1


def test_unknown_project_is_refused_with_its_reason(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice, pytest.raises(ClientError) as refused:
        alice.create_job(spec(("true",), project="nope"))
    # One kind of error, one code: a request naming what the federation does not define, like an unknown class.
    assert refused.value.code == "INVALID_ARGUMENT" and refused.value.reason == "UNKNOWN_PROJECT"
    assert "llama-sft" in refused.value.message
    assert [(v.field, v.reason) for v in refused.value.violations] == [("spec.project", "UNKNOWN_PROJECT")]
    assert refused.value.metadata["field"] == "spec.project" and refused.value.metadata["stage"] == "policy"
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice, pytest.raises(ClientError) as unknown:
        alice.create_job(spec(("true",), resources=Resources("no-such-class", None, 2)))
    assert (unknown.value.code, unknown.value.reason) == ("INVALID_ARGUMENT", "UNKNOWN_ACCELERATOR_CLASS")
    assert [v.field for v in unknown.value.violations] == ["spec.resources.accelerator_class"]


def test_job_preempted_by_a_stopping_agent_runs_again_as_a_new_attempt(gateway: GatewayHandle, tmp_path: Path) -> None:
    pools = [{"class": "ascend-910b", "cards": 8, "offered": 4, "cards_per_node": 8}]
    first = start_test_agent(gateway, "centre-a", pools, tmp_path / "first", cancel_grace_s=1)
    script = "import os, time\nif os.environ['FEDGATE_ATTEMPT'] == '1':\n    time.sleep(60)"
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(spec(("python3", "-c", script)))
        eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, what="the first attempt to run")
        first.stop()
        requeued = alice.get_job(job.job_id)
        assert requeued.state == JobState.QUEUED and requeued.attempt == 1
        second = start_test_agent(gateway, "centre-a", pools, tmp_path / "second")
        try:
            eventually(lambda: alice.get_job(job.job_id).state.terminal, timeout=20, what="the second attempt")
            final = alice.get_job(job.job_id)
        finally:
            second.stop()
    assert final.state == JobState.SUCCEEDED
    assert (final.attempt, final.epoch) == (2, 2)
    states = [e.state for e in gateway.running.core.store.events(job.job_id)]
    assert states == [
        JobState.QUEUED,
        JobState.DISPATCHED,
        JobState.RUNNING,
        JobState.PREEMPTED,
        JobState.QUEUED,
        JobState.DISPATCHED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
