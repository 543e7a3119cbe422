"""The simulated backend: no processes, attempts that last their simulated duration and end as told."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.backends.base import BackendSettings, LaunchSpec
from agents.backends.registry import create_backend
from agents.backends.simulated import SimulatedBackend, SimulatedOptions
from agents.core.commands import Cancel, Launch
from agents.core.config import AgentConfig, TlsFiles, load_agent_config
from agents.core.model import JobState, JobUpdate, PoolSpec
from agents.core.runtime import SiteRuntime
from agents.errors import ConfigError, LaunchFailed
from agents.journal.base import MemoryJournal
from fedgate.common.rendezvous import Rendezvous
from tests.waiting import eventually_async

from .conftest import POOLS_YAML
from .pki import MintedPki


def backend(default_s: float = 60.0) -> SimulatedBackend:
    made = create_backend(BackendSettings("simulated", Path("."), SimulatedOptions(default_duration_s=default_s)))
    assert isinstance(made, SimulatedBackend)
    return made


def spec(job: str = "j1", *, env: dict[str, str] | None = None, **extra: object) -> LaunchSpec:
    return LaunchSpec(
        site="centre-a",
        job_id=job,
        epoch=1,
        attempt=1,
        accelerator_class="nvidia-h100",
        stack="cuda",
        command=("train",),
        env=env or {},
        **{"devices": (0,), **extra},  # type: ignore[arg-type]
    )


async def test_an_attempt_lasts_its_env_duration_and_exits_with_its_env_code() -> None:
    sim = backend()
    handle = await sim.launch(spec(env={"FEDGATE_SIM_DURATION_S": "0.05", "FEDGATE_SIM_EXIT_CODE": "3"}))
    assert not handle.outcome.done()
    status = await asyncio.wait_for(sim.wait(handle), 5)
    assert (status.exit_code, status.succeeded) == (3, False)


@pytest.mark.parametrize(
    ("env", "labels", "max_runtime_s", "expected"),
    [
        ({"FEDGATE_SIM_DURATION_S": "2"}, {"fedgate.io/sim-duration-s": "5"}, 9.0, 2.0),
        ({}, {"fedgate.io/sim-duration-s": "5"}, 9.0, 5.0),
        ({}, {}, 9.0, 9.0),
        ({}, {}, 0.0, 42.0),
    ],
)
async def test_the_duration_comes_from_env_then_label_then_max_runtime_then_default(
    env: dict[str, str], labels: dict[str, str], max_runtime_s: float, expected: float
) -> None:
    sim = backend(default_s=42.0)
    handle = await sim.launch(spec(env=env, labels=labels, max_runtime_s=max_runtime_s))
    assert handle.duration_s == expected
    await sim.cancel(handle, 0)


async def test_cancel_ends_it_as_if_terminated_and_is_safe_to_repeat() -> None:
    sim = backend()
    handle = await sim.launch(spec())
    await sim.cancel(handle, 1.0)
    status = await asyncio.wait_for(sim.wait(handle), 5)
    assert (status.exit_code, status.signal_number) == (143, 15)
    await sim.cancel(handle, 1.0)
    assert await sim.wait(handle) == status


async def test_a_repeated_launch_or_adopt_returns_the_live_attempt() -> None:
    sim = backend()
    handle = await sim.launch(spec())
    assert await sim.launch(spec()) is handle
    assert await sim.adopt(spec()) is handle
    assert await sim.adopt(spec("other")) is None
    await sim.cancel(handle, 0)
    assert await sim.adopt(spec()) is None  # it ended: there is nothing to adopt


async def test_read_output_is_one_synthetic_line_sliced_by_offset() -> None:
    sim = backend()
    handle = await sim.launch(spec(env={"FEDGATE_SIM_EXIT_CODE": "0"}))
    line = await sim.read_output(handle, 0, 1000)
    assert line.startswith(b"simulated job j1 epoch 1") and line.endswith(b"\n")
    assert await sim.read_output(handle, 4, 5) == line[4:9]
    assert await sim.read_output(handle, len(line), 10) == b""
    await sim.cancel(handle, 0)


@pytest.mark.parametrize(
    "env",
    [{"FEDGATE_SIM_DURATION_S": "soon"}, {"FEDGATE_SIM_DURATION_S": "-1"}, {"FEDGATE_SIM_EXIT_CODE": "256"}],
)
async def test_bad_simulation_settings_are_refused_with_the_variable_named(env: dict[str, str]) -> None:
    with pytest.raises(LaunchFailed, match=next(iter(env))):
        await backend().launch(spec(env=env))


def test_config_reads_the_default_duration_and_refuses_a_bad_one(pki: MintedPki, tmp_path: Path) -> None:
    def load(backend_yaml: str) -> AgentConfig:
        path = tmp_path / "agent.yaml"
        path.write_text(
            "apiVersion: fedgate.io/v1\nkind: Agent\nsite: centre-a\ngateway: 127.0.0.1:7443\n"
            f"tls: {{ca: {pki.ca}, cert: {pki.site_cert}, key: {pki.site_key}}}\n"
            f"backend: {backend_yaml}\n" + POOLS_YAML
        )
        return load_agent_config(path)

    assert load("{type: simulated, default_duration_s: 5}").backend.options == SimulatedOptions(5.0)
    with pytest.raises(ConfigError, match=r"agent.yaml:6: backend.default_duration_s must be greater than 0"):
        load("{type: simulated, default_duration_s: 0}")


async def test_the_runtime_reports_simulated_jobs_like_real_ones() -> None:
    config = AgentConfig(
        site="centre-a",
        gateway="127.0.0.1:1",
        tls=TlsFiles(Path("ca"), Path("cert"), Path("key")),
        backend=BackendSettings("simulated", Path("."), SimulatedOptions()),
        pools=(PoolSpec("nvidia-h100", cards=4, offered=4, cards_per_node=4, stack="cuda"),),
        cancel_grace_s=0.2,
    )
    runtime = SiteRuntime(config, create_backend(config.backend), MemoryJournal())
    quick = {"fedgate.io/sim-duration-s": "0.05"}
    await runtime.handle(Launch("ok", 1, 1, "nvidia-h100", 1, ("train",), labels=quick))
    await runtime.handle(
        Launch("bad", 1, 1, "nvidia-h100", 1, ("train",), env={"FEDGATE_SIM_EXIT_CODE": "2"}, labels=quick)
    )
    await runtime.handle(Launch("long", 1, 1, "nvidia-h100", 1, ("train",)))
    await runtime.handle(Cancel("long", 1, reason="vendor"))

    def finals() -> dict[str, JobUpdate]:
        return {u.job_id: u for u in runtime.unacknowledged_updates() if u.state.is_final}

    await eventually_async(lambda: len(finals()) == 3, what="three final updates")
    ended = finals()
    assert (ended["ok"].state, ended["ok"].exit_code) == (JobState.SUCCEEDED, 0)
    assert (ended["bad"].state, ended["bad"].exit_code) == (JobState.FAILED, 2)
    assert (ended["long"].state, ended["long"].exit_code) == (JobState.CANCELLED, 143)


# -- multi-node attempts ------------------------------------------------------------------------------------


def two_nodes(
    env: dict[str, str] | None = None, labels: dict[str, str] | None = None, first_rank: int = 0
) -> LaunchSpec:
    world = Rendezvous(nnodes=first_rank + 2, first_rank=first_rank, world_size=4)
    quick = {"FEDGATE_SIM_DURATION_S": "0.01", **(env or {})}
    return spec(env=quick, labels=labels or {}, devices=(0, 1, 2, 3), node_devices=((0, 1), (2, 3)), rendezvous=world)


async def test_a_named_node_fails_the_multi_node_attempt_and_is_named() -> None:
    sim = backend()
    handle = await sim.launch(two_nodes({"FEDGATE_SIM_FAIL_NODE": "1", "FEDGATE_SIM_EXIT_CODE": "3"}))
    status = await asyncio.wait_for(sim.wait(handle), 5)
    assert (status.exit_code, status.node, status.describe()) == (3, "node 1", "exited with code 3 on node 1")
    line = await sim.read_output(handle, 0, 1000)
    assert b" on 2 nodes: " in line and line.endswith(b"exits with code 3 on node 1\n")


async def test_the_fail_node_label_fails_with_code_1_and_node_ranks_follow_the_gangs_world() -> None:
    sim = backend()
    handle = await sim.launch(two_nodes(labels={"fedgate.io/sim-fail-node": "3"}, first_rank=2))
    status = await asyncio.wait_for(sim.wait(handle), 5)
    assert (status.exit_code, status.node) == (1, "node 3")
    with pytest.raises(LaunchFailed, match=r"FEDGATE_SIM_FAIL_NODE must be a node rank of this part \(0-1\)"):
        await sim.launch(two_nodes({"FEDGATE_SIM_FAIL_NODE": "2"}))


async def test_a_multi_node_attempt_succeeds_unnamed_and_is_cancelled_on_every_node() -> None:
    sim = backend()
    ok = await asyncio.wait_for(sim.wait(await sim.launch(two_nodes())), 5)
    assert (ok.succeeded, ok.node) == (True, "")
    failing = await asyncio.wait_for(
        sim.wait(await sim.launch(spec("j2", env={"FEDGATE_SIM_EXIT_CODE": "2", "FEDGATE_SIM_DURATION_S": "0"}))), 5
    )
    assert failing.node == ""  # one node: nothing to name
    long = await sim.launch(two_nodes({"FEDGATE_SIM_DURATION_S": "60"}))
    await sim.cancel(long, 0)
    status = await asyncio.wait_for(sim.wait(long), 5)
    assert (status.exit_code, status.node) == (143, "node 0")
