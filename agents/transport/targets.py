"""Which gateway address the agent dials next, when the federation runs several gateways on one store.

Owns: `GatewayTargets`: the addresses from the config, the one in use, moving to the next after a failed or
ended stream, and following a standby's NOT_LEADER answer (UNAVAILABLE with ErrorInfo reason NOT_LEADER and
metadata `leader`) straight to the leader it names, once per answer, so that two standbys that disagree
cannot keep the agent bouncing without a backoff.
"""

from __future__ import annotations

import grpc
import grpc.aio

from fedgate.common import wire


def leader_named(error: BaseException) -> str:
    """The leader's address a standby's refusal names, or ""."""
    if not isinstance(error, grpc.aio.AioRpcError) or error.code() != grpc.StatusCode.UNAVAILABLE:
        return ""
    return wire.leader_named(error.trailing_metadata())


class GatewayTargets:
    def __init__(self, addresses: tuple[str, ...]) -> None:
        if not addresses:
            raise ValueError("an agent needs at least one gateway address")
        self._addresses = list(addresses)
        self._index = 0
        self._followed = False

    @property
    def current(self) -> str:
        return self._addresses[self._index]

    def next(self) -> None:
        """Dial the next address (in the order given, round and round)."""
        self._index = (self._index + 1) % len(self._addresses)
        self._followed = False

    def follow(self, error: BaseException) -> bool:
        """If `error` is a standby naming the leader, make the leader current and return True (dial at once).
        Not twice in a row: a second NOT_LEADER right after following one is dialled after the backoff."""
        leader = leader_named(error)
        if not leader or self._followed or leader == self.current:
            return False
        if leader not in self._addresses:
            self._addresses.append(leader)  # an address the admin did not list, but the leader advertises
        self._index = self._addresses.index(leader)
        self._followed = True
        return True

    def connected(self) -> None:
        """A stream was welcomed: a later NOT_LEADER may be followed again."""
        self._followed = False
