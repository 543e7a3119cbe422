"""The gateway's Prometheus metrics: what an operator watches and alerts on, named by Prometheus' conventions.

Owns: the gateway's metric names and what each counts, and their registry. Most figures are read at scrape time
from the parts' own state (`GatewayCollector`: jobs, queue, sites and cards, policy, bookings, receipts,
revocations, cycles); what only an event can tell (latencies, gang rounds, ended jobs, failed tasks,
authentication failures) is recorded by `GatewayEvents`, an observer of the job book, of the scheduling cycles
and of every call (through `gateway.transport.brakes`). It changes nothing it observes. Serving, with mTLS off
loopback, is `fedgate.common.metrics_http`'s.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import grpc
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from fedgate.common.metrics_http import MetricsTls, serve_registry
from gateway.app.compose import Core
from gateway.app.config import GatewayConfig
from gateway.jobs.model import Job, JobState
from gateway.trust.service import Trust

SUBMIT_METHOD = "/fedgate.v1.JobService/CreateJob"
FAILED_TASK_STATES = frozenset({JobState.FAILED, JobState.LOST})
"""An attempt that ended so (its site said it failed, or the site was lost under it) is a failed task."""
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds: a call or a scheduling cycle takes milliseconds; a second is already bad."""
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
"""Seconds a job waits in the queue: under a second when cards are free, hours when the federation is full."""
UNEXPLAINED = "NOT_EXAMINED"
MAX_EXPLAINED = 500
"""Queued jobs whose live reason is worked out per scrape; the rest count under reason NOT_EXAMINED, so that a
long queue cannot make a scrape expensive."""


