"""The federation policy in force: tenants and projects, plus the accelerator catalogue.

Owns: turning `federation.yaml` and `accelerators.yaml` into frozen dataclasses (strictly: unknown keys and
wrong types are errors naming file and line), the policy version (sha256 of the bytes), and `PolicyHolder`,
which swaps a new policy in atomically and keeps the last good one when a reload fails. The full policy
language (quotas, rules, residency, access control) grows from here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gateway.catalogue import Accelerator, Catalogue
from gateway.errors import ConfigError, GatewayError
from gateway.yamlfields import FieldReader
from gateway.yamlload import KeyPath, load_yaml

API_VERSION = "fedgate.io/v1"


@dataclass(frozen=True)
class Member:
    """A user's role in a tenant: member (submit, cancel, read) or viewer (read only), optionally only in
    some of the tenant's projects (empty: all of them)."""

    user: str
    role: str
    projects: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Tenant:
    name: str
    display_name: str
    projects: frozenset[str]
    # Empty: every user holding a certificate of this tenant is a member. Otherwise only these users.
    members: Mapping[str, Member] = field(default_factory=dict)


@dataclass(frozen=True)
class FederationPolicy:
    federation: str
    tenants: Mapping[str, Tenant]
    version: str
    path: str = ""

    @property
    def project_count(self) -> int:
        return sum(len(t.projects) for t in self.tenants.values())


ROLES = ("member", "viewer")
NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NAME_HINT = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"


def _header(fields: FieldReader, kind: str, allowed: set[str]) -> None:
    fields.mapping((), allowed={"apiVersion", "kind", *allowed}, required={"apiVersion", "kind"})
    if fields.string(("apiVersion",)) != API_VERSION:
        raise fields.error(("apiVersion",), f"must be {API_VERSION}")
    if fields.string(("kind",)) != kind:
        raise fields.error(("kind",), f"must be {kind} in this file")


def load_catalogue(path: Path) -> Catalogue:
    fields = FieldReader(load_yaml(path))
    _header(fields, "AcceleratorCatalogue", {"accelerators"})
    keys = {
        "id",
        "vendor",
        "family",
        "memory_gib",
        "bf16_tflops",
        "interconnect",
        "stack",
        "kubernetes",
        "slurm_gres",
        "source",
    }
    accelerators: list[Accelerator] = []
    seen: set[str] = set()
    for i in range(len(fields.sequence(("accelerators",)))):
        at: KeyPath = ("accelerators", i)
        fields.mapping(at, allowed=keys, required={"id", "vendor", "family", "memory_gib", "bf16_tflops", "stack"})
        accelerator = Accelerator(
            id=fields.string((*at, "id"), pattern=NAME, hint=NAME_HINT),
            vendor=fields.string((*at, "vendor")),
            family=fields.string((*at, "family")),
            memory_gib=fields.number((*at, "memory_gib"), minimum=0),
            bf16_tflops=fields.number((*at, "bf16_tflops"), minimum=0),
            interconnect=fields.string((*at, "interconnect"), default=""),
            stack=fields.string((*at, "stack"), pattern=NAME, hint=NAME_HINT),
            source=fields.string((*at, "source"), default=""),
        )
        if accelerator.id in seen:
            raise fields.error((*at, "id"), f"accelerator {accelerator.id!r} is listed twice", "keep one entry")
        seen.add(accelerator.id)
        accelerators.append(accelerator)
    return Catalogue(tuple(accelerators))


def load_policy(path: Path) -> FederationPolicy:
    try:
        raw = path.read_bytes()  # read once: the version is the hash of exactly what was parsed
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the policy: {exc.strerror or exc}. Check the path") from exc
    fields = FieldReader(load_yaml(raw, str(path)))
    _header(fields, "Federation", {"metadata", "tenants"})
    fields.mapping(("metadata",), allowed={"name"}, required={"name"})
    tenants: dict[str, Tenant] = {}
    for i in range(len(fields.sequence(("tenants",), optional=True))):
        at: KeyPath = ("tenants", i)
        fields.mapping(at, allowed={"name", "display_name", "projects", "members"}, required={"name"})
        name = fields.string((*at, "name"), pattern=NAME, hint=NAME_HINT)
        if name in tenants:
            raise fields.error((*at, "name"), f"tenant {name!r} is defined twice", "merge the two entries")
        projects: set[str] = set()
        for j in range(len(fields.sequence((*at, "projects"), optional=True))):
            fields.mapping((*at, "projects", j), allowed={"name"}, required={"name"})
            project = fields.string((*at, "projects", j, "name"), pattern=NAME, hint=NAME_HINT)
            if project in projects:
                raise fields.error((*at, "projects", j), f"project {project!r} is listed twice", "keep one")
            projects.add(project)
        members = _members(fields, (*at, "members"), projects)
        tenants[name] = Tenant(name, fields.string((*at, "display_name"), default=name), frozenset(projects), members)
    federation = fields.string(("metadata", "name"), pattern=NAME, hint=NAME_HINT)
    return FederationPolicy(federation, tenants, hashlib.sha256(raw).hexdigest(), str(path))


def _members(fields: FieldReader, at: KeyPath, projects: set[str]) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for k in range(len(fields.sequence(at, optional=True))):
        where: KeyPath = (*at, k)
        fields.mapping(where, allowed={"user", "role", "projects"}, required={"user", "role"})
        user = fields.string((*where, "user"), pattern=NAME, hint=NAME_HINT)
        role = fields.string((*where, "role"))
        if role not in ROLES:
            raise fields.error((*where, "role"), f"role {role!r} is not known", f"use one of: {', '.join(ROLES)}")
        scope = fields.strings((*where, "projects"), pattern=NAME, hint=NAME_HINT)
        unknown = sorted(set(scope) - projects)
        if unknown:
            raise fields.error((*where, "projects"), f"project {unknown[0]!r} is not a project of this tenant")
        if user in members:
            raise fields.error((*where, "user"), f"user {user!r} is listed twice", "merge the two entries")
        members[user] = Member(user, role, frozenset(scope))
    return members


@dataclass(frozen=True)
class PolicyStatus:
    policy: FederationPolicy
    load_time: datetime
    last_error: str


class PolicyHolder:
    """The policy in force. `reload` swaps atomically; an invalid file never replaces the last good one."""

    def __init__(self, path: Path, catalogue: Catalogue, now: datetime) -> None:
        self.path = path
        self.catalogue = catalogue
        self.policy = load_policy(path)
        self.load_time = now
        self.last_error = ""

    def reload(self, now: datetime) -> tuple[FederationPolicy, bool]:
        try:
            policy = load_policy(self.path)
        except (GatewayError, OSError) as exc:
            self.last_error = str(exc)
            raise ConfigError(f"policy reload refused, the last good policy stays in force: {exc}") from exc
        changed = policy.version != self.policy.version
        self.policy, self.load_time, self.last_error = policy, now, ""
        return policy, changed

    def status(self) -> PolicyStatus:
        return PolicyStatus(self.policy, self.load_time, self.last_error)
