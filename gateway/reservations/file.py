"""The reservation file format (`apiVersion: fedgate.io/v1`, `kind: Reservation`) and window times.

    apiVersion: fedgate.io/v1
    kind: Reservation
    metadata: {name: sft-sprint, tenant: deepsea-ai, project: llama-sft}
    spec:
      resources: {class: ascend-910b, cards: 16}     # or capability: {min_memory_gib: 64, stacks: [cann]}
      start: 2026-12-01T08:00:00Z                     # or +2h (from now)
      end: 2026-12-01T20:00:00Z                       # or +12h (after the start)
      sites: [centre-a, centre-b]                     # optional: only these
      maxSites: 2                                     # optional: split over at most 2 sites

Owns: parsing such a file strictly into a `ReservationRequest` (unknown keys, wrong types and bad times
refused with file, line and fix), the inverse `request_to_dict`, and `parse_time` for the CLI's --start and
--end. It does not check the request against the federation or the clock's rules (`gateway.reservations.book`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedgate.common.fields import FieldReader
from fedgate.common.yaml import load_yaml
from gateway.errors import ConfigError, InvalidArgument
from gateway.jobs.model import JobSpec
from gateway.jobs.specfile import API_VERSION, parse_duration, read_resources, spec_to_dict
from gateway.jobs.validate import NAME, NAME_HINT
from gateway.reservations.model import MAX_SITES, ReservationRequest

KIND = "Reservation"
TIME_HINT = "write an ISO-8601 time with a zone (2026-12-01T08:00:00Z) or +DURATION (+2h, +1d)"
_TOP = ("apiVersion", "kind", "metadata", "spec")
_METADATA = ("name", "tenant", "project")
_SPEC = ("resources", "start", "end", "sites", "maxSites")


def parse_time(text: str, base: datetime) -> datetime:
    """An aware time: ISO-8601 with a zone (`Z` or `+08:00`), or `+DURATION` after `base`."""
    value = text.strip()
    if value.startswith("+"):
        return base + parse_duration(value[1:])
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"{text!r} is not a time: {TIME_HINT}", reason="BAD_TIME") from None
    if moment.tzinfo is None:
        raise InvalidArgument(
            f"{text!r} has no time zone: add Z for UTC or an offset such as +08:00", reason="BAD_TIME"
        )
    return moment.astimezone(UTC)


def parse_reservation(
    source: str | bytes | Path, source_name: str | None = None, *, default_tenant: str = "", now: datetime
) -> ReservationRequest:
    """Parse reservation YAML. Relative times count from `now` (start) and from the start (end)."""
    fields = FieldReader(load_yaml(source, source_name or "<reservation>", error=ConfigError))
    fields.document(API_VERSION, KIND, _TOP, "start from the example in `fedgate reservation create --help`")
    fields.mapping(("metadata",), allowed=_METADATA, required=("project",))
    tenant = fields.string(("metadata", "tenant"), default=default_tenant, pattern=NAME, hint=NAME_HINT)
    project = fields.string(("metadata", "project"), pattern=NAME, hint=NAME_HINT)
    name = fields.string(("metadata", "name"), default="", pattern=NAME, hint=NAME_HINT)
    fields.mapping(("spec",), allowed=_SPEC, required=("resources", "start", "end"))
    resources = read_resources(fields, ("spec", "resources"))
    start = _time(fields, "start", now)
    end = _time(fields, "end", start)
    return ReservationRequest(
        tenant=tenant,
        project=project,
        name=name,
        resources=resources,
        start=start,
        end=end,
        sites=fields.strings(("spec", "sites"), pattern=NAME, hint="use site names as `fedgate sites` shows them"),
        max_sites=fields.integer(("spec", "maxSites"), default=1, minimum=1, maximum=MAX_SITES),
    )


def _time(fields: FieldReader, key: str, base: datetime) -> datetime:
    text = fields.string(("spec", key), hint=TIME_HINT)
    try:
        return parse_time(text, base)
    except InvalidArgument as exc:
        raise fields.error(("spec", key), exc.message, TIME_HINT) from None


def request_to_dict(request: ReservationRequest) -> dict[str, Any]:
    """The file form of a request; `parse_reservation` of its YAML gives the request back."""
    metadata = {"tenant": request.tenant, "project": request.project}
    if request.name:
        metadata = {"name": request.name, **metadata}
    resources = spec_to_dict(JobSpec(request.tenant, request.project, request.resources, ()))["spec"]["resources"]
    spec: dict[str, Any] = {
        "resources": resources,
        "start": request.start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "end": request.end.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    if request.sites:
        spec["sites"] = list(request.sites)
    if request.max_sites > 1:
        spec["maxSites"] = request.max_sites
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
