"""The federation admins' side of the gateway core: the policy in force and the sites' drain state.

Owns: reloading the policy (in force at once on success, the old one kept on failure; what each queued job may
use worked out again), its status, and draining or resuming a site it knows (a resumed site's capacity makes every
queued job worth a look). Credentials, tokens and the audit log are `gateway.trust.service`'s. It never
speaks gRPC and reads time only from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from fedgate.common.reasons import ReasonCode
from gateway.errors import NotFound
from gateway.identity.principal import Principal
from gateway.jobs.model import Job
from gateway.policy import FederationPolicy
from gateway.policy.holder import PolicyHolder, PolicyStatus
from gateway.scheduler.liveusage import LiveUsage
from gateway.scheduler.queue import JobQueue
from gateway.sites.model import SiteView
from gateway.sites.registry import SiteRegistry
from gateway.trust import access


class AdminService:
    def __init__(
        self,
        policy: PolicyHolder,
        active: Mapping[str, Job],
        queue: JobQueue,
        usage: LiveUsage,
        registry: SiteRegistry,
        clock: Callable[[], datetime],
    ) -> None:
        self.policy = policy
        self.active = active  # the job book's read-only view
        self.queue = queue
        self.usage = usage
        self.registry = registry
        self.clock = clock

    def policy_status(self) -> PolicyStatus:
        return self.policy.status()

    def policy_changed_on_disk(self) -> bool:
        return self.policy.changed_on_disk()

    def reload_policy(self) -> tuple[FederationPolicy, bool]:
        """Load the policy file again; on success it is in force at once, on failure (ConfigError) the old one
        stays."""
        policy, changed = self.policy.reload(self.clock())
        if changed:
            self.queue.policy_changed(self.active)
        return policy, changed

    def drain_site(self, caller: Principal, site: str, draining: bool) -> SiteView:
        access.require_role(caller, "admin")
        known = set(self.registry.names()) | set(self.policy.policy.sites)
        if site not in known:  # a typo must not create a phantom site that is drained for ever
            raise NotFound(
                f"site {site!r} is not known to this gateway: no agent of that name connected since it started and"
                f" the policy names no such site; known sites: {', '.join(sorted(known)) or 'none yet'}",
                reason=ReasonCode.SITE_NOT_FOUND,
            )
        self.registry.set_draining(site, draining)
        if not draining:
            self.queue.capacity_changed()
        return self.registry.view(site, self.usage.leases().get(site, {}))