class GatewayCollector(Collector):
    """The figures read from the gateway's parts at each scrape."""

    def __init__(self, core: Core, trust: Trust) -> None:
        self.core = core
        self.trust = trust

    def collect(self) -> Iterator[Metric]:
        yield from self._policy()
        yield from self._jobs()
        yield from self._sites()
        core = self.core
        cycles = core.scheduler.cycles
        runs = CounterMetricFamily(
            "fedgate_scheduling_cycles",
            "Scheduling cycles run, by outcome (a failed one is logged).",
            labels=["outcome"],
        )
        runs.add_metric(["completed"], cycles.completed)
        runs.add_metric(["failed"], cycles.failed)
        yield runs
        bookings = GaugeMetricFamily("fedgate_bookings", "Live advance reservations by state.", labels=["state"])
        for state, count in sorted(Counter(r.state.value for r in core.reservation_ledger.live.values()).items()):
            bookings.add_metric([state], count)
        yield bookings
        receipts = CounterMetricFamily(
            "fedgate_receipts",
            "Usage receipts from the sites, settled or refused (an invalid one).",
            labels=["outcome"],
        )
        for outcome in ("settled", "refused"):
            receipts.add_metric([outcome], core.dispatcher.receipts[outcome])
        yield receipts
        revocations = GaugeMetricFamily(
            "fedgate_revocations", "Revocations in force: certificate serials, tokens, principals.", labels=["kind"]
        )
        for kind, count in self.trust.revocations.counts().items():
            revocations.add_metric([kind], count)
        yield revocations

    def _policy(self) -> Iterator[Metric]:
        status = self.core.admin.policy_status()
        info = InfoMetricFamily("fedgate_policy", "The policy in force (its sha256 version).")
        info.add_metric([], {"version": status.policy.version})
        yield info
        reloads = CounterMetricFamily(
            "fedgate_policy_reloads",
            "Policy reloads: applied (a valid policy swapped in) or refused (the last good one stayed).",
            labels=["outcome"],
        )
        reloads.add_metric(["applied"], status.reloads)
        reloads.add_metric(["refused"], status.failed_reloads)
        yield reloads
        yield GaugeMetricFamily(
            "fedgate_policy_reload_error",
            "1 while the policy file on disk is invalid (see fedgate admin policy status).",
            1 if status.last_error else 0,
        )

    def _jobs(self) -> Iterator[Metric]:
        core = self.core
        active = core.book.active
        jobs = GaugeMetricFamily("fedgate_jobs", "Active jobs by state and tenant.", labels=["state", "tenant"])
        for (state, tenant), count in sorted(Counter((j.state.value, j.spec.tenant) for j in active.values()).items()):
            jobs.add_metric([state, tenant], count)
        yield jobs
        depth = GaugeMetricFamily(
            "fedgate_queue_jobs",
            "Queued jobs by accelerator class they may use and the code of why they wait (a job that may use "
            "several classes counts in each).",
            labels=["accelerator_class", "reason"],
        )
        for (cls, reason), count in sorted(self._queue_reasons().items()):
            depth.add_metric([cls, reason], count)
        yield depth

    def _queue_reasons(self) -> Counter[tuple[str, str]]:
        core = self.core
        queued = core.queue.queued
        counts: Counter[tuple[str, str]] = Counter()
        snapshot = core.outlook.snapshot() if queued else None
        for index, (job_id, classes) in enumerate(sorted(queued.items())):  # job ids sort oldest first
            job = core.book.active.get(job_id)
            if job is None:
                continue
            reason = UNEXPLAINED
            if index < MAX_EXPLAINED:
                reasons = core.outlook.with_pending_reasons(job, snapshot).reasons
                reason = reasons[-1].code if reasons else "WAITING"
            for cls in classes or ("none",):
                counts[cls, reason] += 1
        return counts

    def _sites(self) -> Iterator[Metric]:
        core = self.core
        views = core.registry.views(core.usage.leases())
        connected = GaugeMetricFamily("fedgate_sites_connected", "Sites with a live agent stream.")
        connected.add_metric([], sum(1 for view in views if view.connected))
        yield connected
        liveness = GaugeMetricFamily(
            "fedgate_site_up",
            "1 while the site's agent stream is open, by site and liveness.",
            labels=["site", "liveness"],
        )
        cards = {
            kind: GaugeMetricFamily(
                f"fedgate_site_{kind}_cards",
                f"Cards a site {verb}, by accelerator class.",
                labels=["site", "accelerator_class"],
            )
            for kind, verb in (
                ("offered", "offers the federation"),
                ("free", "reports free"),
                ("leased", "runs this federation's jobs on (as the gateway counts them)"),
            )
        }
        connects = CounterMetricFamily(
            "fedgate_site_stream_connects",
            "Agent streams opened by a site (its first and every reconnect).",
            labels=["site"],
        )
        for view in views:
            liveness.add_metric([view.name, view.liveness], 1 if view.connected else 0)
            leased = dict(view.leased)
            for pool in view.pools:
                cards["offered"].add_metric([view.name, pool.accelerator_class], pool.offered)
                cards["free"].add_metric([view.name, pool.accelerator_class], pool.free)
            for cls in sorted({*leased, *(p.accelerator_class for p in view.pools)}):
                cards["leased"].add_metric([view.name, cls], leased.get(cls, 0))
            connects.add_metric([view.name], core.registry.get(view.name).connects)
        yield liveness
        yield from cards.values()
        yield connects


