"""The centre's terms over the wire, against the fake gateway: every capacity report carries the terms and
the offer of the window in force, a window boundary is reported when it passes, and a launch the terms
refuse comes back as FAILED with the lease returned."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from agents.core.commands import Launch
from agents.core.config import AgentConfig
from fedgate.common.terms import SiteTerms
from fedgate.common.wire import terms_from_proto
from fedgate.v1 import job_pb2, site_pb2

from .conftest import GatewayUnderTest, running_agent
from .gateway_wire import launch_message

MakeConfig = Callable[..., AgentConfig]
SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = """\
policy:
  tenants: [deepsea-ai]
  max_job_cards: 4
  image_registries: [registry.example.org]
  timezone: Asia/Shanghai
  offers:
    ascend-910b:
      - {hours: "08:00-20:00", share: 0.25}
      - {share: 1}
"""
DAY = datetime(2026, 1, 7, 10, 0, tzinfo=SHANGHAI)
NIGHT = datetime(2026, 1, 7, 21, 0, tzinfo=SHANGHAI)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def running_from(start: datetime) -> Callable[[], datetime]:
    """A clock that runs at real speed from `start`."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def ascend(report: site_pb2.ConnectRequest) -> tuple[int, int, int]:
    pool = next(p for p in report.capacity.pools if p.accelerator_class == "ascend-910b")
    return pool.total, pool.offered, pool.free


async def test_capacity_reports_carry_the_terms_and_the_offer_of_the_window_in_force(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    clock = Clock(DAY)
    async with running_agent(make_config(gateway=gateway.target, extra=POLICY), clock=clock):
        stream = await gateway.fake.next_stream()
        first = await stream.next("capacity")
        assert first.capacity.HasField("terms")
        assert terms_from_proto(first.capacity.terms) == SiteTerms(("deepsea-ai",), (), 4, ("registry.example.org",))
        assert ascend(first) == (4, 1, 1)  # 25 % of 4 by day
        h100 = next(p for p in first.capacity.pools if p.accelerator_class == "nvidia-h100")
        assert (h100.offered, h100.free) == (4, 4)  # no schedule: its `offered` at all times
        clock.now = NIGHT
        while ascend(report := await stream.next("capacity")) != (4, 4, 4):
            pass
        assert report.capacity.terms == first.capacity.terms


async def test_a_window_boundary_is_reported_when_it_passes_not_at_the_next_periodic_report(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    gateway.fake.report_interval_s = 60.0
    clock = running_from(datetime(2026, 1, 7, 19, 59, 59, tzinfo=SHANGHAI))  # one second before 20:00
    async with running_agent(make_config(gateway=gateway.target, extra=POLICY), clock=clock):
        stream = await gateway.fake.next_stream()
        assert ascend(await stream.next("capacity")) == (4, 1, 1)
        started = time.monotonic()
        assert ascend(await stream.next("capacity", wait_s=5)) == (4, 4, 4)
        assert time.monotonic() - started < 5


async def test_a_launch_the_terms_refuse_is_answered_failed_with_the_lease_returned(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    async with running_agent(make_config(gateway=gateway.target, extra=POLICY), clock=Clock(NIGHT)):
        stream = await gateway.fake.next_stream()
        command = Launch("j1", 1, 1, "ascend-910b", 2, ("true",), tenant="panda-lm", project="eval")
        stream.send(launch=launch_message(command))
        update = await stream.update()
        assert (update.job_id, update.state, update.lease_returned) == ("j1", job_pb2.JOB_STATE_FAILED, True)
        assert update.message == "site policy: tenant panda-lm is not accepted here"
