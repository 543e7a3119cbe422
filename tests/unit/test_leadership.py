"""The leadership loops over a fake lease (the lease's SQL is tested on a real PostgreSQL in
tests/unit/store/test_leader_lease.py): a standby campaigns until it wins, a leader renews and steps down when a
renewal is refused or when none succeeded for a whole lease, and a database error is never taken for a win."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from gateway.app.leadership import Leadership, LeadershipLost, LeaderTerm
from gateway.errors import Unavailable
from gateway.store import LeaderRecord

LEASE = timedelta(seconds=0.3)


@dataclass
class FakeLease:
    epoch: int = 0
    holder: str = ""
    live: bool = False
    renewals: list[bool] = field(default_factory=list)  # answers to give, in order; then True
    fail_acquire: int = 0
    fail_renew: bool = False
    released: list[int] = field(default_factory=list)

    def current(self) -> LeaderRecord:
        return LeaderRecord(self.epoch, self.holder, "leader:1", self.live, 1.0)

    def acquire(self, holder: str, address: str, lease: timedelta) -> LeaderRecord:
        if self.fail_acquire:
            self.fail_acquire -= 1
            raise Unavailable("the database is away")
        if not self.live or self.holder == holder:
            self.epoch, self.holder, self.live = self.epoch + 1, holder, True
        return self.current()

    def renew(self, epoch: int, holder: str, lease: timedelta) -> bool:
        if self.fail_renew:
            raise Unavailable("the database is away")
        return self.renewals.pop(0) if self.renewals else True

    def release(self, epoch: int, holder: str) -> None:
        self.released.append(epoch)
        self.live = False

    def close(self) -> None:
        pass


def test_a_standby_campaigns_until_the_lease_is_free_and_learns_who_leads() -> None:
    async def scenario() -> None:
        lease = FakeLease(epoch=4, holder="other", live=True)
        leadership = Leadership(lease, "me:1", LEASE)
        stop = asyncio.Event()
        campaign = asyncio.create_task(leadership.campaign(stop))
        await asyncio.sleep(0.15)
        assert not campaign.done()
        assert leadership.leader_address() == "leader:1"  # what the standby's NOT_LEADER answers name
        lease.live = False  # the leader's lease lapsed
        term = await asyncio.wait_for(campaign, 2)
        assert term == LeaderTerm(5, leadership.holder)

    asyncio.run(scenario())


def test_a_database_error_is_never_taken_for_a_win_and_stop_ends_the_campaign() -> None:
    async def scenario() -> None:
        lease = FakeLease(fail_acquire=1000)
        leadership = Leadership(lease, "me:1", LEASE)
        stop = asyncio.Event()
        campaign = asyncio.create_task(leadership.campaign(stop))
        await asyncio.sleep(0.15)
        stop.set()
        assert await asyncio.wait_for(campaign, 2) is None

    asyncio.run(scenario())


def test_a_refused_renewal_deposes_the_leader() -> None:
    async def scenario() -> None:
        lease = FakeLease(renewals=[True, False])
        leadership = Leadership(lease, "me:1", LEASE)
        term = await leadership.try_acquire()
        assert term is not None
        with pytest.raises(LeadershipLost, match="taken over"):
            await asyncio.wait_for(leadership.keep(term), 3)

    asyncio.run(scenario())


def test_a_leader_cut_off_from_the_database_steps_down_after_one_lease() -> None:
    async def scenario() -> None:
        lease = FakeLease()
        leadership = Leadership(lease, "me:1", LEASE)
        term = await leadership.try_acquire()
        assert term is not None
        lease.fail_renew = True
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(LeadershipLost, match="no renewal"):
            await asyncio.wait_for(leadership.keep(term), 3)
        assert loop.time() - began >= LEASE.total_seconds()  # not before the lease could have lapsed

    asyncio.run(scenario())


def test_release_hands_the_lease_over() -> None:
    async def scenario() -> None:
        lease = FakeLease()
        leadership = Leadership(lease, "me:1", LEASE)
        term = await leadership.try_acquire()
        assert term is not None
        leadership.release(term)
        assert lease.released == [term.epoch] and not lease.live

    asyncio.run(scenario())
