"""Preemption through real parts: JobService over mTLS, the gateway's cycle, a real agent, real processes."""

from __future__ import annotations

from pathlib import Path

from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import GatewayHandle, start_test_agent, wait_for_capacity
from tests.jobs import shared_folder
from tests.waiting import eventually

# Attempt 1 runs until stopped; on SIGTERM it checkpoints (noting the grace it was told) and exits at once.
# A later attempt finds the checkpoint and finishes.
TRAINER = """\
import os, pathlib, signal, sys, time
folder = pathlib.Path({folder!r})
attempt = os.environ['FEDGATE_ATTEMPT']
def checkpoint(*_):
    (folder / f'checkpoint-{{attempt}}').write_text(os.environ['FEDGATE_PREEMPT_GRACE_S'])
    sys.exit(0)
signal.signal(signal.SIGTERM, checkpoint)
(folder / f'ready-{{attempt}}').touch()
if attempt == '1':
    time.sleep(120)
else:
    (folder / 'resumed').write_text(','.join(sorted(p.name for p in folder.glob('checkpoint-*'))))
"""


def spec(command: tuple[str, ...], priority: str) -> JobSpec:
    return JobSpec(
        tenant="deepsea-ai",
        project="llama-sft",
        resources=Resources("ascend-910b", None, 4),
        runs=(StackRun("cann", "", command),),
        priority_class=priority,
    )


def test_a_high_priority_job_preempts_a_low_one_which_checkpoints_and_runs_again(
    gateway: GatewayHandle, tmp_path: Path
) -> None:
    pools = [{"class": "ascend-910b", "cards": 8, "offered": 4, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-a", pools, tmp_path / "agent")
    folder = shared_folder(tmp_path / "trainer")  # the job (run as nobody) writes its checkpoints here
    try:
        wait_for_capacity(gateway, "centre-a")
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            low = alice.create_job(spec(("python3", "-c", TRAINER.format(folder=str(folder))), "low"))
            eventually((folder / "ready-1").exists, what="the low job to run and trap SIGTERM")
            high = alice.create_job(spec(("python3", "-c", "import time; time.sleep(0.5)"), "high"))
            eventually(lambda: alice.get_job(high.job_id).state.terminal, timeout=30, what="the high job to run")
            eventually(lambda: alice.get_job(low.job_id).state.terminal, timeout=30, what="the low job's 2nd attempt")
            final_high, final_low = alice.get_job(high.job_id), alice.get_job(low.job_id)
    finally:
        agent.stop()
    assert final_high.state == JobState.SUCCEEDED, final_high.reasons
    assert (folder / "checkpoint-1").read_text() == "30"  # SIGTERM came with the low class's grace
    assert (folder / "resumed").read_text() == "checkpoint-1"
    assert final_low.state == JobState.SUCCEEDED, final_low.reasons
    assert (final_low.attempt, final_low.epoch) == (2, 2)
    store = gateway.running.core.store
    assert [e.state for e in store.events(low.job_id)] == [
        JobState.QUEUED,
        JobState.DISPATCHED,
        JobState.RUNNING,
        JobState.PREEMPTED,
        JobState.QUEUED,
        JobState.DISPATCHED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    high_started = next(e.time for e in store.events(high.job_id) if e.state == JobState.RUNNING)
    low_stopped = next(e.time for e in store.events(low.job_id) if e.state == JobState.PREEMPTED)
    assert low_stopped <= high_started  # the high job ran on the cards the low one gave back
