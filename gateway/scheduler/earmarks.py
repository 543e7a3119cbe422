"""What the scheduler remembers between cycles about held cards, and the reasons a waiting job gets from them.

Owns: `Preemption` (a job that preempted others: its pool, its victims, when the hold on the freed cards
lapses), `EarmarkBook` (the preemptions in flight, who preempted whom while the victim lives, the last cycle's
holds and heads) and the reason chain links they give (`reasons_for`). It decides nothing: each cycle
`gateway.scheduler.cycleplan` reads it, decides, and records here. In memory only: after a gateway restart the victims
still stop (their agents have the Preempt) and the preemptor competes for the freed cards like any job.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.jobs.model import Reason
from gateway.placement.backfill import Earmark, EarmarkKind

PREEMPTION_SLACK = timedelta(seconds=60)
"""How long past the victims' grace the freed cards stay held for the preemptor: long enough for the kill and
the report to arrive, short enough that a victim whose site went quiet does not hold them for ever."""
MAX_BEHIND_REASONS = 3  # holds named in one waiting job's reason chain


def _at(time: datetime) -> str:
    return time.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Preemption:
    """`victims` were sent Preempt so that `cards` cards of one pool come free for `preemptor`."""

    preemptor: str
    site: str
    accelerator_class: str
    cards: int
    victims: tuple[str, ...]
    grace_s: int  # the longest grace among the victims
    deadline: datetime  # the hold lapses then, whether or not the victims reported stopping


class EarmarkBook:
    """The earmarks' memory across scheduling cycles (one per gateway core; the scheduler's task only)."""

    def __init__(self) -> None:
        self.preemptions: dict[str, Preemption] = {}  # preemptor job id -> its preemption in flight
        self.preempted_by: dict[str, str] = {}  # victim job id -> its preemptor, while the victim is active
        self.holds: tuple[Earmark, ...] = ()  # the last cycle's holds, for the reason chains
        self._heads: tuple[str, ...] = ()

    def begin(self, now: datetime, queued: Collection[str], active: Collection[str]) -> None:
        """Forget what no longer applies: a preemption whose preemptor left the queue (dispatched, cancelled)
        or whose hold lapsed, and who preempted a job that has ended."""
        for job_id, preemption in list(self.preemptions.items()):
            if job_id not in queued or now >= preemption.deadline:
                del self.preemptions[job_id]
        for victim in [v for v in self.preempted_by if v not in active]:
            del self.preempted_by[victim]

    def stopping(self) -> set[str]:
        """Jobs sent Preempt whose preemptor still waits for them: never picked as victims a second time."""
        return {victim for p in self.preemptions.values() for victim in p.victims}

    def record_preemption(self, preemption: Preemption) -> None:
        self.preemptions[preemption.preemptor] = preemption
        for victim in preemption.victims:
            self.preempted_by[victim] = preemption.preemptor

    def finish(self, holds: Sequence[Earmark]) -> None:
        """The cycle's holds as it ended: its backfill earmarks' holders are looked at again next cycle."""
        self.holds = tuple(holds)
        self._heads = tuple(h.job_id for h in holds if h.kind is EarmarkKind.BACKFILL)

    def heads(self) -> dict[str, str]:
        """The last cycle's heads: job id -> the class it holds a reservation of."""
        return {h.job_id: h.accelerator_class for h in self.holds if h.kind is EarmarkKind.BACKFILL}

    def lapsed(self, queued: Collection[str], now: datetime) -> bool:
        """Whether a job that held cards last cycle has left the queue (dispatched or cancelled), or a
        preemption's hold lapses at `now`: what it held is free for all."""
        return any(j not in queued for j in (*self._heads, *self.preemptions)) or any(
            now >= p.deadline for p in self.preemptions.values()
        )

    def revisit(self, candidates: list[str], queued: Mapping[str, object]) -> list[str]:
        """`candidates` plus the heads and preemptors not among them: their holds bind every other job, so a
        cycle that looks only at new jobs still works them out first."""
        seen = set(candidates)
        extra = [j for j in (*self._heads, *self.preemptions) if j in queued and j not in seen]
        return candidates + list(dict.fromkeys(extra))

    def reasons_for(self, job_id: str, classes: Collection[str]) -> tuple[Reason, ...]:
        """What the holds say about a queued job: the one it holds or waits for, or the ones it waits behind."""
        preemption = self.preemptions.get(job_id)
        if preemption is not None:
            # The victims are other jobs, perhaps of other tenants: counted, never named.
            return (
                Reason(
                    "dispatch",
                    "WAITING_FOR_PREEMPTION",
                    f"preempting {len(preemption.victims)} lower-priority job(s) on {preemption.site}:"
                    f" {preemption.cards} x {preemption.accelerator_class} are held for it until they stop"
                    f" (grace {preemption.grace_s} s; the hold lapses at {_at(preemption.deadline)})",
                    preemption.site,
                ),
            )
        own = [h for h in self.holds if h.job_id == job_id and h.kind is EarmarkKind.BACKFILL]
        if own:
            hold = own[0]
            return (
                Reason(
                    "capacity",
                    "RESERVATION_HELD",
                    f"holds {hold.cards} x {hold.accelerator_class} on {hold.site} from {_at(hold.start)};"
                    " backfill allowed only around it",
                    hold.site,
                ),
            )
        behind = [h for h in self.holds if h.accelerator_class in classes and h.job_id != job_id]
        return tuple(_behind(hold) for hold in behind[:MAX_BEHIND_REASONS])


def _behind(hold: Earmark) -> Reason:
    """A hold of another job, perhaps of another tenant: what the waiting job needs to know to fit around it
    (where, how many, from when), never whose it is (`docs/security.md`, "What a reason says")."""
    if hold.kind is EarmarkKind.PREEMPTION:
        message = (
            f"{hold.cards} x {hold.accelerator_class} on {hold.site} are held for a higher-priority job, which"
            " preempted lower-priority jobs there"
        )
        return Reason("capacity", "HELD_FOR_PREEMPTOR", message, hold.site)
    message = (
        f"{hold.cards} x {hold.accelerator_class} on {hold.site} are reserved for a larger waiting job from"
        f" {_at(hold.start)}: a job may use them only if its maxRuntime ends before then, or within the"
        f" {max(hold.spare, 0)} card(s) the reservation leaves over"
    )
    return Reason("capacity", "BEHIND_RESERVATION", message, hold.site)
