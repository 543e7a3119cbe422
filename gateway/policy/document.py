"""The federation policy in force, built from a `kind: Federation` document, and the accelerator catalogue.

Owns: reading the files strictly (through the model in `gateway.policy.model`: unknown keys, wrong types and
bad references are errors naming file, line and fix), the cross-checks a schema cannot express (a member's
project exists, a joint project's tenants exist, one default priority class), the policy version (sha256 of
the bytes), and the indexes evaluation needs. Evaluation itself is `gateway.policy.engine`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fedgate.common.fields import FieldReader
from fedgate.common.shipped import shipped
from fedgate.common.yaml import KeyPath, YamlDocument, load_yaml
from gateway.errors import ConfigError
from gateway.policy.catalogue import Accelerator, Catalogue
from gateway.policy.model import (
    FederationDocument,
    JointProject,
    NetworkSpec,
    PriorityClass,
    Residency,
    Rule,
    SiteSpec,
    TenantSpec,
)
from gateway.policy.network import Dataset, Link, Network
from gateway.policy.schema import read

REPO_POLICIES = shipped("policies")
"""The policies shipped with fedgate: the demo federation, the accelerator catalogue, examples (the defaults); the
top-level policies/ folder of a checkout, or the copy an installed wheel carries as package data."""

API_VERSION = "fedgate.io/v1"
NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NAME_HINT = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
ROLES = ("member", "viewer")
EMPTY: Mapping[str, object] = types.MappingProxyType({})


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
    spec: TenantSpec | None = None


@dataclass(frozen=True)
class FederationPolicy:
    federation: str
    tenants: Mapping[str, Tenant]
    version: str
    path: str = ""
    joint: Mapping[str, JointProject] = field(default_factory=dict)
    priorities: Mapping[str, PriorityClass] = field(default_factory=dict)
    sites: Mapping[str, SiteSpec] = field(default_factory=dict)
    residency: Mapping[str, Residency] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    document: FederationDocument | None = None
    network: Network = field(default_factory=Network)

    @property
    def project_count(self) -> int:
        return sum(len(t.projects) for t in self.tenants.values()) + len(self.joint)

    @functools.cached_property  # asked for every queued job and every launch: worked out once per policy
    def default_priority(self) -> PriorityClass | None:
        return next((p for p in self.priorities.values() if p.default), None)

    def projects_of(self, tenant: str) -> frozenset[str]:
        """The tenant's own projects and the joint projects it takes part in."""
        own = self.tenants[tenant].projects if tenant in self.tenants else frozenset()
        joint = {p.name for p in self.joint.values() if any(m.tenant == tenant for m in p.members)}
        return own | joint


def _header(fields: FieldReader, kind: str, allowed: set[str]) -> None:
    fields.mapping((), allowed={"apiVersion", "kind", *allowed}, required={"apiVersion", "kind"})
    if fields.string(("apiVersion",)) != API_VERSION:
        raise fields.error(("apiVersion",), f"must be {API_VERSION}")
    if fields.string(("kind",)) != kind:
        raise fields.error(("kind",), f"must be {kind} in this file")


def load_catalogue(path: Path) -> Catalogue:
    fields = FieldReader(load_yaml(path, error=ConfigError))
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
    return parse_policy(raw, str(path))


def parse_policy(raw: bytes, source: str) -> FederationPolicy:
    """A policy from the bytes of a `kind: Federation` document; ConfigError with file:line otherwise."""
    doc = load_yaml(raw, source, error=ConfigError)
    fields = FieldReader(doc)
    if isinstance(doc.data, dict) and doc.data.get("kind") not in (None, "Federation"):
        raise doc.error(("kind",), f"this is a {doc.data.get('kind')!r} document", "a policy file has kind: Federation")
    model = read(FederationDocument, fields, ())
    _check(model, doc)
    tenants = {
        t.name: Tenant(
            t.name,
            t.display_name or t.name,
            frozenset(p.name for p in t.projects),
            {m.user: Member(m.user, m.role, frozenset(m.projects)) for m in t.members},
            t,
        )
        for t in model.tenants
    }
    return FederationPolicy(
        federation=model.metadata.name,
        tenants=tenants,
        version=hashlib.sha256(raw).hexdigest(),
        path=source,
        joint={p.name: p for p in model.projects},
        priorities={p.name: p for p in model.priority_classes},
        sites={s.name: s for s in model.sites},
        residency={r.classification: r for r in model.residency},
        rules=model.rules,
        document=model,
        network=_network(model.network),
    )


def _network(spec: NetworkSpec | None) -> Network:
    """The policy's `network:` section as placement asks it (checked by `_check_network` already)."""
    if spec is None:
        return Network()
    links = {}
    for link in spec.links:
        a, b = sorted(link.between)
        links[(a, b)] = Link(link.bandwidth_gbps, link.latency_ms)
    default = Link(spec.default.bandwidth_gbps, spec.default.latency_ms) if spec.default is not None else None
    datasets = {name: Dataset(name, d.site, d.size_gb) for name, d in spec.datasets.items()}
    return Network(types.MappingProxyType(links), default, types.MappingProxyType(datasets))


