"""What the site reports about its pools at an instant: capacity, offers, and when they may change next.

Owns: turning the device pools and the centre's policy into `PoolCapacity` reports (offered as the policy's
windows set it at that instant; free = offered minus used, 0 while draining: a shrinking offer never stops a
running job, free just goes to 0; the free whole nodes and the most free cards on a partly used node from the
device indices in use, never more than free), the per-class offers the runtime compares to notice a window
opening or closing, and how long the sender may sleep before an offer or a hold can change. It keeps no state
(the runtime holds the pools, the drain flag and the last offers) and judges no launch (`agents.policy.terms`) or hold
(`agents.core.gangholds`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from agents.core.devices import DevicePool
from agents.core.model import PoolCapacity
from agents.policy.terms import SitePolicy, effective_offer, next_offer_change
from fedgate.common.offers import capped_room

MIN_OFFER_WAIT_S = 0.05
"""Shortest wait `seconds_until_change` suggests, so a clock that stands still (tests) cannot make a busy loop."""


def pool_capacities(
    policy: SitePolicy, pools: Iterable[DevicePool], now: datetime, *, draining: bool
) -> list[PoolCapacity]:
    """Each pool as it is at `now`: the offer the centre's policy sets, and what of it is free."""
    reports = []
    for pool in pools:
        offered = effective_offer(policy, pool.spec, now)
        free = 0 if draining else max(0, offered - pool.used_count)  # a draining site takes nothing new
        whole, partial = (0, 0) if draining else pool.node_room()
        # An offer the policy's window shrank below the declared one caps what may be placed.
        whole, partial = capped_room(whole, partial, free, pool.spec.cards_per_node)
        reports.append(
            PoolCapacity(
                accelerator_class=pool.spec.accelerator_class,
                total=pool.spec.cards,
                offered=offered,
                free=free,
                cards_per_node=pool.spec.cards_per_node,
                interconnect=pool.spec.interconnect,
                labels=dict(pool.spec.labels),
                free_nodes=whole if pool.spec.cards_per_node else None,
                largest_partial_free=partial,
            )
        )
    return reports


def current_offers(policy: SitePolicy, pools: Mapping[str, DevicePool], now: datetime) -> dict[str, int]:
    """Each class's offer at `now`, to compare with the last one reported."""
    return {cls: effective_offer(policy, pool.spec, now) for cls, pool in pools.items()}


def seconds_until_change(policy: SitePolicy, now: datetime, next_hold_expiry: datetime | None) -> float | None:
    """Seconds from `now` until an offer window or a hold may change things (at least MIN_OFFER_WAIT_S);
    None when nothing will."""
    changes = [t for t in (next_offer_change(policy, now), next_hold_expiry) if t is not None]
    return None if not changes else max(MIN_OFFER_WAIT_S, (min(changes) - now).total_seconds())
