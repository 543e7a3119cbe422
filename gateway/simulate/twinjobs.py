"""What the twin takes in and gives back: a trace job's spec and submitter, and each job's outcome.

Owns: the spec a trace job is submitted with (`job_spec`, shared with the agreement test's live run, so both
systems see the same job), who submits it (`submitter`, a member of its tenant under the policy), the run's
default tenant and project (`default_scope`), and the records of a run (`Start`, `TwinOutcome`, `TwinResult`).
No scheduling and no clock: `gateway.simulate.twin` runs the replay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from gateway.errors import ConfigError
from gateway.identity.principal import Principal
from gateway.jobs.admission import MAX_RUNTIME
from gateway.jobs.model import Capability, JobSpec, Resources, StackRun, Topology
from gateway.policy.document import FederationPolicy
from gateway.simulate.trace import TraceJob

IMAGE = "registry.example/fedgate-twin:1"
DURATION_ENV = "FEDGATE_SIM_DURATION_S"
"""How long the agent's `simulated` backend runs an attempt (its `DURATION_ENV`; the agreement test checks the
two names agree, since the gateway may not import the agent)."""


@dataclass(frozen=True)
class Start:
    """One attempt started at a site: what a dispatch decided, as the site saw it (a gang has one per part)."""

    at_s: float
    job_id: str  # the trace's id
    site: str
    accelerator_class: str
    cards: int
    epoch: int
    nodes: int


@dataclass(frozen=True)
class TwinOutcome:
    """What became of one trace job. `start_s` is its first start (None: never started); `state` the gateway's
    final state, or NEVER_STARTED; `reason` the gateway's word (the admission refusal, the pending reason);
    `accelerator_class` where it ran (see the field), so that a run's figures can be grouped by class."""

    job_id: str
    tenant: str
    project: str
    priority_class: str
    cards: int
    submit_s: float
    duration_s: float
    start_s: float | None
    end_s: float | None
    sites: tuple[str, ...]
    state: str
    reason: str = ""
    preemptions: int = 0
    accelerator_class: str = ""
    """The class of its first placement; a job never started: the class it asked for, or `any`."""

    @property
    def started(self) -> bool:
        return self.start_s is not None

    @property
    def wait_s(self) -> float | None:
        return None if self.start_s is None else self.start_s - self.submit_s

    def to_json(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "tenant": self.tenant,
            "project": self.project,
            "priority_class": self.priority_class,
            "cards": self.cards,
            "submit_s": self.submit_s,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "wait_s": self.wait_s,
            "sites": list(self.sites),
            "state": self.state,
            "reason": self.reason,
            "preemptions": self.preemptions,
            "accelerator_class": self.accelerator_class,
        }


@dataclass(frozen=True)
class TwinResult:
    mode: str
    outcomes: tuple[TwinOutcome, ...]  # in trace order
    starts: tuple[Start, ...]  # every attempt's start, in the order the sites took them
    total_cards: int
    cycles: int
    returned: tuple[str, ...] = ()
    """Launches a simulated centre handed back (its cards or nodes were not free as the gateway thought)."""
    class_cards: Mapping[str, int] = field(default_factory=dict)
    """The cards of each accelerator class over the sites: what a class's utilisation is measured against."""


def submitter(policy: FederationPolicy, tenant: str, project: str) -> Principal:
    """A principal who may submit to the tenant's project: any user of a tenant without a member list, else its
    first member (by name) with the member role in that project."""
    spec = policy.tenants.get(tenant)
    if spec is None or not spec.members:
        return Principal.user(policy.federation, tenant, "twin")
    for name in sorted(spec.members):
        member = spec.members[name]
        if member.role == "member" and (not member.projects or project in member.projects):
            return Principal.user(policy.federation, tenant, name)
    return Principal.user(policy.federation, tenant, "twin")  # refused at admission, with the gateway's message


def default_scope(policy: FederationPolicy, tenant: str = "", project: str = "") -> tuple[str, str]:
    """The run's tenant and project for trace jobs that name none: those given, else the policy's first tenant
    and its first project. Raises ConfigError when the policy does not have them."""
    tenants = list(policy.tenants)
    tenant = tenant or (tenants[0] if tenants else "")
    if tenant not in policy.tenants:
        raise ConfigError(f"tenant {tenant!r} is not in the policy (tenants: {', '.join(sorted(tenants))})")
    projects = sorted(policy.projects_of(tenant))
    first = [p.name for p in spec.projects] if (spec := policy.tenants[tenant].spec) is not None else []
    project = project or (first[0] if first else projects[0] if projects else "")
    if project not in projects:
        raise ConfigError(f"project {project!r} is not one of tenant {tenant}'s (projects: {', '.join(projects)})")
    return tenant, project


def job_spec(job: TraceJob, tenant: str, project: str, dataset: str = "") -> JobSpec:
    """The spec a trace job is submitted with (`tenant`/`project`: its scope, the run's defaults applied;
    `dataset`: the policy dataset standing for its data, "" for none), here and by the agreement test to a live
    gateway: its duration rides in the environment the agent's simulated backend reads. A job of any class (the
    trace's empty accelerator) asks for the empty capability, which every catalogue class meets: the gateway
    refuses a job that names neither a class nor a capability."""
    # Twice the duration (a user's margin), at most the gateway's 30-day limit: a longer trace job (the Alibaba
    # trace has 29 over 15 days, three quarters of its card-seconds) is admitted and then runs its recorded
    # duration, since the twin's centres do not end an attempt at its max runtime.
    runtime = min(MAX_RUNTIME, timedelta(seconds=max(60, math.ceil(job.duration_s) * 2 + 60)))
    return JobSpec(
        tenant,
        project,
        Resources(job.accelerator, None if job.accelerator else Capability(), job.cards, job.nodes),
        (StackRun("", IMAGE, ("run",)),),
        max_runtime=runtime,
        env=((DURATION_ENV, f"{job.duration_s:g}"),),
        labels=(("fedgate.io/trace-job", job.job_id[:63]),),
        priority_class=job.priority_class,
        topology=Topology(max(1, job.max_sites), 0),
        dataset=dataset,
    )
