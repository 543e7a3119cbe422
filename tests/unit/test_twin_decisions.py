"""The twin decides exactly as the gateway does: one state, one scheduling cycle, the same dispatches.

The reference is a core composed as the gateway composes it (`gateway.app.compose.compose` over a store, the
policy and a clock) with hand-driven fake sites, as `tests/unit/gangworld.py` drives one: sites say hello,
report their pools node by node, start what they are sent (RUNNING through the Dispatcher) and report again.
The twin is `gateway.simulate.twin.Twin`, brought to the same state through its own loop. Both then run ONE
cycle over the same queue (priorities, two tenants of different weights, a preemptible victim, a gang that
must span sites, a job that backfills) and the commands each cycle sent are compared: launches (job, site,
class, cards, epoch, nodes), gang reserves and preemptions. Were a scheduling rule copied into the twin and
changed in one place only, the two would part here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from gateway.app.compose import Core, compose
from gateway.jobs.model import JobState
from gateway.policy.holder import PolicyHolder
from gateway.simulate.simpool import SimPool
from gateway.simulate.sites import SiteSpec
from gateway.simulate.trace import TraceJob
from gateway.simulate.twin import EPOCH, Twin, VirtualClock
from gateway.simulate.twinjobs import default_scope, job_spec, submitter
from gateway.sites.dispatcher import SiteSession, SiteUpdate
from gateway.sites.model import SiteTerms
from gateway.sites.registry import Command, LaunchCommand, PreemptCommand, ReserveCommand
from gateway.store import open_store
from tests.unit.twinworld import catalogue, job, site, write_policy

SITES = [site("a", 16), site("b", 8), site("c", 8), site("d", 4, per_node=4)]
RUNNING = [
    job("victim", 0, 500, 16, priority_class="low"),  # preemptible, alpha: only a holds 16
    job("beta-long", 0, 500, 4, tenant="beta"),
    job("alpha-mid", 0, 40, 2),
]
QUEUED = [
    job("urgent", 0, 50, 16, priority_class="high"),  # nowhere free: the low victim is preempted
    job("gang", 0, 50, 10, max_sites=2),  # no one site has 10 free: reserved part by part
    job("wide", 0, 30, 8),  # no room left: it waits
    job("small", 0, 10, 3, tenant="beta"),  # fits beside the running ones
]
LABEL = "fedgate.io/trace-job"


@dataclass
class ReferenceSite:
    """A site as an agent is to the gateway: it starts what it is sent and reports its nodes after."""

    spec: SiteSpec
    session: SiteSession
    pools: dict[str, SimPool] = field(default_factory=dict)
    sequence: int = 0


class Reference:
    """The gateway's core composed as the gateway composes it, with fake sites driven by hand."""

    def __init__(self, policy: Path, clock: VirtualClock) -> None:
        self.clock = clock
        self.holder = PolicyHolder(policy, catalogue(), clock())
        self.core: Core = compose(open_store("sqlite://:memory:"), self.holder, clock)
        self.sites: dict[str, ReferenceSite] = {}
        for spec in sorted(SITES, key=lambda s: s.name):
            session = self.core.dispatcher.hello(spec.name, "reference", [])
            self.sites[spec.name] = ReferenceSite(spec, session, {p.accelerator_class: SimPool(p) for p in spec.pools})
            self.report(spec.name)

    def report(self, name: str) -> None:
        pools = [pool.report(pool.spec.cards) for _, pool in sorted(self.sites[name].pools.items())]
        self.core.dispatcher.capacity(name, pools, True, SiteTerms())  # an agent with default terms

    async def submit(self, trace: TraceJob) -> None:
        tenant, project = default_scope(self.holder.policy, trace.tenant)
        spec = job_spec(trace, tenant, project)
        await self.core.jobs.create_job(submitter(self.holder.policy, tenant, project), spec)

    def settle(self) -> None:
        """Schedule, and let every site start what it was sent, until nothing is left to do."""
        while True:
            placed = self.core.scheduler.schedule()
            acted = False
            for name, fake in self.sites.items():
                while not fake.session.outbox.empty():
                    item = fake.session.outbox.get_nowait()
                    assert isinstance(item, tuple)
                    command = item[1]
                    assert isinstance(command, LaunchCommand), command  # the first phase only launches
                    taken = fake.pools[command.accelerator_class].allocate(command.cards, command.nodes)
                    assert taken is not None
                    fake.sequence += 1
                    update = SiteUpdate(command.job_id, command.epoch, JobState.RUNNING, fake.sequence, self.clock())
                    self.core.dispatcher.update(name, update)
                    self.report(name)
                    acted = True
            if not placed and not acted:
                return


def sent(core: Core, sessions: dict[str, SiteSession]) -> list[tuple[object, ...]]:
    """Every command the cycle queued for the sites, by the trace's job names (gateway ids differ per world)."""
    names = {j.job_id: dict(j.spec.labels)[LABEL] for j in core.book.active.values()}
    out: list[tuple[object, ...]] = []
    for site_name, session in sorted(sessions.items()):
        while not session.outbox.empty():
            item = session.outbox.get_nowait()
            assert isinstance(item, tuple)
            out.append(describe(site_name, item[1], names))
    return sorted(out, key=repr)


def describe(site_name: str, command: Command, names: dict[str, str]) -> tuple[object, ...]:
    if isinstance(command, LaunchCommand):
        return ("launch", names[command.job_id], site_name, command.accelerator_class, command.cards, command.epoch,
                command.nodes)  # fmt: skip
    if isinstance(command, ReserveCommand):
        return ("reserve", names[command.job_id], site_name, command.cards, command.epoch, command.nodes)
    if isinstance(command, PreemptCommand):
        return ("preempt", names[command.job_id], site_name, command.epoch, command.grace_s)
    return (type(command).__name__, site_name)


async def test_the_twin_and_the_gateways_core_dispatch_the_same_on_the_same_state(tmp_path: Path) -> None:
    policy = write_policy(tmp_path)
    later = EPOCH + timedelta(seconds=5)

    reference = Reference(policy, VirtualClock())
    for trace in RUNNING:
        await reference.submit(trace)
    reference.settle()
    reference.clock.now = later
    for trace in QUEUED:
        await reference.submit(trace)
    reference.core.scheduler.schedule()  # the one cycle compared
    expected = sent(reference.core, {name: s.session for name, s in reference.sites.items()})

    twin = Twin(policy, catalogue(), SITES)
    for trace in RUNNING:
        await twin.submit(trace)
    twin.settle()
    twin.clock.now = later
    for trace in QUEUED:
        await twin.submit(trace)
    twin.core.scheduler.schedule()
    got = sent(twin.core, {name: s.session for name, s in twin.sites.items()})

    assert got == expected
    kinds = {c[0] for c in got}
    assert {"launch", "preempt", "reserve"} <= kinds, got  # the state makes every kind of decision
