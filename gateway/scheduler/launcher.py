"""The launcher: turning a placement into a lease and telling the site what to run.

Owns: the DISPATCHED state change for a new lease (`dispatch_move`: next epoch and attempt, the attempt's own
times), the site's `LaunchCommand` for its part (the run for the class's stack, the job's environment with the
preemption grace period added as `PREEMPT_GRACE_ENV`), and `launch`, which makes a cycle's dispatches durable in
one transaction (through the job book) before any site hears of them (through the site registry). It does not
choose where a job goes (`gateway.scheduler.cycle`) nor judge quotas (`gateway.scheduler.liveusage`).
"""

from __future__ import annotations

from dataclasses import replace

from gateway.errors import FailedPrecondition
from gateway.jobs.book import JobBook, Move
from gateway.jobs.model import Job, JobState, Placement, Reason, StackRun
from gateway.placement.nodes import placed_nodes
from gateway.placement.preemption import grace_period_s
from gateway.policy.holder import PolicyHolder
from gateway.scheduler.rendezvous import world
from gateway.sites.registry import LaunchCommand, SiteRegistry

PREEMPT_GRACE_ENV = "FEDGATE_PREEMPT_GRACE_S"  # tells every job how long it has to checkpoint when preempted


class Launcher:
    def __init__(self, book: JobBook, registry: SiteRegistry, policy: PolicyHolder) -> None:
        self.book = book
        self.registry = registry
        self.policy = policy

    def launch_command(self, job: Job, placement: Placement) -> LaunchCommand | None:
        """What a site is told to run for its part of the job's current lease; None when no run fits."""
        run = self._run(job, placement)
        if run is None:
            return None
        spec = job.spec
        grace = grace_period_s(self.policy.policy, spec)
        return LaunchCommand(
            job.job_id,
            job.epoch,
            job.attempt,
            spec.tenant,
            spec.project,
            placement.accelerator_class,
            placement.cards,
            run,
            spec.max_runtime,
            (*((k, v) for k, v in spec.env if k != PREEMPT_GRACE_ENV), (PREEMPT_GRACE_ENV, str(grace))),
            spec.labels,
            nodes=placement.nodes,
            rendezvous=world(job, placement, self.registry.rendezvous_point),
        )

    def _run(self, job: Job, placement: Placement) -> StackRun | None:
        accelerator = self.policy.catalogue.get(placement.accelerator_class)
        return job.spec.run_for(accelerator.stack if accelerator else "")

    def dispatch_move(self, job: Job, placement: Placement, reasons: tuple[Reason, ...]) -> Move:
        """The DISPATCHED state change for a new lease of `job` on `placement` (not yet durable)."""
        if self._run(job, placement) is None:  # admission guarantees a run; a catalogue change may not
            raise FailedPrecondition(f"job {job.job_id} has no run for {placement.accelerator_class}")
        per_node = self.registry.cards_per_node(placement.site, placement.accelerator_class)
        nodes = placed_nodes(placement.cards, job.spec.resources.nodes, per_node)
        changes: dict[str, object] = {
            "epoch": job.epoch + 1,
            "attempt": job.attempt + 1,
            "placements": (replace(placement, nodes=nodes),),
            "reasons": reasons,
            "start_time": None,  # the new attempt's own, once it runs: never the last attempt's
            "end_time": None,
        }
        return (job, JobState.DISPATCHED, reasons[0].message, placement.site, None, changes)

    def launch(self, moves: list[Move]) -> None:
        """Make a cycle's dispatches durable in one transaction, then (only then) tell the sites."""
        if not moves:
            return
        for job in self.book.transitions(moves):
            placement = job.placements[0]
            command = self.launch_command(job, placement)
            assert command is not None
            self.registry.send(placement.site, command)
