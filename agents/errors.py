"""The agent's one error base. Every error carries a stable, machine-readable `reason`.

Owns: the error classes the agent raises on purpose and their reason codes. It does not decide how an
error is shown: the CLI prints messages and picks exit codes, the runtime turns launch refusals into FAILED
job updates whose message is the error's text.
"""

from __future__ import annotations

from fedgate.common.reasons import ReasonCode


class AgentError(Exception):
    """Base of every error the agent raises on purpose. `reason` is stable; `message` is for humans."""

    reason: str = ReasonCode.AGENT_ERROR

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})
        """Facts for tools, e.g. `file` and `line` of a config error."""


class ConfigError(AgentError):
    """The agent's YAML is invalid. The message names the file, the line when known, and the fix."""

    reason: str = ReasonCode.INVALID_CONFIG


class LaunchRefused(AgentError):
    """The agent will not start this attempt; it is reported to the gateway as FAILED with the message."""

    reason: str = ReasonCode.LAUNCH_REFUSED


class UnknownAcceleratorClass(LaunchRefused):
    reason: str = ReasonCode.UNKNOWN_ACCELERATOR_CLASS


class InsufficientCapacity(LaunchRefused):
    reason: str = ReasonCode.NO_FREE_CAPACITY


class SiteDraining(LaunchRefused):
    reason: str = ReasonCode.SITE_DRAINING


class SiteTermsRefused(LaunchRefused):
    """The centre's own policy refuses the launch (tenant, project, size, image, or the current offer).
    `term` names the policy key that refused it."""

    reason: str = ReasonCode.SITE_TERMS

    def __init__(self, message: str, *, term: str) -> None:
        super().__init__(message)
        self.term = term


class BackendError(AgentError):
    """A backend could not do what it was asked (start, watch or stop a job)."""

    reason: str = ReasonCode.BACKEND_ERROR


class AttemptLost(BackendError):
    """A backend's `wait` cannot say how an attempt ended: it ended unobserved and left no record of its outcome
    (the site lost track of it). The attempt is reported LOST, so the gateway queues the job again."""


class LaunchFailed(BackendError):
    """The backend could not start the job's command: empty command, missing executable, bad job id."""

    reason: str = ReasonCode.LAUNCH_FAILED


class ProtocolError(AgentError):
    """The gateway broke the SiteService protocol (e.g. its first message was not Welcome)."""

    reason: str = ReasonCode.PROTOCOL_ERROR


class GatewayRefused(AgentError):
    """The gateway refused this agent for good (PERMISSION_DENIED, UNAUTHENTICATED); retrying cannot help.

    `code` is the gRPC status name, kept as a plain string so that nothing outside `agents.transport`
    needs grpc to read it.
    """

    reason: str = ReasonCode.GATEWAY_REFUSED

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class GatewayUnreachable(AgentError):
    """The gateway could not be reached (connection refused, timeout, not speaking TLS)."""

    reason: str = ReasonCode.GATEWAY_UNREACHABLE


class CaPinMismatch(AgentError):
    """The gateway did not present the CA the operator pinned; nothing was sent to it."""

    reason: str = ReasonCode.CA_FINGERPRINT_MISMATCH


class CredentialsError(AgentError):
    """A key, certificate or CA bundle is unusable: unreadable, not matching, or not issued by the CA."""

    reason: str = ReasonCode.BAD_CREDENTIALS


class EnrollmentRefused(AgentError):
    """The gateway refused to enrol or renew. `reason` is the gateway's ErrorInfo reason (e.g.
    JOIN_TOKEN_USED) when it sent one, else the gRPC status name; `code` is the gRPC status name."""

    reason: str = ReasonCode.ENROLLMENT_REFUSED

    def __init__(self, message: str, *, reason: str, code: str) -> None:
        super().__init__(message, reason=reason)
        self.code = code


class UsageError(AgentError):
    """A command was asked for something it cannot do as given; the message says what to change."""

    reason: str = ReasonCode.BAD_USAGE


class BadFingerprint(UsageError):
    reason: str = ReasonCode.BAD_FINGERPRINT


class CredentialsExist(UsageError):
    """`enroll` would overwrite a site's existing certificate; it needs --force for that."""

    reason: str = ReasonCode.CREDENTIALS_EXIST


class AgentTaskDied(AgentError):
    """A task that must run as long as the agent (the gateway link, a backend's watch) ended. The agent drains
    and stops with a non-zero exit, so that its own supervisor (systemd, Kubernetes) restarts it."""

    reason: str = ReasonCode.TASK_DIED
