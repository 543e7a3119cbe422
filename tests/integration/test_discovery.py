"""What a client in any language finds on the real ports: server reflection under grpc.reflection.v1 and
v1alpha, and health (a load balancer's probe) on the mTLS port and, without any credential, on the public port."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.transport.discovery import V1_SERVICE, V1ALPHA_SERVICE, describe_v1
from tests.integration.harness import GatewayHandle, LoopThread, Pki, start_test_gateway
from tests.security.support import ALICE, CALL_TIMEOUT_S, ca_pem, mtls_channel, public_channel

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MTLS_SERVICES = {
    "fedgate.v1.JobService",
    "fedgate.v1.SiteService",
    "fedgate.v1.AdminService",
    "fedgate.v1.EnrollmentService",
    "fedgate.v1.ReservationService",
}
PUBLIC_SERVICES = {"fedgate.v1.JobService", "fedgate.v1.EnrollmentService", "fedgate.v1.ReservationService"}
DISCOVERY = {V1_SERVICE, V1ALPHA_SERVICE, "grpc.health.v1.Health"}


def _messages(package: str) -> tuple[Any, Any]:
    """The request and response classes of reflection `package`, as a client generated from its .proto has them."""
    describe_v1()
    pool = descriptor_pool.Default()
    request = pool.FindMessageTypeByName(f"{package}.ServerReflectionRequest")
    response = pool.FindMessageTypeByName(f"{package}.ServerReflectionResponse")
    return message_factory.GetMessageClass(request), message_factory.GetMessageClass(response)


def reflect(channel: grpc.Channel, service: str, **ask: str) -> Any:
    """One reflection request to `service` (grpc.reflection.v1 or v1alpha), its one answer."""
    request_class, response_class = _messages(service.rpartition(".")[0])
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    (answer,) = list(call(iter([request_class(**ask)]), timeout=CALL_TIMEOUT_S))
    return answer


def listed(channel: grpc.Channel, service: str) -> set[str]:
    answer = reflect(channel, service, list_services="")
    assert answer.WhichOneof("message_response") == "list_services_response", answer
    return {s.name for s in answer.list_services_response.service}


def described(channel: grpc.Channel, service: str, symbol: str) -> set[str]:
    """The files reflection returns for `symbol`: its own and every file it imports."""
    answer = reflect(channel, service, file_containing_symbol=symbol)
    assert answer.WhichOneof("message_response") == "file_descriptor_response", answer
    files = answer.file_descriptor_response.file_descriptor_proto
    return {descriptor_pb2.FileDescriptorProto.FromString(f).name for f in files}


def alice_channel(gateway: GatewayHandle) -> grpc.Channel:
    alice = gateway.pki.user(*ALICE)
    cert, key = (alice / "cert.pem").read_bytes(), (alice / "key.pem").read_bytes()
    return mtls_channel(gateway.address, ca_pem(gateway), cert, key)


@pytest.mark.parametrize("service", [V1_SERVICE, V1ALPHA_SERVICE])
def test_reflection_lists_and_describes_every_service_of_the_mtls_port(gateway: GatewayHandle, service: str) -> None:
    with alice_channel(gateway) as channel:
        assert listed(channel, service) == MTLS_SERVICES | DISCOVERY
        files = described(channel, service, "fedgate.v1.JobService")
        assert {"fedgate/v1/job_service.proto", "fedgate/v1/job.proto", "google/api/field_behavior.proto"} <= files
        assert "grpc/reflection/v1/reflection.proto" in described(channel, service, V1_SERVICE)


@pytest.mark.parametrize("service", [V1_SERVICE, V1ALPHA_SERVICE])
def test_reflection_on_the_public_port_needs_no_credential_and_lists_its_services(
    gateway: GatewayHandle, service: str
) -> None:
    with public_channel(gateway) as channel:
        assert listed(channel, service) == PUBLIC_SERVICES | DISCOVERY
        assert "fedgate/v1/reservation_service.proto" in described(channel, service, "fedgate.v1.ReservationService")


def test_an_unknown_symbol_is_not_found_under_v1(gateway: GatewayHandle) -> None:
    with public_channel(gateway) as channel:
        answer = reflect(channel, V1_SERVICE, file_containing_symbol="fedgate.v1.NoSuchService")
    assert answer.WhichOneof("message_response") == "error_response"
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_health_answers_on_both_ports_for_what_each_serves(gateway: GatewayHandle) -> None:
    ask = health_pb2.HealthCheckRequest
    with alice_channel(gateway) as mtls, public_channel(gateway) as public:
        for channel, services in ((mtls, MTLS_SERVICES), (public, PUBLIC_SERVICES)):
            checks = health_pb2_grpc.HealthStub(channel)
            for name in ("", *sorted(services)):
                assert checks.Check(ask(service=name), timeout=CALL_TIMEOUT_S).status == SERVING, name
            # Watch too (a stream the server writes to): its first answer is the status now.
            watch = checks.Watch(ask(), timeout=CALL_TIMEOUT_S)
            assert next(watch).status == SERVING
            watch.cancel()
        # The public port does not serve the admin or site services, and its health says so.
        with pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(public).Check(ask(service="fedgate.v1.AdminService"), timeout=CALL_TIMEOUT_S)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_stopping_gateway_tells_a_load_balancer_before_it_goes(pki: Pki, loop: LoopThread, tmp_path: Path) -> None:
    handle = start_test_gateway(pki, tmp_path, loop)
    seen: list[int] = []
    first = threading.Event()
    with public_channel(handle) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)

        def follow() -> None:
            try:
                for reply in watch:
                    seen.append(reply.status)
                    first.set()
            except grpc.RpcError:
                pass  # the server went away after saying so
            finally:
                first.set()

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert first.wait(10), "no health status arrived"
        handle.stop()
        reader.join(10)
        watch.cancel()
    assert seen[0] == SERVING
    assert NOT_SERVING in seen, f"health went from SERVING to {seen[1:]} as the gateway stopped"