def _unique(doc: YamlDocument, section: str, names: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise doc.error((section, i, "name"), f"{what} {name!r} is defined twice", "merge the two entries")
        seen.add(name)


def _check(model: FederationDocument, doc: YamlDocument) -> None:
    """What the schema cannot say: references resolve, names are unique, one default priority class."""
    _unique(doc, "tenants", [t.name for t in model.tenants], "tenant")
    _unique(doc, "projects", [p.name for p in model.projects], "joint project")
    _unique(doc, "priority_classes", [p.name for p in model.priority_classes], "priority class")
    _unique(doc, "sites", [s.name for s in model.sites], "site")
    _unique(doc, "rules", [r.name for r in model.rules], "rule")
    classifications = [r.classification for r in model.residency]
    for i, name in enumerate(classifications):
        if classifications.index(name) != i:
            raise doc.error(
                ("residency", i, "classification"),
                f"classification {name!r} has two residency entries",
                "merge them into one entry",
            )
    tenants = {t.name for t in model.tenants}
    joint = {p.name for p in model.projects}
    for i, tenant in enumerate(model.tenants):
        own = [p.name for p in tenant.projects]
        for j, name in enumerate(own):
            if own.index(name) != j:
                raise doc.error(("tenants", i, "projects", j), f"project {name!r} is listed twice", "keep one")
            if name in joint:
                raise doc.error(("tenants", i, "projects", j), f"{name!r} is also a joint project", "rename one")
        users: set[str] = set()
        for k, member in enumerate(tenant.members):
            if member.user in users:
                raise doc.error(("tenants", i, "members", k), f"user {member.user!r} is listed twice", "merge them")
            users.add(member.user)
            for project in member.projects:
                if project not in own:
                    raise doc.error(
                        ("tenants", i, "members", k, "projects"),
                        f"project {project!r} is not a project of tenant {tenant.name!r}",
                    )
    for i, joint_project in enumerate(model.projects):
        for k, joint_member in enumerate(joint_project.members):
            if joint_member.tenant not in tenants:
                raise doc.error(
                    ("projects", i, "members", k, "tenant"),
                    f"tenant {joint_member.tenant!r} is not defined",
                    f"known tenants: {', '.join(sorted(tenants)) or 'none'}",
                )
    if model.network is not None:
        _check_network(model.network, {s.name for s in model.sites}, doc)
    defaults = [i for i, p in enumerate(model.priority_classes) if p.default]
    if len(defaults) > 1:
        raise doc.error(("priority_classes", defaults[1], "default"), "only one priority class can be the default")
    for i, rule in enumerate(model.rules):
        if rule.effect == "require" and rule.require is None:
            raise doc.error(("rules", i), "a require rule needs a `require:` section", "say what must hold")
        if rule.effect != "require" and rule.require is not None:
            raise doc.error(("rules", i, "require"), f"only require rules take `require:`, this one is {rule.effect}")
        for key in ("tenants",):
            for name in getattr(rule.match, key):
                if name not in tenants:
                    raise doc.error(("rules", i, "match", key), f"tenant {name!r} is not defined")


def _positive(doc: YamlDocument, path: tuple[str | int, ...], value: float) -> None:
    if value <= 0:
        raise doc.error(path, f"must be above 0, got {value:g}", "state the measured figure, a positive number")


def _check_network(network: NetworkSpec, sites: set[str], doc: YamlDocument) -> None:
    """Links join two different known sites, each pair once, with positive figures; datasets live on known sites."""
    known = f"known sites: {', '.join(sorted(sites)) or 'none (add a sites: section)'}"
    seen: dict[tuple[str, str], int] = {}
    for i, link in enumerate(network.links):
        at = ("network", "links", i)
        if len(link.between) != 2 or link.between[0] == link.between[1]:
            raise doc.error((*at, "between"), "a link joins two different sites", "write between: [site-a, site-b]")
        for j, site in enumerate(link.between):
            if site not in sites:
                raise doc.error((*at, "between", j), f"site {site!r} is not in the policy's sites", known)
        _positive(doc, (*at, "bandwidth_gbps"), link.bandwidth_gbps)
        _positive(doc, (*at, "latency_ms"), link.latency_ms)
        a, b = sorted(link.between)
        if (a, b) in seen:
            first = seen[(a, b)]
            where = f"network.links[{first}], line {doc.line(('network', 'links', first))}"
            raise doc.error(
                (*at, "between"),
                f"the link between {a} and {b} is stated twice (also at {where}; links are the same both ways)",
                "keep one of the two entries",
            )
        seen[(a, b)] = i
    if network.default is not None:
        _positive(doc, ("network", "default", "bandwidth_gbps"), network.default.bandwidth_gbps)
        _positive(doc, ("network", "default", "latency_ms"), network.default.latency_ms)
    for name, dataset in network.datasets.items():
        if dataset.site not in sites:
            path = ("network", "datasets", name, "site")
            raise doc.error(path, f"site {dataset.site!r} is not in the policy's sites", known)
        _positive(doc, ("network", "datasets", name, "size_gb"), dataset.size_gb)
