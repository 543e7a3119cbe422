"""What the client asks a gateway about itself, through the discovery services every port serves (gRPC health and
server reflection), so that `fedgate version` needs nothing added to the contract.

Owns: `DiscoveryCalls.describe_gateway`: the services a gateway lists by reflection, the API packages among them
(`fedgate.v1`), and whether it leads (health). It does not know the gateway's software version: no call of the
contract carries it, and a version the server volunteered outside the contract would be one more thing to keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fedgate.v1 import job_service_pb2
from gateway.transport.client_channel import ClientChannel

CLIENT_API: str = job_service_pb2.DESCRIPTOR.package
"""The API package this client speaks, e.g. fedgate.v1."""


@dataclass(frozen=True)
class GatewayDescription:
    address: str
    services: tuple[str, ...]
    """Every service the gateway lists, its own and the discovery ones."""
    serving: bool
    """Its health says it leads (a standby says not)."""

    @property
    def apis(self) -> tuple[str, ...]:
        """The fedgate API packages it serves, e.g. ("fedgate.v1",)."""
        return tuple(sorted({s.rpartition(".")[0] for s in self.services if s.startswith("fedgate.")}))


class DiscoveryCalls(ClientChannel):
    def describe_gateway(self) -> GatewayDescription:
        """The services of the gateway at this client's address, by server reflection. ClientError when it
        cannot be reached (with the TLS diagnosis when the handshake failed)."""
        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel_to(self.target))
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        try:
            replies = list(stub.ServerReflectionInfo(iter([request]), timeout=self.timeout))
        except grpc.RpcError as exc:
            raise self._explained(exc) from None
        services = tuple(s.name for reply in replies for s in reply.list_services_response.service)
        return GatewayDescription(address=self.target, services=services, serving=self.leads(self.timeout))
