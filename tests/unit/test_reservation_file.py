"""The reservation file and window times as vendors write them, and the contract conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fedgate.common.yaml import dump_yaml
from gateway.errors import ConfigError, InvalidArgument
from gateway.jobs.model import Capability, Reason, Resources
from gateway.jobs.specfile import parse_job_spec, spec_to_dict
from gateway.reservations.file import parse_reservation, parse_time, request_to_dict
from gateway.reservations.model import Reservation, ReservationPart, ReservationRequest, ReservationState
from gateway.transport.convert import spec_from_proto, spec_to_proto
from gateway.transport.reservation_convert import reservation_from_proto, reservation_to_proto

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
FILE = """\
apiVersion: fedgate.io/v1
kind: Reservation
metadata: {name: sft-sprint, project: llama-sft}
spec:
  resources: {capability: {min_memory_gib: 64, stacks: [cann]}, cards: 16}
  start: +2h
  end: +12h
  sites: [centre-a, centre-b]
  maxSites: 2
"""


def test_a_file_with_relative_times_counts_the_start_from_now_and_the_end_from_the_start() -> None:
    request = parse_reservation(FILE, "r.yaml", default_tenant="deepsea-ai", now=NOW)
    assert (request.tenant, request.project, request.name) == ("deepsea-ai", "llama-sft", "sft-sprint")
    assert request.resources == Resources("", Capability(64, 0.0, ("cann",)), 16)
    assert (request.start, request.end) == (NOW + timedelta(hours=2), NOW + timedelta(hours=14))
    assert (request.sites, request.max_sites) == (("centre-a", "centre-b"), 2)
    assert parse_reservation(dump_yaml(request_to_dict(request)), now=NOW) == request


def test_a_bad_time_names_the_line_and_the_fix() -> None:
    with pytest.raises(ConfigError) as bad:
        parse_reservation(FILE.replace("end: +12h", "end: tomorrow"), "r.yaml", now=NOW)
    assert "r.yaml:7" in bad.value.message and "ISO-8601" in bad.value.message
    with pytest.raises(ConfigError) as unknown:
        parse_reservation(FILE.replace("maxSites: 2", "max_sites: 2"), "r.yaml", now=NOW)
    assert "max_sites" in unknown.value.message


def test_times_need_a_zone() -> None:
    assert parse_time("2026-12-01T10:00:00+08:00", NOW) == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert parse_time("2026-12-01T10:00:00Z", NOW) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(InvalidArgument, match="no time zone"):
        parse_time("2026-12-01T10:00:00", NOW)


def test_a_reservation_survives_the_contract_both_ways() -> None:
    request = ReservationRequest(
        "deepsea-ai", "llama-sft", Resources("ascend-910b", None, 12), NOW, NOW + timedelta(hours=3), "x", ("a",), 2
    )
    parts = (
        ReservationPart("a", "ascend-910b", 8, ReservationState.REFUSED, "site policy: no"),
        ReservationPart("b", "ascend-910b", 12, ReservationState.CONFIRMED),
    )
    reservation = Reservation(
        "book:1", request, ReservationState.CONFIRMED, NOW, NOW, parts, (Reason("site", "CONFIRMED", "ok"),)
    )
    assert reservation_from_proto(reservation_to_proto(reservation)) == reservation


def test_a_job_names_its_reservation_in_yaml_and_on_the_wire() -> None:
    text = """\
apiVersion: fedgate.io/v1
kind: Job
metadata: {tenant: deepsea-ai, project: llama-sft}
spec:
  resources: {class: ascend-910b, cards: 4}
  runs: [{command: [python, train.py]}]
  reservation: book:18c1f2a3b4c5d
"""
    spec = parse_job_spec(text)
    assert spec.reservation == "book:18c1f2a3b4c5d"
    assert parse_job_spec(dump_yaml(spec_to_dict(spec))) == spec
    assert spec_from_proto(spec_to_proto(spec)) == spec
    with pytest.raises(ConfigError, match="reservation"):
        parse_job_spec(text.replace("book:18c1f2a3b4c5d", "gang:1"))


def test_the_example_reservation_parses() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "reservations" / "sft-sprint.yaml"
    request = parse_reservation(example, now=NOW)
    assert (request.project, request.resources.cards, request.max_sites) == ("llama-sft", 16, 2)
    assert request.end - request.start == timedelta(hours=12)
