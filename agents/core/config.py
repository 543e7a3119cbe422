"""The agent's configuration: a strict YAML file turned into frozen dataclasses, once, at start-up.

Owns: the schema of `kind: Agent` files, defaults, and validation whose errors name the file, the line and
the fix. Relative paths resolve against the config file's folder, so a config and its certificates can
move together. It does not read certificates (only checks they exist) nor start anything.

    apiVersion: fedgate.io/v1
    kind: Agent
    site: centre-a
    gateway: 127.0.0.1:7443
    tls: {ca: ca.pem, cert: cert.pem, key: key.pem}
    backend: {type: local, workdir: ./work}
    state_dir: ./state           # the durable journal (default ./state next to this file)
    metrics_listen: 127.0.0.1:9465  # optional: Prometheus metrics (any other address: mTLS, see metrics_mtls)
    report_interval_s: 2
    cancel_grace_s: 5
    pools:
      - {class: ascend-910b, cards: 8, offered: 6, cards_per_node: 8, interconnect: hccs, labels: {zone: a}}
    policy:                      # optional: the centre's terms, see agents.policy.reader
      tenants: [deepsea-ai]
      offers:
        ascend-910b: [{hours: "08:00-20:00", share: 0.3}, {share: 0.8}]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from agents.backends.base import BackendSettings
from agents.backends.registry import backend_type
from agents.core.model import PoolSpec
from agents.errors import ConfigError
from agents.policy.reader import parse_site_policy
from agents.policy.terms import SitePolicy
from fedgate.common.metrics_http import MetricsEndpoint, parse_endpoint
from fedgate.common.rendezvous import DEFAULT_PORTS, RendezvousPoint
from fedgate.common.sections import Section
from fedgate.common.yaml import YamlDocument, load_yaml

API_VERSION = "fedgate.io/v1"
KIND = "Agent"

# The site name ends up in certificate SANs (spiffe://<federation>/site/<site>), DNS names and folder
# names, so it follows the strictest of those: an RFC 1123 label.
SITE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CLASS_ID = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for the agent's mTLS connection to the gateway (absolute paths)."""

    ca: Path
    """The federation CA certificate(s) that signed the gateway's server certificate."""
    cert: Path
    """The site's certificate chain; its SAN names this site (spiffe://<federation>/site/<site>)."""
    key: Path
    """The site's private key. It was generated here and never leaves the site."""


@dataclass(frozen=True)
class AgentConfig:
    """A validated agent configuration."""

    site: str
    """This site's name; the gateway checks it against the client certificate."""
    gateway: str
    """The gateway's address as `host:port` (IPv6 as `[::1]:7443`); with several, the first one given."""
    tls: TlsFiles
    backend: BackendSettings
    pools: tuple[PoolSpec, ...]
    """What the centre offers, one pool per accelerator class."""
    report_interval_s: float = 2.0
    """Seconds between full capacity reports when the gateway's Welcome does not set one."""
    cancel_grace_s: float = 5.0
    """Seconds between SIGTERM and SIGKILL when a job is cancelled or the agent stops."""
    other_gateways: tuple[str, ...] = ()
    """More addresses of the same federation (standby gateways on one PostgreSQL store): the agent dials them
    in turn, and goes straight to the leader a standby names."""

    @property
    def gateways(self) -> tuple[str, ...]:
        """Every gateway address, in the order given."""
        return (self.gateway, *self.other_gateways)

    policy: SitePolicy = field(default_factory=SitePolicy)
    """The centre's terms: whom it serves, the largest job, allowed images, offer windows. Default: all."""
    source: Path | None = None
    """The file this was loaded from, for messages; None when built in code."""
    rendezvous: RendezvousPoint | None = None
    """`rendezvous: {host, ports: "29500-29999"}`: where the other centres reach rank 0 of a cross-site gang
    whose first part runs here (a host leading to the node of rank 0); None: this site masters no cross-site
    gang (its parts still join gangs mastered elsewhere)."""
    metrics: MetricsEndpoint | None = None
    """`metrics_listen: host:port` (and `metrics_mtls`): where Prometheus scrapes the agent's metrics; plain HTTP
    on loopback, mutual TLS anywhere else (the scraper presents a certificate of the federation CA, the agent its
    site certificate). None: not served."""
    state_dir: Path | None = None
    """Folder of the agent's durable journal (unacknowledged updates, started attempts); a file's default is
    `./state` next to it. None (configs built in code) keeps the journal in memory."""


def load_agent_config(path: str | Path, *, validate_files: bool = True) -> AgentConfig:
    """Read and validate an agent config file. Raises ConfigError naming file, line and the fix.

    `validate_files=False` skips checking that the TLS files exist, for tools that only read the config
    (`fedgate agent policy test` on an example config); the agent itself always checks them."""
    source = Path(path).expanduser().absolute()
    return parse_agent_config(load_yaml(source, error=ConfigError), validate_files=validate_files)


