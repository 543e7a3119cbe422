"""Whether a Launch may run at this site now, and on which pool: the site's side of admission.

Owns: the order and the errors of the checks a launch meets before any device is allocated: a draining site
refuses (SiteDraining), a class the site has no pool of is refused naming what it offers
(UnknownAcceleratorClass), and the centre's terms for tenant, project, image, cards and windows are judged
(`agents.policy.terms.judge_launch`; a refusal is SiteTermsRefused naming the term). Every refusal is a
LaunchRefused: the site's own reason, so the runtime hands the lease back. It does not allocate devices, start
anything or report (the runtime does), and it does not judge gang holds (`agents.core.gangholds`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from agents.core.commands import Launch
from agents.core.devices import DevicePool
from agents.errors import SiteDraining, SiteTermsRefused, UnknownAcceleratorClass
from agents.policy.terms import LaunchRequest, SitePolicy, judge_launch


def admit(
    site: str,
    command: Launch,
    pools: Mapping[str, DevicePool],
    policy: SitePolicy,
    clock: Callable[[], datetime],
    *,
    draining: bool,
) -> DevicePool:
    """The pool `command` may take its cards from, or LaunchRefused saying why not. `clock` is read only when
    the terms are judged."""
    if draining:
        raise SiteDraining("site is draining")
    pool = pools.get(command.accelerator_class)
    if pool is None:
        wanted = command.accelerator_class or "(no class)"
        offered = ", ".join(sorted(pools)) or "nothing"
        raise UnknownAcceleratorClass(f"site {site} has no pool of {wanted}; it offers {offered}")
    request = LaunchRequest(command.tenant, command.project, command.accelerator_class, command.cards, command.image)
    refusal = judge_launch(policy, pool.spec, request, clock(), pool.used_count)
    if refusal is not None:
        raise SiteTermsRefused(refusal.message, term=refusal.term)
    return pool
