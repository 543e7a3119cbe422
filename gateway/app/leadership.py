"""Leadership among the gateways that share one store: campaign while standing by, renew while leading, and
step down the moment the lease is not certainly ours.

Owns: `Leadership` (this process's holder name, the address it advertises, the lease's timing) and the two
loops over a `LeaderLease` (`gateway.store`): `campaign`, which a standby runs until it wins (it also remembers
who leads, for the NOT_LEADER answers of the standby), and `keep`, which the leader runs under its supervisor
and which raises `LeadershipLost` when a renewal is refused (taken over) or none succeeded for a whole lease
(cut off from the database: a standby may already have taken over). The lease's own calls block, so they run
in a thread; a call that hangs counts as a failed renewal. Timing, with the default 6 s lease: renewals every
2 s; a standby looks every second; a leader killed with -9 is replaced within lease + one look + the new
leader's start (about 8 s); one stopped with SIGTERM releases the lease and is replaced within a look.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from gateway.errors import GatewayError
from gateway.store import LeaderLease, LeaderRecord

log = logging.getLogger("fedgate.gateway")
T = TypeVar("T")


class LeadershipLost(Exception):
    """The lease is no longer ours (or may not be): the gateway stops leading at once."""


@dataclass(frozen=True)
class LeaderTerm:
    """One period of leadership: the epoch every write carries as its fence."""

    epoch: int
    holder: str


class Leadership:
    def __init__(
        self,
        lease: LeaderLease,
        address: str,
        period: timedelta,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lease = lease
        self.address = address
        self.period = period
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"  # new at every start
        self._monotonic = monotonic
        self.leader: LeaderRecord | None = None
        """The lease as last seen while standing by: who leads, and where clients reach it."""

    @property
    def renew_every(self) -> float:
        return self.period.total_seconds() / 3

    @property
    def look_every(self) -> float:
        return max(0.2, self.period.total_seconds() / 6)

    async def _call(self, call: Callable[[], T]) -> T:
        async with asyncio.timeout(self.renew_every):
            return await asyncio.to_thread(call)

    async def try_acquire(self) -> LeaderTerm | None:
        """One look at the lease: take it if it is free. Failures of the database count as "not won"."""
        try:
            record = await self._call(lambda: self._lease.acquire(self.holder, self.address, self.period))
        except (GatewayError, TimeoutError) as exc:
            log.warning("cannot look at the leader lease: %s", getattr(exc, "message", exc) or type(exc).__name__)
            return None
        if record.holder == self.holder and record.live:
            self.leader = record
            return LeaderTerm(record.epoch, self.holder)
        if self.leader is None or self.leader.epoch != record.epoch:
            log.info("standing by: the leader is %s at %s (epoch %d)", record.holder, record.address, record.epoch)
        self.leader = record
        return None

    async def campaign(self, stop: asyncio.Event) -> LeaderTerm | None:
        """Look at the lease every `look_every` s until it is ours (returns the term) or `stop` is set (None)."""
        while not stop.is_set():
            term = await self.try_acquire()
            if term is not None:
                log.info("leading, epoch %d (lease %gs)", term.epoch, self.period.total_seconds())
                return term
            try:
                async with asyncio.timeout(self.look_every):
                    await stop.wait()
            except TimeoutError:
                pass
        return None

    async def keep(self, term: LeaderTerm) -> None:
        """Renew the lease every `renew_every` s; raise LeadershipLost when a renewal is refused, or when no
        renewal has succeeded for a whole lease (counted from when the last good one was sent)."""
        lease_s = self.period.total_seconds()
        held_since = self._monotonic()  # the acquire that made this term was sent just before
        while True:
            await asyncio.sleep(self.renew_every)
            sent = self._monotonic()
            if sent - held_since >= lease_s:
                raise LeadershipLost(f"no renewal of epoch {term.epoch} succeeded for {lease_s:g}s")
            try:
                renewed = await self._call(lambda: self._lease.renew(term.epoch, term.holder, self.period))
            except (GatewayError, TimeoutError) as exc:
                log.warning("cannot renew the leader lease: %s", getattr(exc, "message", exc) or type(exc).__name__)
                continue
            if not renewed:
                raise LeadershipLost(f"epoch {term.epoch} was taken over by another gateway")
            held_since = sent

    def release(self, term: LeaderTerm) -> None:
        """Hand the lease over at once (a graceful stop): a standby takes over at its next look."""
        self._lease.release(term.epoch, term.holder)

    def leader_address(self) -> str:
        return self.leader.address if self.leader is not None and self.leader.live else ""

    def close(self) -> None:
        self._lease.close()
