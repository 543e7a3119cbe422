"""Hostile or malformed requests get a clear refusal and change nothing."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedgate.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from gateway.trust.credentials import Credentials
from tests.integration.harness import GatewayHandle


def stub(gateway: GatewayHandle) -> tuple[grpc.Channel, job_service_pb2_grpc.JobServiceStub]:
    creds = Credentials.from_dir(gateway.pki.user("deepsea-ai", "alice"))
    channel = grpc.secure_channel(
        gateway.address,
        grpc.ssl_channel_credentials(creds.ca_pem, creds.key_pem, creds.cert_pem),
        options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
    )
    return channel, job_service_pb2_grpc.JobServiceStub(channel)


def good_spec() -> job_pb2.JobSpec:
    return job_pb2.JobSpec(
        tenant="deepsea-ai",
        project="llama-sft",
        resources=job_pb2.Resources(accelerator_class="ascend-910b", cards=1),
        runs=[job_pb2.StackRun(stack="cann", command=["true"])],
    )


def test_oversized_message_is_refused_before_parsing(gateway: GatewayHandle) -> None:
    spec = good_spec()
    spec.env["BLOB"] = "x" * (5 * 1024 * 1024)
    channel, jobs = stub(gateway)
    with channel, pytest.raises(grpc.RpcError) as refused:
        jobs.CreateJob(job_service_pb2.CreateJobRequest(spec=spec), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert gateway.running.core.store.list_jobs(None).jobs == ()


def test_unknown_enum_value_is_invalid_argument(gateway: GatewayHandle) -> None:
    channel, jobs = stub(gateway)
    request = job_service_pb2.ListJobsRequest()
    request.states.append(99)  # type: ignore[arg-type]
    with channel, pytest.raises(grpc.RpcError) as refused:
        jobs.ListJobs(request, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "99" in (refused.value.details() or "")


def test_garbage_bytes_are_refused_as_a_bad_message(gateway: GatewayHandle) -> None:
    channel, _ = stub(gateway)
    with channel:
        raw = channel.unary_unary(
            "/fedgate.v1.JobService/CreateJob", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as refused:
            raw(b"\xff\xff\xff\xff\x0f\x08", timeout=5)
    # grpc.aio decodes before any servicer code runs and answers UNKNOWN; the detail names the problem.
    assert refused.value.code() == grpc.StatusCode.UNKNOWN
    assert "Error parsing message" in (refused.value.details() or "")
    assert gateway.running.core.store.list_jobs(None).jobs == ()


def test_too_many_env_entries_and_long_request_ids_are_refused(gateway: GatewayHandle) -> None:
    channel, jobs = stub(gateway)
    spec = good_spec()
    for i in range(100):
        spec.env[f"K{i}"] = "v"
    with channel:
        for request in (
            job_service_pb2.CreateJobRequest(spec=spec),
            job_service_pb2.CreateJobRequest(spec=good_spec(), request_id="r" * 500),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                jobs.CreateJob(request, timeout=5)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert gateway.running.core.store.list_jobs(None).jobs == ()


def test_health_needs_a_client_certificate_too(gateway: GatewayHandle) -> None:
    channel, _ = stub(gateway)
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    ca = (gateway.pki.root / "ca" / "ca.pem").read_bytes()
    anonymous = grpc.secure_channel(gateway.address, grpc.ssl_channel_credentials(ca))
    with anonymous, pytest.raises(grpc.RpcError) as refused:
        health_pb2_grpc.HealthStub(anonymous).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
