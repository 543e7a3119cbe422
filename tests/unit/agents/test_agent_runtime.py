"""The runtime without any server: launches, epochs, device allocation, capacity, stops and the journal."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from agents.backends.base import BackendSettings
from agents.core.commands import Cancel, Drain, Launch, Preempt, Reserve, UpdateRejected, UpdatesAcknowledged
from agents.core.config import AgentConfig, TlsFiles
from agents.core.model import JobState, PoolSpec
from agents.core.runtime import SiteRuntime
from agents.journal.base import MemoryJournal
from tests.waiting import eventually_async

from .fakes import FakeBackend

H100 = PoolSpec("nvidia-h100", cards=8, offered=4, cards_per_node=8, stack="cuda")
ASCEND = PoolSpec("ascend-910b", cards=16, offered=16, cards_per_node=8)


def make_config(*pools: PoolSpec) -> AgentConfig:
    return AgentConfig(
        site="centre-a",
        gateway="127.0.0.1:1",
        tls=TlsFiles(Path("ca"), Path("cert"), Path("key")),
        backend=BackendSettings(type="fake", workdir=Path("/nonexistent")),
        pools=pools or (H100, ASCEND),
        cancel_grace_s=0.5,
    )


def launch(
    job: str = "j1", epoch: int = 1, cards: int = 2, cls: str = "nvidia-h100", max_runtime_s: float = 0.0
) -> Launch:
    return Launch(job, epoch, 1, accelerator_class=cls, cards=cards, command=("x",), max_runtime_s=max_runtime_s)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def journal() -> MemoryJournal:
    return MemoryJournal()


@pytest.fixture
def runtime(backend: FakeBackend, journal: MemoryJournal) -> SiteRuntime:
    return SiteRuntime(make_config(), backend, journal)


def free(runtime: SiteRuntime, cls: str = "nvidia-h100") -> int:
    return next(p.free for p in runtime.capacity() if p.accelerator_class == cls)


async def settle() -> None:
    for _ in range(5):  # let watcher and cancel tasks run
        await asyncio.sleep(0)


async def test_launch_reports_running_with_its_devices(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch(cards=2))
    (update,) = runtime.unacknowledged_updates()
    assert (update.job_id, update.epoch, update.state, update.sequence) == ("j1", 1, JobState.RUNNING, 1)
    assert update.device_indices == (0, 1)
    assert backend.launched[0].devices == (0, 1)
    assert backend.launched[0].stack == "cuda"  # from the pool when the launch names none
    assert free(runtime) == 2
    assert [r.job_id for r in runtime.running()] == ["j1"]


async def test_job_end_reports_success_and_frees_devices(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch())
    backend.finish("j1", 1, exit_code=0)
    await settle()
    final = runtime.unacknowledged_updates()[-1]
    assert (final.state, final.exit_code, final.message) == (JobState.SUCCEEDED, 0, "exited with code 0")
    assert free(runtime) == 4
    assert runtime.running() == []


async def test_non_zero_exit_is_failed_with_its_code(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch())
    backend.finish("j1", 1, exit_code=3)
    await settle()
    final = runtime.unacknowledged_updates()[-1]
    assert (final.state, final.exit_code, final.message) == (JobState.FAILED, 3, "exited with code 3")


async def test_launch_is_idempotent_by_job_and_epoch(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch())
    await runtime.handle(launch())
    assert len(backend.launched) == 1
    first, again = runtime.unacknowledged_updates()
    assert again.state is JobState.RUNNING and again.device_indices == first.device_indices
    assert again.sequence == first.sequence + 1
    assert free(runtime) == 2


async def test_repeated_launch_of_an_ended_attempt_re_reports_its_end(
    runtime: SiteRuntime, backend: FakeBackend
) -> None:
    await runtime.handle(launch())
    backend.finish("j1", 1, exit_code=1)
    await settle()
    await runtime.handle(launch())
    assert len(backend.launched) == 1
    assert runtime.unacknowledged_updates()[-1].state is JobState.FAILED


async def test_launch_with_stale_epoch_is_refused(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch(epoch=5))
    await runtime.handle(launch(epoch=4))
    assert [s.epoch for s in backend.launched] == [5]
    assert [u.epoch for u in runtime.unacknowledged_updates()] == [5]  # stale launch: logged, not reported


async def test_newer_epoch_supersedes_the_live_attempt(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch(epoch=1))
    await runtime.handle(launch(epoch=2))
    await settle()
    states = [(u.epoch, u.state) for u in runtime.unacknowledged_updates()]
    assert states == [(1, JobState.RUNNING), (2, JobState.RUNNING), (1, JobState.CANCELLED)]
    assert [r.epoch for r in runtime.running()] == [2]


async def test_launch_for_an_unknown_class_fails_naming_the_problem(runtime: SiteRuntime) -> None:
    await runtime.handle(launch(cls="nvidia-b200"))
    (update,) = runtime.unacknowledged_updates()
    assert update.state is JobState.FAILED
    assert "no pool of nvidia-b200" in update.message and "ascend-910b, nvidia-h100" in update.message


async def test_launch_needing_more_cards_than_free_fails(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch(job="a", cards=3))
    await runtime.handle(launch(job="b", cards=2))
    failed = runtime.unacknowledged_updates()[-1]
    assert (failed.job_id, failed.state) == ("b", JobState.FAILED)
    assert failed.message == "the launch needs 2 cards of nvidia-h100 but only 1 of the 4 offered are free"
    assert len(backend.launched) == 1


async def test_device_allocation_never_over_commits(runtime: SiteRuntime, backend: FakeBackend) -> None:
    rng = random.Random(7)
    running: list[tuple[str, int]] = []
    for n in range(200):
        if running and rng.random() < 0.4:
            job, epoch = running.pop(rng.randrange(len(running)))
            backend.finish(job, epoch)
            await settle()
        else:
            await runtime.handle(launch(job=f"j{n}", cards=rng.randint(1, 8), cls="ascend-910b"))
            if runtime.unacknowledged_updates()[-1].state is JobState.RUNNING:
                running.append((f"j{n}", 1))
        held = [d for job, epoch in running for d in backend.handles[(job, epoch)].spec.devices]
        assert len(held) == len(set(held)), "a device was given to two live attempts"
        assert all(0 <= d < 16 for d in held)
        assert free(runtime, "ascend-910b") == 16 - len(held)


async def test_small_jobs_are_packed_on_one_node(backend: FakeBackend, journal: MemoryJournal) -> None:
    runtime = SiteRuntime(make_config(ASCEND), backend, journal)
    await runtime.handle(launch(job="a", cards=6, cls="ascend-910b"))
    await runtime.handle(launch(job="b", cards=2, cls="ascend-910b"))
    await runtime.handle(launch(job="c", cards=4, cls="ascend-910b"))
    assert [s.devices for s in backend.launched] == [(0, 1, 2, 3, 4, 5), (6, 7), (8, 9, 10, 11)]


async def test_capacity_reports_free_offered_cards(runtime: SiteRuntime) -> None:
    before = runtime.capacity_version
    await runtime.handle(launch(cards=3))
    (h100, ascend) = runtime.capacity()
    assert (h100.total, h100.offered, h100.free, h100.cards_per_node) == (8, 4, 1, 8)
    assert (ascend.total, ascend.offered, ascend.free) == (16, 16, 16)
    assert runtime.capacity_version > before


async def test_cancel_stops_the_attempt_and_reports_cancelled(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch())
    await runtime.handle(Cancel("j1", 1, reason="user asked"))
    await settle()
    final = runtime.unacknowledged_updates()[-1]
    assert (final.state, final.message) == (JobState.CANCELLED, "cancelled: user asked")
    assert backend.handles[("j1", 1)].cancel_graces == [0.5]
    assert free(runtime) == 4


async def test_cancel_for_unknown_job_or_stale_epoch_is_ignored(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch(epoch=3))
    await runtime.handle(Cancel("j1", 2))
    await runtime.handle(Cancel("nope", 1))
    await settle()
    assert backend.handles[("j1", 3)].cancel_graces == []
    assert [u.state for u in runtime.unacknowledged_updates()] == [JobState.RUNNING]


async def test_preempt_uses_its_grace_and_reports_preempted(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch())
    await runtime.handle(Preempt("j1", 1, grace_s=0.25))
    await settle()
    assert backend.handles[("j1", 1)].cancel_graces == [0.25]
    assert runtime.unacknowledged_updates()[-1].state is JobState.PREEMPTED


async def test_max_runtime_exceeded_is_killed_and_failed(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch(max_runtime_s=0.05))
    await eventually_async(lambda: runtime.unacknowledged_updates()[-1].state.is_final, what="the attempt to end")
    final = runtime.unacknowledged_updates()[-1]
    assert (final.state, final.message) == (JobState.FAILED, "exceeded max runtime of 0.05s")
    assert backend.handles[("j1", 1)].cancel_graces == [0.5]


async def test_draining_site_refuses_launches_but_keeps_running_jobs(
    runtime: SiteRuntime, backend: FakeBackend
) -> None:
    await runtime.handle(launch(job="old"))
    await runtime.handle(Drain(draining=True))
    await runtime.handle(launch(job="new"))
    refused = runtime.unacknowledged_updates()[-1]
    assert (refused.job_id, refused.state, refused.message) == ("new", JobState.FAILED, "site is draining")
    assert [r.job_id for r in runtime.running()] == ["old"]


async def test_a_gang_part_beyond_the_offer_is_refused_and_within_it_held(runtime: SiteRuntime) -> None:
    reply = await runtime.handle(Reserve("gang:j1:1:0", "j1", "nvidia-h100", 5))
    assert reply is not None and not reply.accepted and "4 of the 4 offered are free" in reply.reason
    reply = await runtime.handle(Reserve("gang:j1:1:0", "j1", "nvidia-h100", 3))
    assert reply is not None and reply.accepted and reply.free == 1 and free(runtime) == 1


async def test_backend_launch_failure_is_reported_and_frees_devices(journal: MemoryJournal) -> None:
    runtime = SiteRuntime(make_config(), FakeBackend(refuse="executable 'x' was not found"), journal)
    await runtime.handle(launch())
    (update,) = runtime.unacknowledged_updates()
    assert (update.state, update.message) == (JobState.FAILED, "executable 'x' was not found")
    assert free(runtime) == 4


async def test_acknowledged_updates_leave_the_journal(runtime: SiteRuntime, journal: MemoryJournal) -> None:
    await runtime.handle(launch(job="a"))
    await runtime.handle(launch(job="b"))
    await runtime.handle(UpdatesAcknowledged(sequence=1))
    assert [u.job_id for u in journal.pending()] == ["b"]


async def test_update_refused_by_the_gateway_is_dropped_not_retried(
    runtime: SiteRuntime, journal: MemoryJournal
) -> None:
    await runtime.handle(launch(job="a"))
    await runtime.handle(launch(job="b"))
    await runtime.handle(UpdateRejected(1, reason="JOB_NOT_LEASED_TO_SITE", message="job a is not leased to you"))
    await runtime.handle(UpdateRejected(0, reason="UNSUPPORTED_MESSAGE"))
    assert [u.job_id for u in journal.pending()] == ["b"]


async def test_an_update_the_gateway_says_reuses_a_number_is_sent_again_above_its_cursor(
    runtime: SiteRuntime, journal: MemoryJournal
) -> None:
    await runtime.handle(launch(job="a"))
    (sent,) = journal.pending()
    await runtime.handle(UpdateRejected(sent.sequence, reason="SEQUENCE_REUSED", last_update_sequence=9))
    (again,) = journal.pending()
    assert (again.job_id, again.state, again.sequence) == ("a", sent.state, 10)


async def test_hello_lists_an_ended_attempt_until_its_end_is_acknowledged(journal: MemoryJournal) -> None:
    runtime = SiteRuntime(make_config(), FakeBackend(refuse="executable 'x' was not found"), journal)
    await runtime.handle(launch(job="a"))
    assert runtime.running() == []
    assert [(r.job_id, r.state) for r in runtime.unsettled()] == [("a", JobState.FAILED)]
    await runtime.handle(UpdatesAcknowledged(sequence=journal.last_sequence()))
    assert runtime.unsettled() == []


async def test_welcome_moves_numbering_past_the_gateways_last_sequence(runtime: SiteRuntime) -> None:
    runtime.accept_welcome(41)
    await runtime.handle(launch())
    assert runtime.unacknowledged_updates()[0].sequence == 42
    runtime.accept_welcome(7)  # a gateway that knows less never makes numbers go backwards
    await runtime.handle(launch(job="j2"))
    assert runtime.unacknowledged_updates()[-1].sequence == 43


async def test_shutdown_stops_every_job_and_refuses_new_ones(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch(job="a"))
    await runtime.handle(launch(job="b", cls="ascend-910b"))
    await asyncio.wait_for(runtime.shutdown(timeout_s=2.0), 3.0)
    finals = {u.job_id: u for u in runtime.unacknowledged_updates() if u.state.is_final}
    assert {j: u.state for j, u in finals.items()} == {"a": JobState.PREEMPTED, "b": JobState.PREEMPTED}
    assert finals["a"].message == "the site agent is shutting down"
    await runtime.handle(launch(job="c"))
    assert runtime.unacknowledged_updates()[-1].state is JobState.FAILED
