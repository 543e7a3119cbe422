"""Preemption: which running jobs to stop so that a more urgent queued job fits, and how long they get.

Owns: the policy facts (a job's priority class, whether it may be preempted by a job of a given priority, its
grace period) and the pure choice of victims: on one pool (`select_victims`) the set that frees enough cards
with the fewest cards beyond the need (so never a job more than needed: none of the chosen could be spared),
then the lowest priorities, then the youngest attempts (the least work lost); and among pools
(`PreemptionOption.rank`). It never picks anything when even every candidate together would not free enough.
Which jobs are candidates at all (not already stopping, not protected, not the preemptor's own preemptor),
sending Preempt and keeping the freed cards are the cycle's (`gateway.scheduler.cycleplan`). No I/O; the clock is
passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.jobs.model import JobSpec
from gateway.policy import FederationPolicy
from gateway.policy.model import PriorityClass

DEFAULT_GRACE_S = 30
"""The grace of a job whose class is unknown (the policy changed under it): PriorityClass's own default."""


def priority_class(policy: FederationPolicy, spec: JobSpec) -> PriorityClass | None:
    """The job's class under `policy`: the one it names, else the default class."""
    return policy.priorities.get(spec.priority_class) if spec.priority_class else policy.default_priority


def base_priority(policy: FederationPolicy, spec: JobSpec) -> int:
    """The class's priority without aging: preemption compares these, so waiting never earns the right to
    preempt (and a preempted job, however long it waits, never turns round and preempts its preemptor)."""
    found = priority_class(policy, spec)
    return found.priority if found is not None else 0


def preemptible_below(policy: FederationPolicy, priority: int) -> bool:
    """Whether any preemptible class ranks below `priority`: if none, a job of it can preempt nothing."""
    return any(c.preemptible and c.priority < priority for c in policy.priorities.values())


def may_be_preempted(policy: FederationPolicy, victim: JobSpec, by_priority: int) -> bool:
    """A job may be preempted by one of strictly higher priority, and only if its class is preemptible."""
    found = priority_class(policy, victim)
    return found is not None and found.preemptible and found.priority < by_priority


def grace_period_s(policy: FederationPolicy, spec: JobSpec) -> int:
    """Seconds between the signal to checkpoint and the kill when this job is preempted (its class decides)."""
    found = policy.priorities.get(spec.priority_class) if spec.priority_class else policy.default_priority
    return found.grace_period_s if found is not None else DEFAULT_GRACE_S


@dataclass(frozen=True)
class Victim:
    """A job that could be preempted on a pool: its cards there, its priority, when its attempt started."""

    job_id: str
    cards: int
    priority: int
    started: datetime  # of the current attempt (its dispatch, if not reported running yet): later is younger


@dataclass(frozen=True)
class PreemptOrder:
    """Tell `site` to preempt attempt `epoch` of `job_id`, giving it `grace_s` seconds to checkpoint."""

    site: str
    job_id: str
    epoch: int
    grace_s: int


@dataclass(frozen=True)
class PreemptionOption:
    """Stopping `victims` on one pool frees enough for `need` more cards there."""

    site: str
    accelerator_class: str
    need: int
    victims: tuple[Victim, ...]

    @property
    def freed(self) -> int:
        return sum(v.cards for v in self.victims)

    def rank(self, now: datetime) -> tuple[int, int, float, str, str]:
        """Fewest cards beyond the need, then the lowest highest priority, then the least work lost."""
        lost = sum((now - v.started).total_seconds() * v.cards for v in self.victims)
        top = max(v.priority for v in self.victims)
        return (self.freed - self.need, top, lost, self.site, self.accelerator_class)


def select_victims(need: int, candidates: Sequence[Victim]) -> tuple[Victim, ...] | None:
    """The victims to stop on one pool so that at least `need` cards come free; None when no set suffices.

    1. The smallest total of cards >= need that some subset reaches (a subset-sum over bit sets: a minimal set
       overshoots by less than its largest member, so totals up to need + the largest card count suffice).
    2. Among the subsets with that total, those whose highest priority is lowest.
    3. Among those, the one that takes the lowest-priority, youngest jobs first (lexicographically, in that order).
    Such a set is irreducible: dropping any victim leaves fewer than `need` cards.
    """
    if need <= 0:
        return ()
    if sum(v.cards for v in candidates) < need:
        return None
    ordered = sorted(candidates, key=lambda v: (v.priority, -v.started.timestamp(), v.job_id))
    limit = need + max(v.cards for v in ordered)
    target = _smallest_total(need, ordered, limit)
    if target is None:
        return None
    for top in sorted({v.priority for v in ordered}):
        allowed = [v for v in ordered if v.priority <= top]
        chosen = _subset_with_total(target, allowed, limit)
        if chosen is not None:
            return chosen
    return None  # unreachable: with every priority allowed the target is reachable by construction


def _suffix_sums(victims: Sequence[Victim], limit: int) -> list[int]:
    """sums[i]: bit s set when some subset of victims[i:] adds up to s (< limit)."""
    mask = (1 << limit) - 1
    sums = [0] * (len(victims) + 1)
    sums[-1] = 1
    for i in range(len(victims) - 1, -1, -1):
        sums[i] = (sums[i + 1] | (sums[i + 1] << victims[i].cards)) & mask
    return sums


def _smallest_total(need: int, victims: Sequence[Victim], limit: int) -> int | None:
    reachable = _suffix_sums(victims, limit)[0] >> need
    if reachable == 0:
        return None
    return need + (reachable & -reachable).bit_length() - 1


def _subset_with_total(target: int, victims: Sequence[Victim], limit: int) -> tuple[Victim, ...] | None:
    sums = _suffix_sums(victims, limit)
    if not (sums[0] >> target) & 1:
        return None
    chosen: list[Victim] = []
    remaining = target
    for i, victim in enumerate(victims):
        # Take the most preferred victim whenever the rest can still make up the remainder exactly.
        if victim.cards <= remaining and (sums[i + 1] >> (remaining - victim.cards)) & 1:
            chosen.append(victim)
            remaining -= victim.cards
    return tuple(chosen)
