"""A real gateway core over an in-memory SQLite store with a clock the test turns, and sites connected straight
to its registry (no gRPC): what the reservation tests drive. Commands a site would receive are read from its
outbox; its replies are made by calling the book as the site service would."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.app.compose import Core, compose
from gateway.app.config import REPO_POLICIES
from gateway.identity.principal import Principal
from gateway.jobs.model import Capability, Job, JobSpec, Resources, StackRun
from gateway.policy import load_catalogue
from gateway.policy.holder import PolicyHolder
from gateway.reservations.model import ReservationRequest
from gateway.sites.model import Pool, SiteTerms
from gateway.sites.registry import Command, Outbox
from gateway.store.sqlite import SqliteStore

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
FEDERATION = "demo"
ALICE = Principal.user(FEDERATION, "deepsea-ai", "alice")  # deepsea-ai has no member list: a member
BOB = Principal.user(FEDERATION, "panda-lm", "bob")  # member of panda-lm
CAROL = Principal.user(FEDERATION, "panda-lm", "carol")  # viewer of panda-lm/eval
ADMIN = Principal.admin(FEDERATION, "root")

POLICY = """\
apiVersion: fedgate.io/v1
kind: Federation
metadata: {name: demo}
tenants:
  - name: deepsea-ai
    projects:
      - name: llama-sft
      - name: interns
        quota: {concurrent_cards: {"*": 8}}
  - name: panda-lm
    projects: [{name: eval}, {name: inference}]
    members:
      - {user: bob, role: member}
      - {user: carol, role: viewer, projects: [eval]}
priority_classes:
  - {name: normal, priority: 50, default: true}
sites:
  - {name: centre-a, region: cn-east}
  - {name: centre-b, region: cn-north}
rules:
  - name: no-h100-for-interns
    effect: deny
    match: {projects: [interns], classes: [nvidia-h100]}
    message: interns run on smaller classes; ask for nvidia-h20
"""


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def federation(tmp_path: Path, clock: FakeClock, store: SqliteStore | None = None) -> Core:
    policy_path = tmp_path / "federation.yaml"
    if not policy_path.exists():
        policy_path.write_text(POLICY)
    catalogue = load_catalogue(REPO_POLICIES / "accelerators.yaml")
    holder = PolicyHolder(policy_path, catalogue, clock())
    return compose(store or SqliteStore(":memory:"), holder, clock)


def pool(cls: str, offered: int, free: int | None = None) -> Pool:
    return Pool(cls, offered, offered, offered if free is None else free, 8)


def connect(fed: Core, site: str, *pools: Pool, terms: SiteTerms | None = None) -> Outbox:
    _, outbox = fed.registry.connect(site, "test", fed.clock())
    fed.registry.report(site, pools, True, fed.clock(), terms)
    return outbox


def sent(outbox: Outbox) -> list[Command]:
    """Every command queued for the site since the last look."""
    commands = []
    while not outbox.empty():
        item = outbox.get_nowait()
        if isinstance(item, tuple):
            commands.append(item[1])
    return commands


def request(
    cards: int = 8,
    cls: str = "ascend-910b",
    *,
    project: str = "llama-sft",
    tenant: str = "",
    start: timedelta = timedelta(hours=1),
    length: timedelta = timedelta(hours=2),
    sites: tuple[str, ...] = (),
    max_sites: int = 1,
    capability: Capability | None = None,
) -> ReservationRequest:
    return ReservationRequest(
        tenant=tenant,
        project=project,
        resources=Resources("" if capability else cls, capability, cards),
        start=T0 + start,
        end=T0 + start + length,
        sites=sites,
        max_sites=max_sites,
    )


def job(fed: Core, caller: Principal, project: str, cards: int, reservation: str = "", cls: str = "ascend-910b") -> Job:
    spec = JobSpec(
        tenant=caller.tenant,
        project=project,
        resources=Resources(cls, None, cards),
        runs=(StackRun(command=("python3", "train.py")),),
        reservation=reservation,
    )
    return asyncio.run(fed.jobs.create_job(caller, spec))
