"""The demo federation's files: a fresh CA, certificates for every principal, gateway and agent configs.

Owns: what the demo federation looks like (three centres with different accelerators and offers, two model
vendors, one admin) written into one temporary directory. It starts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedgate.common.yaml import dump_yaml
from gateway.app.config import REPO_POLICIES
from gateway.identity.ca import init_ca
from gateway.identity.principal import Principal

FEDERATION = "demo"


@dataclass(frozen=True)
class DemoSite:
    name: str
    # (class, cards, offered, cards_per_node, interconnect)
    pools: tuple[tuple[str, int, int, int, str], ...]
    # The centre's own veto (agent config `policy:`): each centre keeps different terms.
    policy: dict[str, object] | None = None


SITES = (
    # Four Ascend nodes of eight, two of them offered: the demo's two-node job takes both.
    DemoSite("centre-a", (("ascend-910b", 32, 16, 8, "hccs"),), {"tenants": ["deepsea-ai"]}),
    DemoSite("centre-b", (("nvidia-h100", 8, 4, 8, "nvlink-900gbs"),), {"max_job_cards": 4}),
    DemoSite(
        "centre-c",
        # Two H100 cards here and four at centre-b: the demo's six-card gang needs both centres.
        (("hygon-k100", 8, 8, 8, "xgmi"), ("nvidia-h20", 8, 2, 8, "nvlink-900gbs"), ("nvidia-h100", 4, 2, 4, "nvlink")),
        {"tenants": ["deepsea-ai", "panda-lm"], "image_registries": ["registry.example"]},
    ),
)
USERS = (("deepsea-ai", "alice"), ("panda-lm", "bob"))
# This centre has no certificate at first: it enrols with a one-time join token, as a real centre would.
ENROLLING_SITE = "centre-c"


@dataclass(frozen=True)
class DemoLayout:
    root: Path
    gateway_configs: tuple[Path, ...]  # one gateway, or a leader and a standby on one PostgreSQL
    ready_files: tuple[Path, ...]
    agent_configs: dict[str, Path]
    user_creds: dict[str, Path]  # tenant -> credentials directory
    admin_creds: Path


def write_layout(root: Path, store: str = "sqlite:///gateway.db", gateways: int = 1) -> DemoLayout:
    """The demo's files under `root`; `gateways` processes share `store` (more than one needs PostgreSQL)."""
    ca = init_ca(root / "ca", FEDERATION)
    # Jobs of the `local` backend run as `nobody` when the demo runs as root: they must reach their work
    # folders (root/work/<site>), and nothing else: traverse without listing, every key in a 0700 folder.
    root.chmod(0o711)
    ca.issue_server(root / "gateway", hosts=("localhost", "127.0.0.1", "::1"))
    user_creds = {
        tenant: ca.issue(Principal.user(FEDERATION, tenant, name), root / "users" / f"{tenant}-{name}")
        for tenant, name in USERS
    }
    admin_creds = ca.issue(Principal.admin(FEDERATION, "root"), root / "users" / "admin")
    names = ["gateway"] if gateways == 1 else [f"gateway-{chr(ord('a') + i)}" for i in range(gateways)]
    for name in names:
        _dump(
            root / "gateway" / f"{name}.yaml",
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Gateway",
                "federation": FEDERATION,
                "listen": "127.0.0.1:0",
                "public_listen": "127.0.0.1:0",
                "tls": {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"},
                "store": store,
                "policy": str(REPO_POLICIES / "federation.yaml"),
                "catalogue": str(REPO_POLICIES / "accelerators.yaml"),
                "authority": str(root / "ca"),
                "report_interval_s": 1,
                "schedule_period_s": 0.5,
            },
        )
    agent_configs = {}
    for site in SITES:
        creds = root / "sites" / site.name
        if site.name != ENROLLING_SITE:
            ca.issue(Principal.site(FEDERATION, site.name), creds)
        config = creds / "agent.yaml"
        _dump(
            config,
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Agent",
                "site": site.name,
                "gateway": "GATEWAY_ADDRESS",
                "tls": {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"},
                "backend": {"type": "local", "workdir": str(root / "work" / site.name)},
                "report_interval_s": 1,
                **({"policy": site.policy} if site.policy else {}),
                "pools": [
                    {
                        "class": cls,
                        "cards": cards,
                        "offered": offered,
                        "cards_per_node": per_node,
                        "interconnect": link,
                    }
                    for cls, cards, offered, per_node, link in site.pools
                ],
            },
        )
        agent_configs[site.name] = config
    return DemoLayout(
        root,
        tuple(root / "gateway" / f"{name}.yaml" for name in names),
        tuple(root / "gateway" / f"{name}.ready" for name in names),
        agent_configs,
        user_creds,
        admin_creds,
    )


def point_agents_at(layout: DemoLayout, addresses: list[str]) -> None:
    """Write the gateways' addresses into every agent's config (a list when there are several)."""
    value = addresses[0] if len(addresses) == 1 else "[" + ", ".join(f'"{a}"' for a in addresses) + "]"
    for config in layout.agent_configs.values():
        config.write_text(config.read_text().replace("GATEWAY_ADDRESS", value))


def _dump(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(data))
