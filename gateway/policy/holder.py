"""The policy in force, and how it changes: an atomic swap of a fully loaded policy, never a partial one.

Owns: `PolicyHolder` (the current policy and catalogue, the last reload error, reload counters) and watching
the file for changes. An invalid file never replaces the last good policy: the gateway keeps deciding under
the old one and reports the error (admin status, audit log, metric). Decisions read `holder.policy` once per
decision, so a swap in between never mixes two policies in one decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.errors import ConfigError, GatewayError
from gateway.policy.catalogue import Catalogue
from gateway.policy.document import FederationPolicy, load_policy

log = logging.getLogger("fedgate.gateway.policy")


@dataclass(frozen=True)
class PolicyStatus:
    policy: FederationPolicy
    load_time: datetime
    last_error: str
    reloads: int = 0
    failed_reloads: int = 0


class PolicyHolder:
    """The policy in force. `reload` swaps atomically; an invalid file never replaces the last good one."""

    def __init__(self, path: Path, catalogue: Catalogue, now: datetime) -> None:
        self.path = path
        self.catalogue = catalogue
        self.policy = load_policy(path)
        self.load_time = now
        self.last_error = ""
        self.reloads = 0
        self.failed_reloads = 0
        self._stamp = _stamp(path)

    def reload(self, now: datetime) -> tuple[FederationPolicy, bool]:
        self._stamp = _stamp(self.path)
        try:
            policy = load_policy(self.path)
        except (GatewayError, OSError) as exc:
            self.failed_reloads += 1
            self.last_error = str(exc)
            raise ConfigError(f"policy reload refused, the last good policy stays in force: {exc}") from exc
        changed = policy.version != self.policy.version
        self.policy, self.load_time, self.last_error = policy, now, ""
        self.reloads += 1
        return policy, changed

    def status(self) -> PolicyStatus:
        return PolicyStatus(self.policy, self.load_time, self.last_error, self.reloads, self.failed_reloads)

    def changed_on_disk(self) -> bool:
        return _stamp(self.path) != self._stamp

    async def watch(
        self,
        clock: Callable[[], datetime],
        on_reload: Callable[[FederationPolicy | None, str], None],
        period: float = 1.0,
    ) -> None:
        """Reload whenever the file changes on disk (checked every `period` s); `on_reload(policy, error)`
        reports each attempt (the new policy, or None and the error)."""
        while True:
            await asyncio.sleep(period)
            if not self.changed_on_disk():
                continue
            try:
                policy, changed = self.reload(clock())
            except ConfigError as exc:
                log.error("%s", exc.message)
                on_reload(None, exc.message)
                continue
            if changed:
                log.info("policy reloaded from %s: version %s", self.path, policy.version[:12])
                on_reload(policy, "")


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0, 0, 0)
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