def parse_agent_config(doc: YamlDocument, *, validate_files: bool = True) -> AgentConfig:
    """Validate a loaded document; its source names the file in errors and anchors relative paths."""
    root = Section(doc)
    source = Path(doc.source)
    base = source.parent
    _expect(root, "apiVersion", API_VERSION)
    _expect(root, "kind", KIND)
    site = root.text("site")
    if not SITE_NAME.fullmatch(site):
        root.fail(
            f"site {site!r} is not a valid site name; use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
            "site",
        )
    gateways = _gateways(root)
    tls = _tls(root.section("tls"), base, validate_files)
    backend = _backend(root.section("backend"), base)
    pools = _pools(root, base)
    policy = SitePolicy() if root.raw("policy", None) is None else parse_site_policy(root.section("policy"), pools)
    config = AgentConfig(
        site=site,
        gateway=gateways[0],
        other_gateways=gateways[1:],
        tls=tls,
        backend=backend,
        pools=pools,
        report_interval_s=root.number("report_interval_s", 2.0, positive=True),
        cancel_grace_s=root.number("cancel_grace_s", 5.0, positive=True),
        policy=policy,
        source=source,
        state_dir=_resolve(base, root.text("state_dir", "state")),
        rendezvous=_rendezvous(root.section("rendezvous")) if root.raw("rendezvous", None) is not None else None,
        metrics=_metrics(root),
    )
    root.finish()
    return config


def _rendezvous(section: Section) -> RendezvousPoint:
    """`rendezvous: {host: login.centre.example, ports: "29500-29999"}` (ports default 29500-29999)."""
    host = section.text("host")
    ports = section.text("ports", f"{DEFAULT_PORTS[0]}-{DEFAULT_PORTS[1]}")
    first, _, last = ports.partition("-")
    if not (first.strip().isdigit() and last.strip().isdigit()):
        section.fail(f"rendezvous ports {ports!r} must be a range like '29500-29999'", "ports")
    point = RendezvousPoint(host, int(first), int(last))
    if problem := point.problem():
        section.fail(problem, "host" if "host" in problem else "ports")
    section.finish()
    return point


def _metrics(root: Section) -> MetricsEndpoint | None:
    """`metrics_listen: 127.0.0.1:9465`, or any address with mTLS (`metrics_mtls`, on by default off loopback)."""
    mtls = root.raw("metrics_mtls", None)
    if mtls is not None and not isinstance(mtls, bool):
        root.fail("metrics_mtls must be true or false", "metrics_mtls")
    if root.raw("metrics_listen", None) is None:
        if mtls is not None:
            root.fail("metrics_mtls says how metrics are served, but metrics_listen is not set", "metrics_mtls")
        return None
    found = parse_endpoint(root.text("metrics_listen"), mtls)
    if isinstance(found, str):
        root.fail(f"metrics_listen {found}", "metrics_listen")
    return found


def _expect(section: Section, key: str, wanted: str) -> None:
    value = section.text(key)
    if value != wanted:
        section.fail(f"{key} must be {wanted!r}, got {value!r}", key)


def valid_target(target: str) -> bool:
    """True for `host:port` (IPv6 as `[::1]:7443`) with a port in 1-65535."""
    host, sep, port = target.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _gateways(root: Section) -> tuple[str, ...]:
    """`gateway: host:port`, or a list of the addresses of several gateways on one store."""
    targets = root.strings("gateway") if isinstance(root.raw("gateway"), list) else (root.text("gateway"),)
    if not targets:
        root.fail("gateway must name at least one address, e.g. gateway.example.org:7443", "gateway")
    for target in targets:
        if not valid_target(target):
            root.fail(f"gateway {target!r} must be host:port, e.g. gateway.example.org:7443", "gateway")
    return targets


def _tls(section: Section, base: Path, validate_files: bool) -> TlsFiles:
    paths = {}
    for key in ("ca", "cert", "key"):
        path = _resolve(base, section.text(key))
        if validate_files and not path.is_file():
            section.fail(
                f"tls.{key} file {path} does not exist; fix the path (relative paths start at the config's "
                "folder) or issue the site's certificate first",
                key,
            )
        paths[key] = path
    section.finish()
    return TlsFiles(ca=paths["ca"], cert=paths["cert"], key=paths["key"])


def _backend(section: Section, base: Path) -> BackendSettings:
    name = section.text("type")
    try:
        kind = backend_type(name)
    except ConfigError as exc:
        section.fail(exc.message, "type")
    workdir = _resolve(base, section.text("workdir", "work")) if "workdir" in kind.options else base
    options = kind.read_options(section, base) if kind.read_options is not None else None
    section.finish()
    return BackendSettings(type=name, workdir=workdir, options=options)


def _pools(root: Section, base: Path) -> tuple[PoolSpec, ...]:
    pools: list[PoolSpec] = []
    seen: set[str] = set()
    for section in root.sections("pools"):
        pool = _pool(section)
        if pool.accelerator_class in seen:
            section.fail(f"class {pool.accelerator_class!r} is declared twice; merge the two pools", "class")
        seen.add(pool.accelerator_class)
        pools.append(pool)
    if not pools:
        root.fail("pools is empty; declare at least one pool of accelerators to offer", "pools")
    return tuple(pools)


def _pool(section: Section) -> PoolSpec:
    name = section.text("class")
    if not _CLASS_ID.fullmatch(name):
        section.fail(f"class {name!r} is not a catalogue id like 'ascend-910b' or 'nvidia-h100'", "class")
    cards = section.integer("cards", minimum=1)
    offered = section.integer("offered", cards, minimum=0)
    if offered > cards:
        section.fail(f"offered ({offered}) is more than cards ({cards}); offer at most {cards}", "offered")
    pool = PoolSpec(
        accelerator_class=name,
        cards=cards,
        offered=offered,
        cards_per_node=section.integer("cards_per_node", cards, minimum=1),
        interconnect=section.text("interconnect", ""),
        labels=section.string_map("labels"),
        stack=section.text("stack", ""),
    )
    section.finish()
    return pool


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)
