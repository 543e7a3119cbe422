"""Site leases: a site the gateway stops hearing from becomes suspect, then lost, and its attempts LOST.

Owns: judging each site's liveness from when the gateway last heard from it (`SiteRegistry.heard_at`, the
gateway's own monotonic clock, so a wall-clock jump changes nothing), and what follows from a lost site: each
attempt it held (DISPATCHED or RUNNING there) becomes LOST with reason SITE_LEASE_EXPIRED, one event each,
and is queued again by its policy (`JobBook.requeue`: a job that has lost too many attempts fails); the
other parts of a gang are cancelled; the site's stream, if one is still open, is closed, so that an agent that
comes back reconnects and has its stale attempts cancelled by `Dispatcher.hello`.

The lease is judged only over time the gateway itself was up: a site not heard from since this gateway
started counts as heard at its start, and no site is declared lost before `restart_grace` has passed since
then, so a restart or a takeover never evicts the federation's running work. It does not speak to sites.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from fedgate.common.supervise import Cycles
from gateway.gangs.coordinator import GangCoordinator
from gateway.jobs.book import JobBook
from gateway.jobs.model import Job, JobState, Reason
from gateway.sites.registry import LOST, CancelCommand, SiteRegistry

log = logging.getLogger("fedgate.gateway.sites")

HOLDING = frozenset({JobState.DISPATCHED, JobState.RUNNING})
"""States in which a site holds an attempt of the job (a gang still reserving is the coordinator's)."""


class SiteLeases:
    def __init__(
        self,
        registry: SiteRegistry,
        book: JobBook,
        gangs: GangCoordinator,
        *,
        lease: timedelta,
        suspect_after: timedelta,
        restart_grace: timedelta,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.book = book
        self.gangs = gangs
        self.lease = lease.total_seconds()
        self.suspect_after = suspect_after.total_seconds()
        self.grace = restart_grace.total_seconds()
        self.monotonic = monotonic
        self.started = monotonic()
        self.declared = 0
        """Sites declared lost since start (for tests and metrics)."""
        self.cycles = Cycles(log, "site lease check")
        """The checks run, completed and failed: one that raises is logged and the next one runs."""

    def tick(self) -> list[str]:
        """Look at every site once: mark the silent ones suspect, declare those past their lease lost. Returns
        the sites declared lost by this tick."""
        now = self.monotonic()
        holding: dict[str, list[Job]] = {}
        for job in self.book.active.values():
            if job.state in HOLDING:
                for site in job.sites:
                    holding.setdefault(site, []).append(job)
        lost = []
        for site in sorted(set(self.registry.names()) | set(holding)):
            heard = self.registry.heard_at(site)
            since = self.started if heard is None else max(heard, self.started)
            silent = now - since
            if silent >= self.suspect_after:
                self.registry.suspect(site, f"no word for {silent:.0f} s (reports are due every few seconds)")
            if silent < self.lease or now - self.started < self.grace:
                continue
            if self.registry.liveness(site) == LOST and site not in holding:
                continue
            self._declare_lost(site, silent, holding.get(site, []))
            lost.append(site)
        return lost

    def _declare_lost(self, site: str, silent: float, jobs: list[Job]) -> None:
        why = f"no word from {site} for {silent:.0f} s, past its {self.lease:g} s lease"
        log.warning("site %s is lost: %s; %d attempt(s) lost", site, why, len(jobs))
        self.registry.mark_lost(site, why)
        self.gangs.site_lost(site)
        self.declared += 1
        for job in jobs:
            current = self.book.active.get(job.job_id)
            if current is None or current.epoch != job.epoch or current.state not in HOLDING:
                continue  # already moved on (an earlier site of the same gang)
            for other in current.sites:
                if other != site:
                    self.registry.send(other, CancelCommand(job.job_id, job.epoch, f"{site} is lost: {why}"))
            reason = Reason("site", "SITE_LEASE_EXPIRED", why, site)
            (updated,) = self.book.transitions(
                [(current, JobState.LOST, f"attempt lost: {why}", site, None, {"reasons": (reason,)})]
            )
            self.book.requeue(updated, f"attempt lost: {why}")

    async def run(self, period: float) -> None:
        """Tick every `period` s until cancelled."""
        while True:
            await asyncio.sleep(period)
            self.cycles.run(self.tick)
