"""Chooses a backend by the `type:` key of the agent config's `backend:` section.

Owns: the table of backend types, the option keys each accepts, and building one. The error for an
unknown type lists the valid ones. It does not validate option values: `agents.core.config` does that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agents.backends.base import Backend, BackendSettings
from agents.errors import ConfigError
from fedgate.common.sections import Section


@dataclass(frozen=True)
class BackendType:
    """One registered backend type."""

    factory: Callable[[BackendSettings], Backend]
    options: frozenset[str]
    """Keys of the `backend:` section this type accepts besides `type`."""
    summary: str
    read_options: Callable[[Section, Path], object] | None = None
    """Reads and validates this type's own keys (other than `type`, `workdir`) from the `backend:` section,
    failing through `section.fail` so errors name the file and line; relative paths resolve against the
    Path (the config's folder). The result becomes `BackendSettings.options`."""


def _slurm(settings: BackendSettings) -> Backend:
    from agents.backends.slurm.backend import SlurmBackend

    return SlurmBackend(settings)


def _read_slurm_options(section: Section, base: Path) -> object:
    from agents.backends.slurm.config import read_slurm_options

    return read_slurm_options(section, base)


def _local(settings: BackendSettings) -> Backend:
    from agents.backends.local import LocalBackend  # imported on use, like every future backend

    return LocalBackend(settings)


def _local_options(section: Section, base: Path) -> object:
    from agents.backends.localguard import read_local_options

    return read_local_options(section, base)


def _kubernetes(settings: BackendSettings) -> Backend:
    from agents.backends.kubernetes.backend import KubernetesBackend  # imports the `kubernetes` client package

    return KubernetesBackend(settings)


def _kubernetes_options(section: Section, base: Path) -> object:
    from agents.backends.kubernetes.options import read_kubernetes_options

    return read_kubernetes_options(section, base)


def _simulated(settings: BackendSettings) -> Backend:
    from agents.backends.simulated import SimulatedBackend

    return SimulatedBackend(settings)


def _simulated_options(section: Section, base: Path) -> object:
    from agents.backends.simulated import read_simulated_options

    return read_simulated_options(section, base)


BACKEND_TYPES: dict[str, BackendType] = {
    "local": BackendType(
        factory=_local,
        options=frozenset({"workdir", "pass_env", "run_as"}),
        summary="run jobs as subprocesses on this machine (the embedded default; as `nobody` when the agent is root)",
        read_options=_local_options,
    ),
    "kubernetes": BackendType(
        factory=_kubernetes,
        options=frozenset(
            {
                "namespace",
                "kubeconfig",
                "context",
                "gang",
                "queue",
                "service_account",
                "image_pull_secrets",
                "ttl_after_finished_s",
                "resources",
            }
        ),
        summary="run each job as a Kubernetes Job (optionally gang-scheduled by Volcano or Kueue)",
        read_options=_kubernetes_options,
    ),
    "simulated": BackendType(
        factory=_simulated,
        options=frozenset({"default_duration_s"}),
        summary="start no processes: each job lasts its simulated duration (for benchmarks)",
        read_options=_simulated_options,
    ),
    "slurm": BackendType(
        factory=_slurm,
        options=frozenset(
            {"workdir", "partition", "account", "slurm_conf", "gres", "poll_interval_s", "command_timeout_s"}
        ),
        summary="run each attempt as a Slurm batch job on one partition (sbatch, squeue, sacct, scancel)",
        read_options=_read_slurm_options,
    ),
}


def backend_type(name: str) -> BackendType:
    """The registered type called `name`; ConfigError listing the valid names otherwise."""
    try:
        return BACKEND_TYPES[name]
    except KeyError:
        valid = ", ".join(sorted(BACKEND_TYPES))
        raise ConfigError(f"unknown backend type {name!r}; valid types: {valid}") from None


def create_backend(settings: BackendSettings) -> Backend:
    return backend_type(settings.type).factory(settings)


async def open_backend(settings: BackendSettings) -> Backend:
    """Build the backend and, if it has an `async discover()` (a scheduler it must first look at, like
    slurm's sinfo or kubernetes' node list), await it, so that the synchronous `pools()` the runtime calls
    next has its answer without blocking the event loop."""
    backend = create_backend(settings)
    discover = getattr(backend, "discover", None)
    if discover is not None:
        await discover()
    return backend
