"""The agent's one error base. Every error carries a stable, machine-readable `reason`.

Owns: the error classes the agent raises on purpose and their reason codes. It does not decide how an
error is shown: the CLI prints messages and picks exit codes, the runtime turns launch refusals into FAILED
job updates whose message is the error's text.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose. `reason` is stable; `message` is for humans."""

    reason = "AGENT_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class ConfigError(AgentError):
    """The agent's YAML is invalid. The message names the file, the line when known, and the fix."""

    reason = "INVALID_CONFIG"


class LaunchRefused(AgentError):
    """The agent will not start this attempt; it is reported to the gateway as FAILED with the message."""

    reason = "LAUNCH_REFUSED"


class UnknownAcceleratorClass(LaunchRefused):
    reason = "UNKNOWN_ACCELERATOR_CLASS"


class InsufficientCapacity(LaunchRefused):
    reason = "NO_FREE_CAPACITY"


class SiteDraining(LaunchRefused):
    reason = "SITE_DRAINING"


class BackendError(AgentError):
    """A backend could not do what it was asked (start, watch or stop a job)."""

    reason = "BACKEND_ERROR"


class LaunchFailed(BackendError):
    """The backend could not start the job's command: empty command, missing executable, bad job id."""

    reason = "LAUNCH_FAILED"


class ProtocolError(AgentError):
    """The gateway broke the SiteService protocol (e.g. its first message was not Welcome)."""

    reason = "PROTOCOL_ERROR"


class GatewayRefused(AgentError):
    """The gateway refused this agent for good (PERMISSION_DENIED, UNAUTHENTICATED); retrying cannot help.

    `code` is the gRPC status name, kept as a plain string so that nothing outside `agents.transport`
    needs grpc to read it.
    """

    reason = "GATEWAY_REFUSED"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
