"""The agent against a fake gateway on a real grpc.aio server with mTLS: the SiteService protocol."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from agents.cli import main as cli
from agents.core.commands import Launch
from agents.core.config import AgentConfig
from agents.errors import GatewayRefused
from agents.journal.sqlite import SqliteJournal
from fedgate.v1 import job_pb2, site_pb2
from gateway.sites.registry import CancelCommand, ReserveCommand
from tests.jobs import JOB_PYTHON, shared_folder
from tests.waiting import eventually_async

from .conftest import GatewayUnderTest, agent_yaml, running_agent
from .fake_gateway import FakeGateway, start_fake_gateway
from .gateway_wire import launch_message
from .pki import MintedPki

PY = JOB_PYTHON
MakeConfig = Callable[..., AgentConfig]


def launch(*command: str, job: str = "j1", epoch: int = 1, cards: int = 2) -> site_pb2.Launch:
    return launch_message(Launch(job, epoch, 1, "nvidia-h100", cards=cards, command=command, stack="cuda"))


async def test_agent_says_hello_then_reports_full_capacity_right_after_welcome(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    async with running_agent(make_config(gateway=gateway.target)):
        stream = await gateway.fake.next_stream()
        assert stream.hello.site == "centre-a"
        assert stream.hello.backend == "local"
        assert stream.hello.agent_version
        assert (stream.hello.resume_cursor, list(stream.hello.running)) == (0, [])
        first = await asyncio.wait_for(stream.received.get(), 5)
        assert first is not None and first.WhichOneof("kind") == "capacity"
        assert first.capacity.full
        h100 = next(p for p in first.capacity.pools if p.accelerator_class == "nvidia-h100")
        assert (h100.total, h100.offered, h100.free, h100.cards_per_node) == (8, 4, 4, 8)
        assert (h100.interconnect, dict(h100.labels)) == ("nvlink", {"zone": "a"})
        await stream.next("capacity", wait_s=2)  # and again every report interval (0.2 s here)


async def test_launch_runs_the_job_reports_running_then_succeeded_and_acks_it(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    async with running_agent(make_config(gateway=gateway.target)):
        stream = await gateway.fake.next_stream()
        sequence = stream.send(launch=launch(PY, "-c", "print('trained')"))
        running = await stream.update(job_pb2.JOB_STATE_RUNNING)
        assert (running.job_id, running.epoch, list(running.device_indices)) == ("j1", 1, [0, 1])
        assert running.sequence == 1 and running.time.seconds > 0
        assert (await stream.next("ack")).ack.sequence == sequence
        done = await stream.update()
        assert (done.state, done.exit_code, done.sequence) == (job_pb2.JOB_STATE_SUCCEEDED, 0, 2)

        def freed(report: site_pb2.ConnectRequest) -> bool:
            return any(p.accelerator_class == "nvidia-h100" and p.free == 4 for p in report.capacity.pools)

        assert any(m.WhichOneof("kind") == "capacity" and not freed(m) for m in stream.history)
        await eventually_async(lambda: freed(stream.history[-1]) or None, timeout=3, what="capacity freed")


async def test_updates_made_while_disconnected_are_replayed_after_reconnect(
    gateway: GatewayUnderTest, make_config: MakeConfig, tmp_path: Path
) -> None:
    finished = shared_folder(tmp_path / "shared") / "finished"  # written by the job, which runs as nobody
    script = f"import time, pathlib; time.sleep(0.3); pathlib.Path({str(finished)!r}).touch()"
    config = make_config(gateway=gateway.target)
    assert config.state_dir is not None
    journal = SqliteJournal.in_directory(config.state_dir)  # the agent's own journal, read beside it
    async with running_agent(config):
        stream = await gateway.fake.next_stream()
        sequence = stream.send(launch=launch(PY, "-c", script))
        assert (await stream.update(job_pb2.JOB_STATE_RUNNING)).sequence == 1
        gateway.fake.admit.clear()  # the agent's next stream gets no Welcome until we say so
        gateway.fake.last_update_sequence = 1  # the gateway made RUNNING durable before the cut
        stream.abort(grpc.StatusCode.UNAVAILABLE, "gateway restarting")
        await eventually_async(
            lambda: any(u.state.is_final for u in journal.pending()), what="the agent to journal the job's end"
        )
        gateway.fake.admit.set()
        again = await gateway.fake.next_stream()
        assert again.hello.resume_cursor == sequence
        replayed = await again.update()
        assert (replayed.state, replayed.sequence) == (job_pb2.JOB_STATE_SUCCEEDED, 2)


async def test_unacknowledged_updates_are_replayed_in_order(gateway: GatewayUnderTest, make_config: MakeConfig) -> None:
    async with running_agent(make_config(gateway=gateway.target)):
        gateway.fake.auto_ack = False
        stream = await gateway.fake.next_stream()
        stream.send(launch=launch(PY, "-c", "pass", job="a", cards=1))
        stream.send(launch=launch(PY, "-c", "pass", job="b", cards=1))
        await stream.update(job_pb2.JOB_STATE_SUCCEEDED)
        await stream.update(job_pb2.JOB_STATE_SUCCEEDED)
        gateway.fake.last_update_sequence = 1
        stream.abort(grpc.StatusCode.UNAVAILABLE, "lost")
        again = await gateway.fake.next_stream()
        # Every unacknowledged update, the one at the gateway's cursor too: a gateway acks a true replay, and
        # a journal that went back in time is caught by the gateway (SEQUENCE_REUSED), not by the agent.
        sequences = [(await again.update()).sequence for _ in range(4)]
        assert sequences == [1, 2, 3, 4]
        again.send_unsequenced(ack=site_pb2.Ack(sequence=4))


async def test_cancel_from_the_gateway_stops_the_job_and_reports_cancelled(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    async with running_agent(make_config(gateway=gateway.target)):
        stream = await gateway.fake.next_stream()
        stream.send(launch=launch(PY, "-c", "import time; time.sleep(30)"))
        await stream.update(job_pb2.JOB_STATE_RUNNING)
        stream.send_command(CancelCommand("j1", 1, "vendor asked"))
        cancelled = await stream.update()
        assert (cancelled.state, cancelled.message) == (
            job_pb2.JOB_STATE_CANCELLED,
            "cancelled: vendor asked",
        )


async def test_a_reserve_the_site_cannot_hold_is_declined_with_a_reason(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    async with running_agent(make_config(gateway=gateway.target)):
        stream = await gateway.fake.next_stream()
        stream.send_command(ReserveCommand("r1", "j1", "x", 1, timedelta(seconds=5)))
        reply = (await stream.next("reserve_reply")).reserve_reply
        assert (reply.reservation_id, reply.accepted) == ("r1", False)
        assert reply.reason.startswith("no pool of x; it offers ")


async def test_stopping_the_agent_preempts_jobs_and_sends_their_final_update_before_closing(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    async with running_agent(make_config(gateway=gateway.target)) as agent:
        stream = await gateway.fake.next_stream()
        stream.send(launch=launch(PY, "-c", "import time; time.sleep(30)"))
        await stream.update(job_pb2.JOB_STATE_RUNNING)
        agent.stop.set()
        final = await stream.update()
        assert (final.state, final.message) == (
            job_pb2.JOB_STATE_PREEMPTED,
            "the site agent is shutting down",
        )
        stream.send_unsequenced(ack=site_pb2.Ack(sequence=final.sequence))
        await stream.closed_by_agent()
        await asyncio.wait_for(agent.task, 5)


async def test_site_refused_by_the_gateway_stops_the_agent_instead_of_retrying(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    gateway.fake.expected_site = "centre-b"
    async with running_agent(make_config(gateway=gateway.target)) as agent:
        with pytest.raises(GatewayRefused) as caught:
            await asyncio.wait_for(agent.task, 5)
    assert caught.value.code == "PERMISSION_DENIED"
    assert "refused site 'centre-a'" in caught.value.message
    assert len(gateway.fake.hellos) == 1


async def test_cli_exits_3_and_says_why_when_the_gateway_refuses_the_site(
    gateway: GatewayUnderTest, pki: MintedPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.fake.expected_site = "centre-b"
    path = tmp_path / "agent.yaml"
    path.write_text(agent_yaml(pki, gateway=gateway.target))
    code = await asyncio.wait_for(asyncio.to_thread(cli.main, ["run", "--config", str(path)]), 10)
    assert code == 3
    assert "agent[centre-a]: the gateway refused site 'centre-a' (PERMISSION_DENIED" in capsys.readouterr().err


async def test_agent_keeps_retrying_until_the_gateway_comes_up(
    pki: MintedPki, make_config: MakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nobody listens on, until the gateway takes it below
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="agents")

    def refused_dials() -> int:
        return sum(r.levelno >= logging.WARNING and f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)

    async with running_agent(make_config(gateway=f"127.0.0.1:{port}")):
        await eventually_async(lambda: refused_dials() >= 3, what="three refused dials")
        fake = FakeGateway()
        server, bound = await start_fake_gateway(fake, pki, port=port)
        try:
            assert bound == port
            stream = await fake.next_stream()
            assert stream.hello.site == "centre-a"
        finally:
            await server.stop(grace=None)
