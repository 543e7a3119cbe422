"""How a gateway Launch becomes what a backend starts: the `LaunchSpec` for one attempt on one pool.

Owns: filling the spec from the Launch command, the pool (its stack when the job names none) and the devices
allocated, and the environment every job finds (`PREEMPT_GRACE_ENV`, under the job's own variables). It does
not judge whether the launch may run (`agents.policy.terms`, the runtime's admission), allocate devices
(`agents.core.devices`) or start anything (the backend).
"""

from __future__ import annotations

from agents.backends.base import LaunchSpec
from agents.core.commands import Launch
from agents.core.devices import DevicePool
from agents.errors import LaunchFailed
from fedgate.common.rendezvous import Rendezvous

MAX_NODES = 1024
"""The most nodes one part may run on (job.proto's limit on resources.nodes)."""

PREEMPT_GRACE_ENV = "FEDGATE_PREEMPT_GRACE_S"
"""Every job finds here how many seconds it has, after SIGTERM, to checkpoint before it is killed when
preempted: the gateway sets it from the job's priority class; without it the agent's own cancel grace."""


def launch_spec(
    site: str, command: Launch, pool: DevicePool, devices: tuple[int, ...], *, grace_s: float
) -> LaunchSpec:
    """The spec of `command`'s attempt on `pool`'s `devices`; `grace_s` is the agent's cancel grace. The devices
    are split by node (`DevicePool.by_node`); the world is the gateway's, or this part alone when it sent none.
    LaunchFailed when the gateway's rendezvous cannot be right (a bug there, never the job's fault)."""
    nodes = pool.by_node(devices, command.nodes)
    world = command.rendezvous or Rendezvous.alone(len(nodes), len(devices))
    _check(command, world, len(nodes))
    return LaunchSpec(
        site=site,
        job_id=command.job_id,
        epoch=command.epoch,
        attempt=command.attempt,
        accelerator_class=command.accelerator_class,
        stack=command.stack or pool.spec.stack,
        command=command.command,
        devices=devices,
        image=command.image,
        tenant=command.tenant,
        project=command.project,
        env={PREEMPT_GRACE_ENV: f"{grace_s:g}", **command.env},
        max_runtime_s=command.max_runtime_s,
        labels=command.labels,
        node_devices=nodes if len(nodes) > 1 else (),
        rendezvous=world,
    )


def _check(command: Launch, world: Rendezvous, nodes: int) -> None:
    problems = []
    if command.nodes > MAX_NODES:
        problems.append(f"{command.nodes} nodes (at most {MAX_NODES})")
    if world.master_port > 65535:
        problems.append(f"master port {world.master_port} (1-65535, or 0)")
    if len(world.master_addr) > 253 or any(c.isspace() or c in "$`'\"\\;" for c in world.master_addr):
        problems.append(f"master address {world.master_addr[:64]!r} (a host name or IP address)")
    if world.first_rank + nodes > max(world.nnodes, nodes):
        problems.append(f"first node rank {world.first_rank} + {nodes} nodes beyond the world's {world.nnodes}")
    if problems:
        raise LaunchFailed(f"job {command.job_id}: the gateway's rendezvous is not usable: " + "; ".join(problems))
