"""The gateway's own encoders and decoders, so that agent tests speak exactly what the gateway sends and reads.

The agent converts each message in one direction only; a test that needs the other half (a Launch to send, a
JobUpdate to read back) takes it from `gateway.transport` rather than from a test-only inverse in the agent.
"""

from __future__ import annotations

from datetime import timedelta

from agents.core.commands import Launch
from fedgate.v1 import site_pb2
from gateway.jobs.model import StackRun
from gateway.sites.registry import Command, LaunchCommand
from gateway.transport.site_service import command_to_proto


def gateway_message(command: Command, sequence: int = 0) -> site_pb2.ConnectResponse:
    """The ConnectResponse the gateway sends for `command`."""
    return command_to_proto(sequence, command)


def launch_message(launch: Launch) -> site_pb2.Launch:
    """The Launch message the gateway sends for the attempt `launch` describes."""
    command = LaunchCommand(
        job_id=launch.job_id,
        epoch=launch.epoch,
        attempt=launch.attempt,
        tenant=launch.tenant,
        project=launch.project,
        accelerator_class=launch.accelerator_class,
        cards=launch.cards,
        run=StackRun(launch.stack, launch.image, launch.command),
        max_runtime=timedelta(seconds=launch.max_runtime_s),
        env=tuple(sorted(launch.env.items())),
        labels=tuple(sorted(launch.labels.items())),
    )
    return gateway_message(command).launch