class GatewayEvents:
    """The figures only an event tells: recorded as the job book, the scheduler and the calls report them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.admission = Histogram(
            "fedgate_job_admission_seconds",
            "Time to answer a CreateJob call (checks, policy, the durable write), by outcome code.",
            ["code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.dispatch = Histogram(
            "fedgate_job_dispatch_latency_seconds",
            "Time from a job's queueing (or queueing again after an attempt) to its dispatch to a site.",
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.cycle = Histogram(
            "fedgate_scheduling_cycle_seconds",
            "Duration of one scheduling cycle.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.dispatches = CounterMetric(
            "fedgate_scheduling_dispatches", "Jobs the scheduling cycles dispatched to a site.", registry=registry
        )
        self.gangs = CounterMetric(
            "fedgate_gang_rounds",
            "Rounds of reserving a gang over several sites: started, committed (every site held its part) or failed.",
            ["outcome"],
            registry=registry,
        )
        self.ended = CounterMetric(
            "fedgate_jobs_ended",
            "Jobs that reached a final state, by state and tenant.",
            ["state", "tenant"],
            registry=registry,
        )
        self.task_failures = CounterMetric(
            "fedgate_task_failures",
            "Attempts that ended FAILED (their site said so) or LOST (the site went silent under them), by tenant.",
            ["state", "tenant"],
            registry=registry,
        )
        self.auth_failures = CounterMetric(
            "fedgate_authentication_failures",
            "Calls refused as unauthenticated (a bad or revoked certificate or token), by port.",
            ["port"],
            registry=registry,
        )
        for outcome in ("started", "committed", "failed"):
            self.gangs.labels(outcome)
        for port in ("mtls", "public"):
            self.auth_failures.labels(port)
        self._states: dict[str, JobState] = {}
        self._queued_at: dict[str, datetime] = {}

    def watch(self, core: Core) -> None:
        """Start observing the core's job book and scheduling cycles (the jobs it holds now are the baseline)."""
        for job in core.book.active.values():
            self._states[job.job_id] = job.state
            if job.state == JobState.QUEUED:
                self._queued_at[job.job_id] = job.update_time
        core.book.listen(self.job_changed)
        core.scheduler.cycles.observe(self.cycle_ran)

    def job_changed(self, job: Job) -> None:
        before = self._states.get(job.job_id)
        state = job.state
        if state == before:
            return
        if state.terminal:
            self._states.pop(job.job_id, None)
            self.ended.labels(state.value, job.spec.tenant).inc()
        else:
            self._states[job.job_id] = state
        if state in FAILED_TASK_STATES and before in {JobState.DISPATCHED, JobState.RUNNING}:
            self.task_failures.labels(state.value, job.spec.tenant).inc()
        if state == JobState.RESERVING:
            self.gangs.labels("started").inc()
        elif before == JobState.RESERVING:
            self.gangs.labels("committed" if state == JobState.DISPATCHED else "failed").inc()
        if state == JobState.QUEUED:  # a failed gang round goes on waiting since it was first queued
            self._queued_at.setdefault(job.job_id, job.update_time)
        elif state != JobState.RESERVING:  # dispatched, or ended without (cancelled, refused): no longer waiting
            queued_at = self._queued_at.pop(job.job_id, None)
            if state == JobState.DISPATCHED and queued_at is not None:
                self.dispatch.observe(max(0.0, (job.update_time - queued_at).total_seconds()))

    def cycle_ran(self, seconds: float, result: object) -> None:
        self.cycle.observe(seconds)
        if isinstance(result, int):
            self.dispatches.inc(result)

    def call_ended(self, port: str, method: str, code: grpc.StatusCode | None, seconds: float) -> None:
        """`gateway.transport.brakes`' observer: every call of one port, once it has ended."""
        if code == grpc.StatusCode.UNAUTHENTICATED:
            self.auth_failures.labels(port).inc()
        if method == SUBMIT_METHOD:
            self.admission.labels((code or grpc.StatusCode.OK).name).observe(seconds)


def gateway_registry(core: Core, trust: Trust) -> tuple[CollectorRegistry, GatewayEvents]:
    """A registry of one gateway's metrics (its own, not the process-wide default: tests run several)."""
    registry = CollectorRegistry(auto_describe=True)
    events = GatewayEvents(registry)
    events.watch(core)
    registry.register(GatewayCollector(core, trust))
    return registry, events


async def serve_metrics(registry: CollectorRegistry, config: GatewayConfig) -> asyncio.Server | None:
    """Serve the registry where the config says (None: nowhere); off loopback with mTLS: the gateway's server
    certificate, and scrapers' client certificates verified against the federation CA."""
    if config.metrics is None:
        return None
    return await serve_registry(registry, config.metrics, MetricsTls(config.tls.ca, config.tls.cert, config.tls.key))
