"""The accelerator catalogue: canonical classes and the capability matching over them.

Owns: `Accelerator` and `Catalogue` (lookup by id, which classes satisfy a capability, normalised compute).
It does not read files: `gateway.policy` loads `policies/accelerators.yaml` into it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.jobs.model import Capability, JobSpec


@dataclass(frozen=True)
class Accelerator:
    """One canonical class. Figures are per card, vendor-published approximations."""

    id: str
    vendor: str
    family: str
    memory_gib: float
    bf16_tflops: float
    interconnect: str
    stack: str
    source: str = ""

    def satisfies(self, capability: Capability) -> bool:
        if self.memory_gib < capability.min_memory_gib:
            return False
        if self.bf16_tflops < capability.min_bf16_tflops:
            return False
        return not capability.stacks or self.stack in capability.stacks


@dataclass(frozen=True)
class Catalogue:
    accelerators: tuple[Accelerator, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {a.id: a for a in self.accelerators})

    def get(self, accelerator_class: str) -> Accelerator | None:
        by_id: dict[str, Accelerator] = getattr(self, "_by_id")  # noqa: B009 - set in __post_init__
        return by_id.get(accelerator_class)

    def __contains__(self, accelerator_class: object) -> bool:
        return isinstance(accelerator_class, str) and self.get(accelerator_class) is not None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.accelerators)

    def classes_for(self, spec: JobSpec) -> tuple[str, ...]:
        """The classes that can serve a job: its named class, or every class meeting its capability, each
        only when the job carries a run for that class's software stack."""
        if spec.resources.accelerator_class:
            candidates: Iterable[Accelerator] = [
                a for a in self.accelerators if a.id == spec.resources.accelerator_class
            ]
        else:
            capability = spec.resources.capability or Capability()
            candidates = [a for a in self.accelerators if a.satisfies(capability)]
        return tuple(a.id for a in candidates if spec.run_for(a.stack) is not None)

    def normalised_compute(self, accelerator_class: str, card_hours: float) -> float:
        """Card-hours weighted by dense BF16 throughput, in PFLOPS-hours; 0 for an unknown class."""
        accelerator = self.get(accelerator_class)
        return card_hours * accelerator.bf16_tflops / 1000.0 if accelerator else 0.0
