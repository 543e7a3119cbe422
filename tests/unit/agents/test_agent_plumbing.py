"""Small parts of the agent: backoff, journal, device pools, protobuf conversions and the CLI's exit codes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.cli import main as cli
from agents.core.commands import Cancel, Drain, Launch, Preempt, UpdateRejected, UpdatesAcknowledged
from agents.core.devices import DevicePool
from agents.core.model import JobState, JobUpdate, PoolCapacity, PoolSpec
from agents.core.supervisor import describe_seconds
from agents.errors import InsufficientCapacity
from agents.journal.base import MemoryJournal
from agents.transport.backoff import Backoff
from agents.transport.convert import command_from_proto, job_update_to_proto, launch_from_proto
from fedgate.common import wire
from fedgate.v1 import job_pb2, site_pb2
from gateway.sites.dispatcher import SiteUpdate
from gateway.sites.model import Pool
from gateway.sites.registry import CancelCommand, DrainCommand, PreemptCommand
from gateway.transport import convert as gateway_convert
from gateway.transport.site_service import update_from_proto

from .conftest import agent_yaml
from .gateway_wire import gateway_message, launch_message
from .pki import MintedPki


def update(sequence: int, job: str = "j") -> JobUpdate:
    return JobUpdate(job, 1, JobState.RUNNING, sequence, datetime(2025, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC))


# -- backoff -------------------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_from_200ms_to_a_10s_cap() -> None:
    backoff = Backoff(uniform=lambda: 1.0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0, 10.0]


def test_backoff_uses_full_jitter_and_resets_after_success() -> None:
    backoff = Backoff(uniform=lambda: 0.5)
    assert [backoff.next_delay() for _ in range(3)] == [0.1, 0.2, 0.4]
    backoff.reset()
    assert backoff.next_delay() == 0.1
    assert Backoff(uniform=lambda: 0.0).next_delay() == 0.0
    backoff.failures = 10_000  # a very long outage must not overflow
    assert backoff.ceiling() == 10.0


# -- journal -------------------------------------------------------------------------------------------


def test_journal_keeps_unacknowledged_updates_in_order_and_counters_monotonic() -> None:
    journal = MemoryJournal()
    for sequence in (1, 2, 3):
        journal.append(update(sequence))
    assert [u.sequence for u in journal.pending(after=1)] == [2, 3]
    journal.acknowledge(2)
    assert [u.sequence for u in journal.pending()] == [3]
    assert journal.last_sequence() == 3
    with pytest.raises(ValueError, match="not above 3"):
        journal.append(update(3))
    journal.append(update(4))
    journal.append(update(5))
    journal.discard(4)
    assert [u.sequence for u in journal.pending()] == [3, 5]
    journal.advance_cursor(9)
    journal.advance_cursor(4)
    assert journal.cursor() == 9


# -- device pools --------------------------------------------------------------------------------------


def test_device_pool_hands_out_only_offered_indices_and_refuses_over_commit() -> None:
    pool = DevicePool(PoolSpec("ascend-910b", cards=8, offered=3, cards_per_node=8))
    assert pool.allocate(2) == (0, 1)
    with pytest.raises(InsufficientCapacity, match="needs 2 cards of ascend-910b but only 1 of the 3"):
        pool.allocate(2)
    assert pool.free_count == 1
    pool.release((0, 1))
    with pytest.raises(ValueError, match="were not allocated"):
        pool.release((0,))
    assert pool.allocate(3) == (0, 1, 2)


def test_device_pool_prefers_the_fullest_node_that_fits() -> None:
    pool = DevicePool(PoolSpec("nvidia-h100", cards=16, offered=16, cards_per_node=8))
    first = pool.allocate(5)  # node 0: 3 left
    assert pool.allocate(3) == (5, 6, 7)  # best fit: fills node 0 rather than opening node 1
    pool.release(first)
    assert pool.allocate(8) == (8, 9, 10, 11, 12, 13, 14, 15)


# -- conversions ---------------------------------------------------------------------------------------


def test_every_agent_state_reads_as_the_same_state_at_the_gateway() -> None:
    for state in JobState:
        assert gateway_convert.state_from_proto(wire.state_to_proto(state.value)).value == state.value
    assert wire.state_to_proto(JobState.PREEMPTED.value) == job_pb2.JOB_STATE_PREEMPTED


def test_job_update_reads_at_the_gateway_with_time_and_devices() -> None:
    original = JobUpdate("j", 3, JobState.FAILED, 17, update(1).time, 137, "killed", (4, 5))
    read = update_from_proto(job_update_to_proto(original))
    assert read == SiteUpdate(
        "j", 3, gateway_convert.state_from_proto(job_pb2.JOB_STATE_FAILED), 17, original.time, 137, "killed", (4, 5)
    )


def test_the_gateways_launch_and_the_agents_pool_read_back_equal() -> None:
    launch = Launch("j", 2, 1, "ascend-910b", 4, ("python", "train.py"), stack="cann", image="img", tenant="t",
                    project="p", max_runtime_s=90.5, env={"A": "1"}, labels={"l": "v"})  # fmt: skip
    assert launch_from_proto(launch_message(launch)) == launch
    pool = PoolCapacity("ascend-910b", 8, 6, 2, 8, "hccs", {"zone": "a"})
    assert gateway_convert.pool_from_proto(wire.pool_to_proto(pool)) == Pool(
        "ascend-910b", 8, 6, 2, 8, "hccs", (("zone", "a"),)
    )


def test_gateway_messages_become_commands() -> None:
    def command(**kind: object) -> object:
        return command_from_proto(site_pb2.ConnectResponse(sequence=1, **kind))  # type: ignore[arg-type]

    assert command_from_proto(gateway_message(CancelCommand("j", 2, "r"))) == Cancel("j", 2, "r")
    assert command_from_proto(gateway_message(PreemptCommand("j", 2, 30))) == Preempt("j", 2, 30.0)
    assert command_from_proto(gateway_message(DrainCommand(True))) == Drain(True)
    assert command(ack=site_pb2.Ack(sequence=9)) == UpdatesAcknowledged(9)
    rejection = site_pb2.Rejection(update_sequence=4, reason="STALE_EPOCH", message="m")
    assert command(rejection=rejection) == UpdateRejected(4, "STALE_EPOCH", "m")
    assert command(welcome=site_pb2.Welcome()) is None


def test_durations_read_like_a_person_wrote_them() -> None:
    assert [describe_seconds(s) for s in (0.3, 59, 90, 7200)] == ["0.3s", "59s", "1m30s", "2h0m0s"]


# -- CLI -----------------------------------------------------------------------------------------------


def test_cli_bad_config_exits_2_naming_the_file_and_line(
    pki: MintedPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(agent_yaml(pki).replace("offered: 4, cards_per_node: 4", "offered: 9, cards_per_node: 4"))
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fedgate agent: {path}:")
    assert "offered (9) is more than cards (4)" in err


def test_cli_usage_errors_exit_2_and_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["run"]) == 2
    assert "--config" in capsys.readouterr().err
    assert cli.main(["run", "--help"]) == 0
    assert "--log-level" in capsys.readouterr().out
