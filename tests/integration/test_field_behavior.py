"""REQUIRED fields on the real port: a missing one is INVALID_ARGUMENT whose ErrorInfo names it, after the
caller is authenticated (an anonymous caller learns only that it must authenticate)."""

from __future__ import annotations

from fedgate.v1 import job_service_pb2, job_service_pb2_grpc, reservation_service_pb2_grpc
from fedgate.v1 import reservation_service_pb2 as rpb
from tests.integration.harness import GatewayHandle
from tests.security.support import ALICE, CALL_TIMEOUT_S, assert_refused, creds_channel, public_channel


def test_a_missing_required_field_is_refused_by_name(gateway: GatewayHandle) -> None:
    with creds_channel(gateway, gateway.pki.user(*ALICE)) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        refused = assert_refused(
            lambda: jobs.GetJob(job_service_pb2.GetJobRequest(), timeout=CALL_TIMEOUT_S), "INVALID_ARGUMENT"
        )
        assert refused.metadata == {"field": "job_id"} and "job_id is required" in refused.message
        refused = assert_refused(
            lambda: list(jobs.WatchJob(job_service_pb2.WatchJobRequest(), timeout=CALL_TIMEOUT_S)), "INVALID_ARGUMENT"
        )
        assert refused.metadata == {"field": "job_id"}
        refused = assert_refused(
            lambda: jobs.CreateJob(job_service_pb2.CreateJobRequest(request_id="r1"), timeout=CALL_TIMEOUT_S),
            "INVALID_ARGUMENT",
        )
        assert refused.metadata == {"field": "spec"}
        books = reservation_service_pb2_grpc.ReservationServiceStub(channel)
        ask = rpb.CreateReservationRequest(reservation=rpb.Reservation(project="llm"))
        refused = assert_refused(lambda: books.CreateReservation(ask, timeout=CALL_TIMEOUT_S), "INVALID_ARGUMENT")
        assert refused.metadata == {"field": "reservation.resources"}


def test_an_anonymous_caller_is_told_to_authenticate_first(gateway: GatewayHandle) -> None:
    with public_channel(gateway) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        assert_refused(lambda: jobs.GetJob(job_service_pb2.GetJobRequest(), timeout=CALL_TIMEOUT_S), "UNAUTHENTICATED")
