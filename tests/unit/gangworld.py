"""A federation with fake sites and a hand-moved clock, for driving the gang coordinator without a network.

The gateway side is real (a core over an in-memory SQLite store, its site registry, its Dispatcher); the
sites are `FakeSite`s that read their outbox and answer Reserve / Commit / Abort / Launch / Cancel the way an
agent does (holding cards, refusing, or staying silent), so that tests can check who holds what.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.app.compose import compose
from gateway.app.config import REPO_POLICIES
from gateway.identity.principal import Principal
from gateway.jobs.model import Job, JobSpec, JobState, Resources, StackRun, Topology
from gateway.policy import load_catalogue
from gateway.policy.holder import PolicyHolder
from gateway.sites.dispatcher import RunningAttempt
from gateway.sites.model import Pool
from gateway.sites.registry import AbortCommand, CancelCommand, CommitCommand, LaunchCommand, ReserveCommand
from gateway.store import open_store

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ALICE = Principal.user("demo", "deepsea-ai", "alice")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeSite:
    """An agent as the coordinator sees it: `free` cards; holds by reservation id; launches by (job, epoch)."""

    name: str
    cards: int
    free: int = -1
    refuse: str = ""  # refuse every Reserve with this reason
    silent: bool = False  # never answer a Reserve (but still hold nothing)
    holds: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # rid -> (job, epoch, cards)
    expires: dict[str, datetime] = field(default_factory=dict)  # rid -> when an uncommitted hold lapses
    committed: set[str] = field(default_factory=set)
    launched: dict[tuple[str, int], int] = field(default_factory=dict)  # (job, epoch) -> cards
    received: list[object] = field(default_factory=list)  # every command, in order

    def __post_init__(self) -> None:
        if self.free < 0:
            self.free = self.cards

    def held(self) -> int:
        return sum(c for _, _, c in self.holds.values())


class GangWorld:
    def __init__(self, sites: list[FakeSite], cls: str = "nvidia-h100", store_url: str = "sqlite://:memory:") -> None:
        self.clock = Clock()
        catalogue = load_catalogue(REPO_POLICIES / "accelerators.yaml")
        self.policy = PolicyHolder(REPO_POLICIES / "federation.yaml", catalogue, self.clock())
        self.store_url = store_url
        self.store = open_store(store_url)
        self.fed = compose(self.store, self.policy, self.clock)
        self.dispatcher = self.fed.dispatcher
        self.cls = cls
        self.sites = {s.name: s for s in sites}
        self.sessions = {s.name: self.dispatcher.hello(s.name, "fake", []) for s in sites}
        for s in sites:
            self.report(s.name)

    def restart(self, running: dict[str, list[RunningAttempt]] | None = None) -> None:
        """A new gateway process over the same store file (nothing kept in memory); every site reconnects, saying
        which attempts it still runs (`running`), and reports its capacity again."""
        if not self.store_url.endswith(":memory:"):  # a memory store cannot be reopened: keep the one there is
            self.store.close()
            self.store = open_store(self.store_url)
        self.fed = compose(self.store, self.policy, self.clock)
        self.dispatcher = self.fed.dispatcher
        said = running or {}
        self.sessions = {name: self.dispatcher.hello(name, "fake", said.get(name, [])) for name in self.sites}
        for name in self.sites:
            self.report(name)

    def report(self, name: str) -> None:
        site = self.sites[name]
        pool = Pool(self.cls, site.cards, site.cards, site.free, 8)
        self.dispatcher.capacity(name, [pool], True)

    async def submit(self, cards: int, max_sites: int = 2, min_per_site: int = 1) -> Job:
        spec = JobSpec(
            "deepsea-ai",
            "llama-sft",
            Resources(self.cls, cards=cards),
            (StackRun("", "registry.example/train:1", ("train",)),),
            topology=Topology(max_sites, min_per_site),
        )
        return await self.fed.jobs.create_job(ALICE, spec)

    def job(self, job_id: str) -> Job:
        job = self.fed.book.active.get(job_id) or self.store.get_job(job_id)
        assert job is not None
        return job

    def disconnect(self, name: str) -> None:
        self.dispatcher.goodbye(name, self.sessions[name].connection_id)

    def connected(self, name: str) -> bool:
        return (
            self.fed.registry.is_current(name, self.sessions[name].connection_id)
            and self.fed.registry.get(name).connected
        )

    def run(self, rounds: int = 20) -> None:
        """Schedule, then let every site answer what it was sent, until nothing more happens (bounded)."""
        for _ in range(rounds):
            self._expire()
            self.fed.scheduler.schedule()
            if not any(self._answer(name) for name in self.sites):
                return

    def _expire(self) -> None:
        """Holds lapse at every site by themselves, connected or not, as an agent's do."""
        for site in self.sites.values():
            for rid, until in list(site.expires.items()):
                if until <= self.clock() and rid not in site.committed:
                    self._release(site, rid)

    def _answer(self, name: str) -> bool:
        site, session = self.sites[name], self.sessions[name]
        if not self.fed.registry.is_current(name, session.connection_id):
            return False
        acted = False
        while not session.outbox.empty():
            item = session.outbox.get_nowait()
            if not isinstance(item, tuple):
                return acted
            acted = True
            command = item[1]
            site.received.append(command)
            if isinstance(command, ReserveCommand) and not site.silent:
                self._reserve(site, command)
            elif isinstance(command, CommitCommand) and command.reservation_id in site.holds:
                site.committed.add(command.reservation_id)
            elif isinstance(command, AbortCommand):
                self._release(site, command.reservation_id)
            elif isinstance(command, LaunchCommand):
                for rid, (job, epoch, _) in list(site.holds.items()):
                    if (job, epoch) == (command.job_id, command.epoch):
                        self._release(site, rid)
                site.free -= command.cards
                site.launched[(command.job_id, command.epoch)] = command.cards
            elif isinstance(command, CancelCommand):
                for rid, (job, epoch, _) in list(site.holds.items()):
                    if (job, epoch) == (command.job_id, command.epoch):
                        self._release(site, rid)
        return acted

    def _reserve(self, site: FakeSite, command: ReserveCommand) -> None:
        if site.refuse or command.cards > site.free:
            reason = site.refuse or f"only {site.free} free"
            self.dispatcher.reserve_reply(site.name, command.reservation_id, False, reason, site.free)
            return
        site.free -= command.cards
        site.holds[command.reservation_id] = (command.job_id, command.epoch, command.cards)
        site.expires[command.reservation_id] = self.clock() + command.timeout
        self.dispatcher.reserve_reply(site.name, command.reservation_id, True, "", site.free)

    @staticmethod
    def _release(site: FakeSite, rid: str) -> None:
        hold = site.holds.pop(rid, None)
        site.committed.discard(rid)
        site.expires.pop(rid, None)
        if hold is not None:
            site.free += hold[2]

    def holders(self, job_id: str) -> dict[str, int]:
        """Cards each site holds (reserved, not yet launched) for the job."""
        return {
            s.name: sum(c for job, _, c in s.holds.values() if job == job_id)
            for s in self.sites.values()
            if any(job == job_id for job, _, _ in s.holds.values())
        }

    def state(self, job_id: str) -> JobState:
        return self.job(job_id).state
