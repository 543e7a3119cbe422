"""The world of an attempt: how many nodes it has, which node ranks each site's part holds, and where rank 0's
master is, as the Launch of each part states it.

Owns: `world`, a pure function of the job's lease (its placements, in their stored order) and the rendezvous
points the sites advertised, so every part of a gang and every Launch resent after a restart states the same
world with nothing stored beside the job. A one-site job's world is its part alone and its site names the
master (its first node, once its engine chose the nodes). A cross-site gang's master is the rendezvous point of
the first part (in placement order) whose site advertised one, and that part holds ranks 0 upwards; the others
follow in placement order. When no site of a gang advertised a point, each part is told its ranks with no
common master (its own first node): such a gang can run, but its parts cannot meet. It does not choose the
nodes (`gateway.placement.nodes`) nor send anything (`gateway.scheduler.launcher`).
"""

from __future__ import annotations

from collections.abc import Callable

from fedgate.common.rendezvous import Rendezvous, RendezvousPoint
from gateway.jobs.model import Job, Placement


def world(job: Job, part: Placement, point_of: Callable[[str], RendezvousPoint | None]) -> Rendezvous:
    """The world `part` of `job`'s current lease belongs to. `point_of(site)` is the site's rendezvous point."""
    parts = job.placements
    nnodes = sum(max(p.nodes, 1) for p in parts)
    cards = sum(p.cards for p in parts)
    if len(parts) <= 1:
        return Rendezvous(nnodes=nnodes, first_rank=0, world_size=cards)
    master = next(((i, point) for i, p in enumerate(parts) if (point := point_of(p.site)) is not None), None)
    order = list(parts)
    if master is not None:
        order.insert(0, order.pop(master[0]))
    first = 0
    for p in order:
        if p.site == part.site and p.accelerator_class == part.accelerator_class:
            break
        first += max(p.nodes, 1)
    if master is None:
        return Rendezvous(nnodes=nnodes, first_rank=first, world_size=cards)
    point = master[1]
    return Rendezvous(
        nnodes=nnodes,
        first_rank=first,
        world_size=cards,
        master_addr=point.host,
        master_port=point.port_for(job.job_id, job.epoch),
    )
