"""The generated code beside the protos must be exactly what `make proto` produces from them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (version,) = [p["version"] for p in lock["package"] if p["name"] == package]
    return str(version)


def test_the_generator_is_the_locked_one() -> None:
    """The stubs are compared with what the locked grpcio-tools makes: a venv that is not the lock's would
    report drift that is not there (or hide drift that is)."""
    locked = _locked_version("grpcio-tools")
    installed = importlib.metadata.version("grpcio-tools")
    assert installed == locked, (
        f"grpcio-tools {installed} is installed but uv.lock pins {locked}: "
        "rebuild the venv from the lock (`rm .venv/.installed && make venv`)"
    )


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    fresh = _generator().generate(tmp_path)  # type: ignore[attr-defined]
    assert fresh, "no code was generated"
    checked_in = sorted((ROOT / "proto" / "fedgate" / "v1").glob("*_pb2*.py*"))
    assert [p.name for p in fresh] == [p.name for p in checked_in], "generated files differ: run `make proto`"
    stale = [p.name for p, q in zip(fresh, checked_in, strict=True) if p.read_bytes() != q.read_bytes()]
    assert not stale, f"{stale} drifted from the .proto files: run `make proto` and commit the result"


def test_every_service_of_the_design_is_in_the_contract() -> None:
    from fedgate.v1 import admin_service_pb2, enrollment_service_pb2, job_service_pb2, site_pb2

    services = {
        name
        for module in (admin_service_pb2, enrollment_service_pb2, job_service_pb2, site_pb2)
        for name in module.DESCRIPTOR.services_by_name
    }
    assert services == {"JobService", "SiteService", "AdminService", "EnrollmentService"}
    jobs = job_service_pb2.DESCRIPTOR.services_by_name["JobService"]
    assert {m.name for m in jobs.methods} >= {
        "CreateJob",
        "GetJob",
        "ListJobs",
        "CancelJob",
        "WatchJob",
        "ExplainJob",
        "ListSites",
    }
