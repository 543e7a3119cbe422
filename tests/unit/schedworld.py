"""A small federation for scheduling tests: a real gateway core over an in-memory store, sites in the registry,
a clock the test moves, and the site side driven through the real Dispatcher (no gRPC, no agents)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.app.compose import compose
from gateway.app.config import REPO_POLICIES
from gateway.identity.principal import Principal
from gateway.jobs.model import Job, JobEvent, JobSpec, JobState, Resources, StackRun
from gateway.policy import load_catalogue
from gateway.policy.holder import PolicyHolder
from gateway.sites.dispatcher import SiteUpdate
from gateway.sites.model import Pool, SiteTerms
from gateway.sites.registry import Command, Outbox
from gateway.store import open_store

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
H100 = "nvidia-h100"


class World:
    def __init__(self, policy: Path = REPO_POLICIES / "federation.yaml") -> None:
        self.now = START
        catalogue = load_catalogue(REPO_POLICIES / "accelerators.yaml")
        holder = PolicyHolder(policy, catalogue, START)
        self.fed = compose(open_store("sqlite://:memory:"), holder, clock=lambda: self.now)
        self.dispatcher = self.fed.dispatcher
        self._outboxes: dict[str, Outbox] = {}
        self._sequences: dict[str, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._ids = itertools.count(1)

    def site(self, name: str, cards: int, cls: str = H100, terms: SiteTerms | None = None) -> None:
        _, self._outboxes[name] = self.fed.registry.connect(name, "test", self.now)
        self.fed.registry.report(name, [Pool(cls, cards, cards, cards, 8)], True, self.now, terms)

    def submit(
        self,
        cards: int,
        runtime: timedelta = timedelta(hours=1),
        priority: str = "",
        cls: str = H100,
        tenant: str = "deepsea-ai/llama-sft",
        dataset: str = "",
    ) -> str:
        spec = JobSpec(
            tenant=tenant.partition("/")[0],
            project=tenant.partition("/")[2],
            resources=Resources(cls, None, cards),
            runs=(StackRun("", "", ("train",)),),
            max_runtime=runtime,
            priority_class=priority,
            dataset=dataset,
        )
        job_id = f"job-{next(self._ids):05d}"
        job = Job(job_id, spec, JobState.QUEUED, self.now, self.now, request_id=job_id, owner="test")
        for stored, _ in self.fed.store.create_jobs([(job, JobEvent(job.job_id, JobState.QUEUED, self.now))]):
            self.fed.book.remember(stored)
        return job.job_id

    def cancel(self, job_id: str) -> None:
        self.fed.jobs.cancel_job(Principal.admin("demo", "root"), job_id)

    def cycle(self) -> int:
        return self.fed.scheduler.schedule()

    def periodic_cycle(self) -> int:
        """The cycle `Scheduler.run` runs every period even when nothing woke it: every queued job is looked at."""
        self.fed.queue.capacity_changed()
        return self.fed.scheduler.schedule()

    def job(self, job_id: str) -> Job:
        found = self.fed.book.active.get(job_id) or self.fed.store.get_job(job_id)
        assert found is not None, job_id
        return found

    def state(self, job_id: str) -> JobState:
        return self.job(job_id).state

    def report(self, job_id: str, state: JobState) -> None:
        """The job's site says it reached `state` (RUNNING, SUCCEEDED, PREEMPTED, ...), now."""
        job = self.job(job_id)
        site = job.placements[0].site
        self.dispatcher.update(site, SiteUpdate(job_id, job.epoch, state, next(self._sequences[site]), self.now))

    def start(self, *job_ids: str) -> None:
        for job_id in job_ids:
            assert self.state(job_id) == JobState.DISPATCHED, (job_id, self.job(job_id).reasons)
            self.report(job_id, JobState.RUNNING)

    def commands(self, site: str) -> list[Command]:
        """What the gateway has sent the site since the last call."""
        outbox, sent = self._outboxes[site], []
        while not outbox.empty():
            item = outbox.get_nowait()
            assert isinstance(item, tuple)
            sent.append(item[1])
        return sent

    def explained(self, job_id: str) -> dict[str, str]:
        """What ExplainJob says of the job, code -> stage."""
        explanation = self.fed.jobs.explain(Principal.admin("demo", "root"), job_id)
        return {r.code: r.stage for r in explanation.reasons}

    def reasons(self, job_id: str) -> dict[str, str]:
        """The live reason chain of a queued job, code -> message."""
        job = self.fed.outlook.with_pending_reasons(self.job(job_id))
        return {r.code: r.message for r in job.reasons}
