"""docs/api.md keeps up with the protos: its table of RPCs names every RPC of every service, and nothing else, so
a new RPC cannot ship without a line for a non-Python user, nor a removed one linger there."""

from __future__ import annotations

import re
from pathlib import Path

from fedgate.v1 import (
    admin_service_pb2,
    enrollment_service_pb2,
    job_service_pb2,
    reservation_service_pb2,
    site_pb2,
)

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
FILES = (admin_service_pb2, enrollment_service_pb2, job_service_pb2, reservation_service_pb2, site_pb2)


def rpcs_in_protos() -> set[str]:
    return {
        f"{service.name}.{method.name}"
        for module in FILES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }


def rpcs_in_doc() -> set[str]:
    return set(re.findall(r"^\| `(\w+\.\w+)` \|", API_DOC.read_text(), flags=re.MULTILINE))


def test_the_api_doc_lists_every_rpc_and_only_those() -> None:
    in_protos, in_doc = rpcs_in_protos(), rpcs_in_doc()
    assert in_protos - in_doc == set(), "RPCs missing from the table of docs/api.md"
    assert in_doc - in_protos == set(), "docs/api.md lists RPCs the protos do not have"


def test_the_doc_table_is_found() -> None:
    assert len(rpcs_in_doc()) >= 20
