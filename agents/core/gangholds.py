"""Holds on devices for gang parts: phase one of the gateway's two-phase Reserve / Commit / Abort.

Owns: judging a gang part's Reserve (draining, the pool, the centre's terms for tenant/project/image/cards, free
capacity: offered minus running minus other holds), taking its devices from the pool so that nothing else gets
them, releasing them on Abort, on a Cancel of that attempt or when the hold expires (no Commit or Abort within
its timeout; a Commit extends it once by the same timeout, for the Launch to arrive), and handing them over to
the Launch of the same job and epoch. Time is read from the clock given; expiry happens when `expire` is
called (the runtime calls it whenever it refreshes offers). It does not own advance reservations (a Reserve with a
window), does not launch anything and does not know the wire format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from agents.core.commands import Reserve
from agents.core.devices import DevicePool
from agents.core.model import ReserveReply
from agents.errors import InsufficientCapacity
from agents.policy.terms import LaunchRequest, SitePolicy, effective_offer, judge_launch

log = logging.getLogger(__name__)

DEFAULT_HOLD_S = 10.0
"""How long a hold lasts when the gateway sent no timeout."""


@dataclass
class GangHold:
    reservation_id: str
    job_id: str
    epoch: int
    accelerator_class: str
    devices: tuple[int, ...]
    timeout: timedelta
    expires: datetime
    committed: bool = False


class GangHolds:
    """The gang-part holds of one site, over the runtime's device pools."""

    def __init__(self, pools: Mapping[str, DevicePool], policy: SitePolicy, clock: Callable[[], datetime]) -> None:
        self._pools = pools
        self._policy = policy
        self._clock = clock
        self._holds: dict[str, GangHold] = {}

    def reserve(self, command: Reserve, draining: bool) -> ReserveReply:
        """Hold the part's devices, or refuse saying why. A repeated Reserve of a held id is accepted again."""
        rid = command.reservation_id
        if rid in self._holds:
            return ReserveReply(rid, accepted=True, free=self._free(command.accelerator_class))
        refusal = self._refusal(command, draining)
        if refusal:
            log.info("reservation %s for job %s refused: %s", rid, command.job_id, refusal)
            return ReserveReply(rid, accepted=False, reason=refusal, free=self._free(command.accelerator_class))
        pool = self._pools[command.accelerator_class]
        try:
            devices = pool.allocate(command.cards, command.nodes)  # the cards are there (checked): the nodes?
        except InsufficientCapacity as exc:
            log.info("reservation %s for job %s refused: %s", rid, command.job_id, exc.message)
            return ReserveReply(rid, accepted=False, reason=exc.message, free=self._free(command.accelerator_class))
        timeout = timedelta(seconds=command.timeout_s if command.timeout_s > 0 else DEFAULT_HOLD_S)
        self._holds[rid] = GangHold(
            rid, command.job_id, command.epoch, command.accelerator_class, devices, timeout, self._clock() + timeout
        )
        log.info(
            "reservation %s: holding %d %s cards for job %s",
            rid,
            command.cards,
            command.accelerator_class,
            command.job_id,
        )
        return ReserveReply(rid, accepted=True, free=self._free(command.accelerator_class))

    def commit(self, reservation_id: str) -> bool:
        """Keep the hold for the Launch that follows; False when there is no such hold (expired or unknown)."""
        hold = self._holds.get(reservation_id)
        if hold is None:
            log.warning("commit of reservation %s: no such hold (expired or never made)", reservation_id)
            return False
        if not hold.committed:
            hold.committed = True
            hold.expires = self._clock() + hold.timeout
        return True

    def abort(self, reservation_id: str, reason: str = "") -> bool:
        """Release a hold; False when there was none."""
        hold = self._holds.pop(reservation_id, None)
        if hold is None:
            return False
        self._pools[hold.accelerator_class].release(hold.devices)
        log.info("reservation %s released: %s", reservation_id, reason or "aborted by the gateway")
        return True

    def take(self, job_id: str, epoch: int) -> bool:
        """The Launch of (job, epoch) consumes its hold: the devices go back to the pool for it to allocate."""
        mine = [rid for rid, h in self._holds.items() if (h.job_id, h.epoch) == (job_id, epoch)]
        for rid in mine:
            self.abort(rid, f"consumed by the launch of epoch {epoch}")
        return bool(mine)

    def release_job(self, job_id: str, epoch: int) -> bool:
        """A Cancel of (job, epoch) ends its holds too."""
        return self.take(job_id, epoch)

    def expire(self) -> bool:
        """Release every hold whose time is up. True when any was released."""
        now = self._clock()
        expired = [rid for rid, h in self._holds.items() if h.expires <= now]
        for rid in expired:
            self.abort(rid, "timed out without a Commit or Abort")
        return bool(expired)

    def next_expiry(self) -> datetime | None:
        return min((h.expires for h in self._holds.values()), default=None)

    def _refusal(self, command: Reserve, draining: bool) -> str:
        if draining:
            return "site is draining"
        pool = self._pools.get(command.accelerator_class)
        if pool is None:
            offered = ", ".join(sorted(self._pools)) or "nothing"
            return f"no pool of {command.accelerator_class or '(no class)'}; it offers {offered}"
        if command.cards <= 0:
            return f"a hold needs at least 1 card, not {command.cards}"
        request = LaunchRequest(
            command.tenant, command.project, command.accelerator_class, command.cards, command.image
        )
        refusal = judge_launch(self._policy, pool.spec, request, self._clock(), pool.used_count)
        if refusal is not None:
            return refusal.message
        free = self._free(command.accelerator_class)
        if command.cards > free:
            return (
                f"{command.cards} {command.accelerator_class} cards asked; {free} of the {pool.spec.offered} "
                "offered are free (running jobs and other holds take the rest)"
            )
        return ""

    def _free(self, accelerator_class: str) -> int:
        """Offered cards free now: the offer in force minus what running jobs and holds take."""
        pool = self._pools.get(accelerator_class)
        if pool is None:
            return 0
        offered = effective_offer(self._policy, pool.spec, self._clock())
        return max(0, min(pool.free_count, offered - pool.used_count))
