"""The contract's field behaviours hold: a REQUIRED field missing is refused naming it (the .proto annotation is
the one list), and OUTPUT_ONLY fields sent on create are ignored (AIP-203), never used and never refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.message import Message

from fedgate.v1 import admin_service_pb2, enrollment_service_pb2, job_pb2, job_service_pb2, reason_pb2
from fedgate.v1 import reservation_service_pb2 as rpb
from gateway.errors import InvalidArgument
from gateway.transport.required import missing_fields, require_fields
from gateway.transport.reservation_convert import request_from_proto


def _spec(**changes: object) -> job_pb2.JobSpec:
    spec = job_pb2.JobSpec(tenant="deepsea-ai", project="llm", resources=job_pb2.Resources(cards=8))
    for name, value in changes.items():
        spec.ClearField(name) if value is None else setattr(spec, name, value)
    return spec


@pytest.mark.parametrize(
    ("request_", "missing"),
    [
        (job_service_pb2.CreateJobRequest(), ["spec"]),
        (job_service_pb2.CreateJobRequest(spec=_spec(tenant="")), ["spec.tenant"]),
        (job_service_pb2.CreateJobRequest(spec=_spec(project="", resources=None)), ["spec.project", "spec.resources"]),
        (
            job_service_pb2.CreateJobRequest(spec=job_pb2.JobSpec(resources=job_pb2.Resources())),
            ["spec.tenant", "spec.project", "spec.resources.cards"],
        ),
        (job_service_pb2.CreateJobRequest(spec=_spec()), []),
        (job_service_pb2.GetJobRequest(), ["job_id"]),
        (job_service_pb2.CancelJobRequest(reason="done"), ["job_id"]),
        (job_service_pb2.WatchJobRequest(), ["job_id"]),
        (job_service_pb2.StreamJobLogsRequest(follow=True), ["job_id"]),
        (job_service_pb2.ExplainJobRequest(job_id="job-1"), []),
        (job_service_pb2.ExplainJobRequest(spec=_spec(tenant="")), ["spec.tenant"]),
        (job_service_pb2.ListJobsRequest(), []),
        (rpb.CreateReservationRequest(), ["reservation"]),
        (
            rpb.CreateReservationRequest(reservation=rpb.Reservation(name="x")),
            ["reservation.project", "reservation.resources", "reservation.start_time", "reservation.end_time"],
        ),
        (rpb.GetReservationRequest(), ["reservation_id"]),
        (rpb.CancelReservationRequest(), ["reservation_id"]),
        (admin_service_pb2.DrainSiteRequest(draining=True), ["site"]),
        (admin_service_pb2.CreateJoinTokenRequest(), ["site"]),
        (admin_service_pb2.IssueTokenRequest(role=admin_service_pb2.TOKEN_ROLE_VIEWER), ["tenant", "user"]),
        (enrollment_service_pb2.EnrollRequest(join_token="t"), ["csr_pem", "site"]),
        (enrollment_service_pb2.RenewCertificateRequest(), ["csr_pem"]),
    ],
)
def test_missing_required_fields_are_named_by_their_path(request_: Message, missing: list[str]) -> None:
    assert missing_fields(request_) == missing


def test_a_missing_required_field_is_invalid_argument_naming_it() -> None:
    with pytest.raises(InvalidArgument) as refused:
        require_fields(job_service_pb2.CreateJobRequest(spec=_spec(tenant="", project="")))
    assert refused.value.metadata == {"field": "spec.tenant"}
    assert refused.value.message.startswith("spec.tenant is required (and spec.project)")
    require_fields(job_service_pb2.CreateJobRequest(spec=_spec()))  # nothing missing: no refusal


def _reservation(**output_only: object) -> rpb.Reservation:
    start = datetime(2031, 1, 1, 8, tzinfo=UTC)
    msg = rpb.Reservation(
        project="llm", name="run", resources=job_pb2.Resources(accelerator_class="ascend-910b", cards=16)
    )
    msg.start_time.FromDatetime(start)
    msg.end_time.FromDatetime(start + timedelta(hours=4))
    for name, value in output_only.items():
        if isinstance(value, list):
            getattr(msg, name).extend(value)
        elif isinstance(value, datetime):
            getattr(msg, name).FromDatetime(value)
        else:
            setattr(msg, name, value)
    return msg


def test_output_only_fields_sent_on_create_are_ignored_not_refused() -> None:
    # A reservation read back (id, state, parts, reasons, create time filled in) may be sent again as it is:
    # the gateway neither refuses those fields nor uses them; it books what the caller asked for.
    echoed = _reservation(
        reservation_id="book:mine",
        state=rpb.RESERVATION_STATE_ACTIVE,
        parts=[rpb.ReservationPart(site="centre-a", cards=16, state=rpb.RESERVATION_STATE_CONFIRMED)],
        reasons=[job_pb2.Reason(stage=reason_pb2.REASON_STAGE_SITE, code=reason_pb2.CONFIRMED)],
        create_time=datetime(2020, 1, 1, tzinfo=UTC),
    )
    require_fields(rpb.CreateReservationRequest(reservation=echoed))
    assert request_from_proto(echoed) == request_from_proto(_reservation())


def test_output_only_messages_are_not_searched_for_required_fields() -> None:
    # A Job is all OUTPUT_ONLY: an empty spec inside one is the gateway's business, not a missing input.
    assert missing_fields(job_pb2.Job(spec=job_pb2.JobSpec())) == []
