"""The fedgate site agent: dials out to the federation gateway, reports a centre's capacity, runs its jobs.

Owns: the agent's version string. The package never imports `gateway` (an agent image carries no gateway
code); only `agents.transport` speaks gRPC and protobuf.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _agent_version() -> str:
    try:
        return version("fedgate")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


AGENT_VERSION = _agent_version()
"""Sent in Hello so the gateway can tell which protocol features this agent understands."""
