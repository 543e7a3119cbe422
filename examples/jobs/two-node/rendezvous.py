"""A two-node (or N-node) world in the style of torch.distributed, with no accelerator and no torch: every node
connects to the master named by the rendezvous variables, says its node rank, and hears the whole world back.

Node rank 0 listens on FEDGATE_MASTER_ADDR:FEDGATE_MASTER_PORT and waits for the FEDGATE_NNODES - 1 others;
each other node connects (retrying while the master starts) and sends its rank; once every rank 1..n-1 has
arrived exactly once, the master sends each the agreed world and every node prints one line:

    node 1 of 2: world agreed (ranks 0-1, 16 cards; master 10.0.0.5:29517)

It exits 0 when the world was agreed, 1 when it was not within FEDGATE_RENDEZVOUS_TIMEOUT_S (default 60 s),
and with FEDGATE_FAIL_RANK=r the node of rank r exits 3 after the agreement (to see one node's failure end
the attempt). Torch would read the same world from MASTER_ADDR, MASTER_PORT, NNODES and NODE_RANK.
"""

from __future__ import annotations

import os
import socket
import sys
import time


def main() -> int:
    nnodes = int(os.environ["FEDGATE_NNODES"])
    rank = int(os.environ["FEDGATE_NODE_RANK"])
    host, port = os.environ["FEDGATE_MASTER_ADDR"], int(os.environ["FEDGATE_MASTER_PORT"])
    cards = int(os.environ.get("FEDGATE_WORLD_SIZE", "0"))
    deadline = time.monotonic() + float(os.environ.get("FEDGATE_RENDEZVOUS_TIMEOUT_S", "60"))
    try:
        agreed = master(nnodes, host, port, deadline) if rank == 0 else worker(rank, host, port, deadline)
    except (OSError, TimeoutError, ValueError) as exc:
        print(f"node {rank} of {nnodes}: no world agreed: {exc}", flush=True)
        return 1
    print(f"node {rank} of {nnodes}: world agreed (ranks {agreed}, {cards} cards; master {host}:{port})", flush=True)
    if os.environ.get("FEDGATE_FAIL_RANK") == str(rank):
        print(f"node {rank}: failing on purpose", flush=True)
        return 3
    return 0


def master(nnodes: int, host: str, port: int, deadline: float) -> str:
    try:
        server = socket.create_server((host, port))
    except socket.gaierror:  # rank 0's own DNS name may not resolve yet (a Kubernetes pod): every interface
        server = socket.create_server(("", port))
    with server:
        peers: dict[int, socket.socket] = {}
        while len(peers) < nnodes - 1:
            server.settimeout(max(0.1, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(peers)} of {nnodes - 1} nodes arrived")
            conn, _ = server.accept()
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            peer = int(conn.recv(16).decode().strip())
            if peer in peers or not 0 < peer < nnodes:
                raise ValueError(f"node rank {peer} arrived twice or is outside 1-{nnodes - 1}")
            peers[peer] = conn
        world = f"0-{nnodes - 1}"
        for conn in peers.values():
            conn.sendall(world.encode() + b"\n")
            conn.close()
        return world


def worker(rank: int, host: str, port: int, deadline: float) -> str:
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())) as conn:
                conn.sendall(f"{rank}\n".encode())
                return conn.makefile().readline().strip()
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise TimeoutError("the master never listened") from None
            time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
