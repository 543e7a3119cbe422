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

PREEMPT_GRACE_ENV = "FEDGATE_PREEMPT_GRACE_S"
"""Every job finds here how many seconds it has, after SIGTERM, to checkpoint before it is killed when
preempted: the gateway sets it from the job's priority class; without it the agent's own cancel grace."""


def launch_spec(
    site: str, command: Launch, pool: DevicePool, devices: tuple[int, ...], *, grace_s: float
) -> LaunchSpec:
    """The spec of `command`'s attempt on `pool`'s `devices`; `grace_s` is the agent's cancel grace."""
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
    )
