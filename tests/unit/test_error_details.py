"""Errors as the contract gives them (AIP-193): one status code per kind of error, an ErrorInfo whose reason is a
value of fedgate.v1.ReasonCode, a BadRequest naming every bad field, a PreconditionFailure with every admission
reason; closed sets as enums by one rule; and a cancelled job that keeps the exit code its site reported."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2

from fedgate.common.reasons import ReasonCode
from fedgate.v1 import admin_service_pb2, reason_pb2, site_pb2
from gateway.errors import AdmissionRejected, FailedPrecondition, GatewayError, InvalidArgument, Violation
from gateway.identity.revocation import KINDS
from gateway.identity.tokens import ROLES
from gateway.jobs.admission import AdmissionDecision, refusal
from gateway.jobs.model import JobSpec, JobState, Reason, Resources, StackRun
from gateway.jobs.validate import check_spec
from gateway.sites.dispatcher import SiteUpdate
from gateway.sites.registry import LIVE, LOST, SUSPECT
from gateway.transport import convert
from gateway.transport.errors import rich_status, status_for, violations_from_status
from tests.unit.schedworld import World


def _details(error: GatewayError) -> dict[str, object]:
    status = rich_status(status_for(error), error)
    found: dict[str, object] = {}
    for detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.RetryInfo,
        ):
            message = kind()
            if detail.Unpack(message):
                found[kind.__name__] = message
    return found


def _spec(**changes: object) -> JobSpec:
    base: dict[str, object] = {
        "tenant": "deepsea-ai",
        "project": "llama-sft",
        "resources": Resources("nvidia-h100", None, 8),
        "runs": (StackRun("cuda", "", ("train",)),),
        "max_runtime": timedelta(hours=1),
    }
    return JobSpec(**{**base, **changes})  # type: ignore[arg-type]


# -- one code per kind of error ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        ReasonCode.UNKNOWN_ACCELERATOR_CLASS,
        ReasonCode.UNKNOWN_PROJECT,
        ReasonCode.UNKNOWN_TENANT,
        ReasonCode.UNKNOWN_PRIORITY_CLASS,
        ReasonCode.BAD_CARD_COUNT,
    ],
)
def test_a_request_naming_what_the_federation_does_not_define_is_invalid_argument(code: ReasonCode) -> None:
    decision = AdmissionDecision(False, (Reason("policy", code, "no such thing"),), "v1")
    assert status_for(refusal(decision)) == grpc.StatusCode.INVALID_ARGUMENT


def test_a_well_formed_request_the_policy_refuses_is_failed_precondition() -> None:
    decision = AdmissionDecision(False, (Reason("policy", ReasonCode.RULE_DENY, "rule x: no"),), "v1")
    assert status_for(refusal(decision)) == grpc.StatusCode.FAILED_PRECONDITION


# -- the details -------------------------------------------------------------------------------------------------


def test_every_admission_reason_travels_not_only_the_first() -> None:
    reasons = (
        Reason("policy", ReasonCode.RULE_DENY, "rule a: not on h100", "centre-a"),
        Reason("policy", ReasonCode.RESIDENCY, "centre-b is in us-east"),
    )
    error = refusal(AdmissionDecision(False, reasons, "v7"))
    details = _details(error)
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("RULE_DENY", "fedgate.io")
    assert dict(info.metadata) == {"policy_version": "v7", "stage": "policy", "site": "centre-a"}
    failure = details["PreconditionFailure"]
    assert isinstance(failure, error_details_pb2.PreconditionFailure)
    assert [(v.type, v.subject) for v in failure.violations] == [("RULE_DENY", "centre-a"), ("RESIDENCY", "policy")]
    assert "BadRequest" not in details


def test_an_admission_reason_about_a_field_is_a_field_violation_under_the_request_it_came_in() -> None:
    decision = AdmissionDecision(False, (Reason("policy", ReasonCode.UNKNOWN_PROJECT, "no project x"),), "v1")
    for within, field in (("spec.", "spec.project"), ("reservation.", "reservation.project")):
        bad = _details(refusal(decision, within=within))["BadRequest"]
        assert isinstance(bad, error_details_pb2.BadRequest)
        assert [(v.field, v.reason) for v in bad.field_violations] == [(field, "UNKNOWN_PROJECT")]


def test_a_bad_spec_names_every_bad_field_by_its_path_in_the_request() -> None:
    spec = _spec(
        name="Bad Name",
        resources=Resources("nvidia-h100", None, 0),
        env=(("1BAD", "x"),),
        runs=(StackRun("cuda", "no spaces allowed", ("train",)),),
    )
    with pytest.raises(InvalidArgument) as refused:
        check_spec(spec)
    bad = _details(refused.value)["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    fields = [(v.field, v.reason) for v in bad.field_violations]
    assert fields == [
        ("spec.name", "JOB_SPEC_INVALID"),
        ("spec.resources.cards", "BAD_CARD_COUNT"),
        ("spec.runs[0].image", "JOB_SPEC_INVALID"),
        ('spec.env["1BAD"]', "JOB_SPEC_INVALID"),
    ]
    assert refused.value.metadata == {"field": "spec.name"}


def test_metadata_field_alone_makes_one_field_violation_and_other_errors_carry_none() -> None:
    bad = _details(InvalidArgument("job_id is required", metadata={"field": "job_id"}))["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.reason) for v in bad.field_violations] == [("job_id", "INVALID_ARGUMENT")]
    assert set(_details(FailedPrecondition("not now"))) == {"ErrorInfo"}


def test_the_client_reads_back_the_violations_the_gateway_wrote() -> None:
    error = AdmissionRejected(
        "no",
        reason=ReasonCode.RULE_DENY,
        violations=[
            Violation(ReasonCode.RULE_DENY, "rule a", subject="centre-a"),
            Violation(ReasonCode.UNKNOWN_PROJECT, "no x", field="spec.project"),
        ],
    )
    status = rich_status(status_for(error), error)
    assert violations_from_status(status) == (
        Violation("UNKNOWN_PROJECT", "no x", field="spec.project"),
        Violation("RULE_DENY", "rule a", subject="centre-a"),
    )


def test_every_error_reason_the_gateway_gives_is_a_value_of_the_contract_enum() -> None:
    for code in ReasonCode:
        assert reason_pb2.ReasonCode.Name(convert.code_to_proto(code)) == code.name
    assert convert.code_to_proto("NOT_A_CODE") == reason_pb2.REASON_CODE_UNSPECIFIED
    assert convert.code_from_proto(10_000) == ""  # a newer gateway's code: unknown, not an error


# -- closed sets -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enum", "words", "default"),
    [
        (admin_service_pb2.TokenRole, ROLES, "member"),
        (admin_service_pb2.RevocationKind, KINDS, ""),
        (site_pb2.SiteLiveness, (LIVE, SUSPECT, LOST), "live"),
        (reason_pb2.ReasonStage, ("policy", "offers", "capacity", "site", "reservation"), ""),
    ],
)
def test_each_word_of_a_closed_set_has_its_own_enum_value_and_comes_back(
    enum: object, words: tuple[str, ...], default: str
) -> None:
    numbers = [convert.enum_to_proto(enum, word) for word in words]  # type: ignore[arg-type]
    assert 0 not in numbers and len(set(numbers)) == len(words)
    assert [convert.enum_from_proto(enum, n, default) for n in numbers] == list(words)  # type: ignore[arg-type]
    assert convert.enum_from_proto(enum, 0, default) == default  # type: ignore[arg-type]


# -- exit codes --------------------------------------------------------------------------------------------------


def test_a_cancelled_job_reads_the_exit_code_its_site_reported_after_the_cancel() -> None:
    world = World()
    world.site("centre-a", 8)
    job_id = world.submit(8)
    world.cycle()
    world.start(job_id)
    world.cancel(job_id)
    assert world.job(job_id).state == JobState.CANCELLED and world.job(job_id).exit_code is None
    job = world.job(job_id)
    update = SiteUpdate(job_id, job.epoch, JobState.CANCELLED, 2, world.now, exit_code=143)
    world.dispatcher.update("centre-a", update)
    after = world.job(job_id)
    assert (after.state, after.exit_code, after.end_time) == (JobState.CANCELLED, 143, job.end_time)
    assert convert.job_to_proto(after).exit_code == 143
    world.dispatcher.update("centre-a", SiteUpdate(job_id, job.epoch, JobState.CANCELLED, 3, world.now, exit_code=9))
    assert world.job(job_id).exit_code == 143  # kept once: a replay or a late word does not change it


def test_an_exit_code_has_presence_on_the_wire() -> None:
    running = site_pb2.JobUpdate(state=convert.state_to_proto(JobState.RUNNING))
    assert convert.exit_code_from_proto(running) is None
    assert convert.exit_code_from_proto(site_pb2.JobUpdate(state=convert.state_to_proto(JobState.FAILED))) is None
    failed = site_pb2.JobUpdate(state=convert.state_to_proto(JobState.FAILED), exit_code=0)
    assert convert.exit_code_from_proto(failed) == 0
    old_success = site_pb2.JobUpdate(state=convert.state_to_proto(JobState.SUCCEEDED))
    assert convert.exit_code_from_proto(old_success) == 0
    queued = World()
    queued.site("centre-a", 8)
    job = queued.job(queued.submit(8))
    assert not convert.job_to_proto(job).HasField("exit_code")
