"""What a client or a load balancer finds on a port without fedgate's code: gRPC health and server reflection.

Owns: `serve_discovery`, which puts on one server a health service of its own (the services of that port, and
"" for the whole server) and server reflection under both names clients ask for, `grpc.reflection.v1` (grpcurl,
grpc-js, Postman and recent grpc-go try it first) and `grpc.reflection.v1alpha` (older clients); and
`mark_serving` once the server listens. grpcio-reflection implements v1alpha only: v1 is the same protocol under
another package (every message and field number alike), so the v1alpha servicer answers it too, its messages
encoded as they are, and the v1 service is described in the descriptor pool so that reflection lists and
describes it. It does not decide who may call them: on the mTLS port `CredentialGuard` does (a certificate, not
revoked); the public port answers anyone, as a load balancer's probe needs.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1ALPHA_SERVICE: str = reflection.SERVICE_NAME


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, derived from v1alpha's: same messages, same numbers, new package."""
    alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(alpha)
    old, new = f".{alpha.package}.", f".{V1_PACKAGE}."
    v1 = descriptor_pb2.FileDescriptorProto()
    v1.CopyFrom(alpha)
    v1.name, v1.package = V1_FILE, V1_PACKAGE
    v1.options.Clear()
    v1.options.java_package = "io.grpc.reflection.v1"
    v1.options.java_multiple_files = True
    v1.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    for message in v1.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(old, new)
    for method in v1.service[0].method:
        method.input_type = method.input_type.replace(old, new)
        method.output_type = method.output_type.replace(old, new)
    return v1


def describe_v1(pool: descriptor_pool.DescriptorPool | None = None) -> None:
    """Add the v1 reflection service to `pool` (default: the process's), once."""
    pool = pool or descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.Add(_v1_file())


def serve_discovery(server: grpc.aio.Server, services: Iterable[str]) -> health.aio.HealthServicer:  # type: ignore[name-defined]
    """Health and reflection (v1 and v1alpha) on `server`, which serves `services`; returns its health servicer,
    every status NOT_SERVING until `mark_serving`."""
    describe_v1()
    names = (*services, V1_SERVICE, V1ALPHA_SERVICE, health.SERVICE_NAME)
    checks = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    reflection.enable_server_reflection(names, server)
    answers = ReflectionServicer(names)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                answers.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
    return checks


async def mark_serving(checks: health.aio.HealthServicer, services: Iterable[str]) -> None:  # type: ignore[name-defined]
    """The server listens: it and each of `services` answer SERVING."""
    for name in ("", *services):
        await checks.set(name, health_pb2.HealthCheckResponse.SERVING)
