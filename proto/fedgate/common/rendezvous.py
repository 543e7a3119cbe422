"""The rendezvous contract: the world every process of a multi-node attempt belongs to, and the environment
variables that tell it so, the same on every engine and across the sites of a cross-site gang.

Owns: `Rendezvous` (what the gateway sends with a Launch: the attempt's node count, this part's first node
rank, the world's cards, and rank 0's master when the gateway chose it), the variable names each value is
published under (fedgate's own `FEDGATE_*`, torchrun's and torch.distributed's, and Ascend's where they differ),
and `environment`, which turns one node's values into those variables. A backend gives the values: a literal
where it knows them (local, simulated), a shell expression where only the node knows them (Slurm's
`$SLURM_NODEID`), a Kubernetes `$(VAR)` reference in a pod template. It does not choose nodes or ports:
`gateway.scheduler.rendezvous` and the backends do. Plain Python, shared by the gateway (docs, the demo) and
the agent (its backends).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

NNODES = "nnodes"
NODE_RANK = "node_rank"
MASTER_ADDR = "master_addr"
MASTER_PORT = "master_port"
WORLD_SIZE = "world_size"
NPROC_PER_NODE = "nproc_per_node"
KEYS = (NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, WORLD_SIZE, NPROC_PER_NODE)
"""What a node's processes are told: nodes of the attempt, this node's rank (0..nnodes-1), rank 0's host and
port, the attempt's cards, and this node's cards."""

FEDGATE_NAMES: dict[str, str] = {
    NNODES: "FEDGATE_NNODES",
    NODE_RANK: "FEDGATE_NODE_RANK",
    MASTER_ADDR: "FEDGATE_MASTER_ADDR",
    MASTER_PORT: "FEDGATE_MASTER_PORT",
    WORLD_SIZE: "FEDGATE_WORLD_SIZE",
    NPROC_PER_NODE: "FEDGATE_NPROC_PER_NODE",
}
"""fedgate's own names, on every stack; documented in the README ("The rendezvous contract")."""

TORCH_NAMES: dict[str, tuple[str, ...]] = {
    NNODES: ("NNODES", "PET_NNODES"),
    NODE_RANK: ("NODE_RANK", "PET_NODE_RANK"),
    MASTER_ADDR: ("MASTER_ADDR", "PET_MASTER_ADDR"),
    MASTER_PORT: ("MASTER_PORT", "PET_MASTER_PORT"),
    NPROC_PER_NODE: ("PET_NPROC_PER_NODE",),
}
"""What torchrun and `torch.distributed`'s env:// init read: torchrun takes every option from `PET_<OPTION>`
when it is not given on its command line, so a plain `torchrun train.py` joins the world; MASTER_ADDR and
MASTER_PORT are env://'s. WORLD_SIZE and RANK are left to torchrun, which counts processes, not cards."""

ASCEND_NAMES: dict[str, tuple[str, ...]] = {
    WORLD_SIZE: ("RANK_SIZE", "MS_WORKER_NUM"),
    MASTER_ADDR: ("MS_SCHED_HOST",),
    MASTER_PORT: ("MS_SCHED_PORT",),
}
"""Where Ascend's stack (CANN, HCCL through torch_npu or MindSpore) differs: HCCL's RANK_SIZE is the cards of
the world, and MindSpore's dynamic networking finds its scheduler at MS_SCHED_HOST:MS_SCHED_PORT with
MS_WORKER_NUM workers. torch_npu's torchrun reads the torch names above, which are set too."""

STACK_NAMES: dict[str, dict[str, tuple[str, ...]]] = {"cann": ASCEND_NAMES}


@dataclass(frozen=True)
class Rendezvous:
    """The world of one attempt, as the gateway states it for one site's part."""

    nnodes: int = 1
    """Nodes of the whole attempt (every part of a gang)."""
    first_rank: int = 0
    """The node rank of this part's first node (0 unless the part follows others of a gang)."""
    world_size: int = 0
    """Cards of the whole attempt."""
    master_addr: str = ""
    """Rank 0's host; empty: this part's first node, which the site's engine names once it chose the nodes."""
    master_port: int = 0
    """Rank 0's port; 0: the site chooses."""

    @classmethod
    def alone(cls, nodes: int, cards: int) -> Rendezvous:
        """The world of a one-site attempt of `nodes` nodes and `cards` cards: rank 0 is its first node."""
        return cls(nnodes=max(nodes, 1), first_rank=0, world_size=cards)


def environment(stack: str, values: Mapping[str, str]) -> dict[str, str]:
    """Every variable one node's processes see, from that node's `values` (by the keys above; a missing key is
    left out): fedgate's names on every stack, torch's, and the stack's own where it has some."""
    env: dict[str, str] = {}
    for key, value in values.items():
        if key not in FEDGATE_NAMES:
            raise ValueError(f"unknown rendezvous key {key!r}")
        for name in TORCH_NAMES.get(key, ()):
            env[name] = value
        for name in STACK_NAMES.get(stack.strip().lower(), {}).get(key, ()):
            env[name] = value
        env[FEDGATE_NAMES[key]] = value
    return env


def names(stack: str) -> tuple[str, ...]:
    """Every variable name `environment` may set for `stack`, so a backend can keep a job from setting them."""
    found = {name for key in KEYS for name in environment(stack, {key: ""})}
    return tuple(sorted(found))


DEFAULT_PORTS = (29500, 29999)
"""The ports a rendezvous point gives out when its centre names none (torch's default master port upwards)."""


@dataclass(frozen=True)
class RendezvousPoint:
    """A centre's rendezvous point for cross-site gangs: a `host` the other centres reach that leads to the node
    of rank 0 (of a gang whose first part runs there), and the ports `first_port`..`last_port` it may use."""

    host: str
    first_port: int = DEFAULT_PORTS[0]
    last_port: int = DEFAULT_PORTS[1]

    def problem(self) -> str:
        """Why the point cannot be used ('' when it can)."""
        if not self.host or len(self.host) > 253 or any(c.isspace() or c in "$`'\"\\;/" for c in self.host):
            return f"rendezvous host {self.host[:64]!r} must be a host name or IP address (at most 253 characters)"
        if not 1 <= self.first_port <= self.last_port <= 65535:
            return f"rendezvous ports {self.first_port}-{self.last_port} must be a range within 1-65535"
        return ""

    def port_for(self, job_id: str, epoch: int) -> int:
        """The port of the attempt (`job_id`, `epoch`): a function of the attempt alone, so every part and every
        resend after a gateway restart names the same one with nothing stored; spread over the range, so two
        gangs mastered here share a port only by chance (1 in the range's size), and a retry moves on."""
        span = self.last_port - self.first_port + 1
        digest = hashlib.sha256(f"{job_id}/{epoch}".encode()).digest()
        return self.first_port + int.from_bytes(digest[:8], "big") % span
