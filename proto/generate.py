"""Generate the Python code of the contract beside the protos (`make proto`).

Owns: running grpc_tools.protoc over proto/fedgate/v1/*.proto, into a chosen directory (`generate`) or into a
descriptor set with the comments kept (`describe`). The drift test calls `generate()` into a temporary directory
and compares the result with what is checked in; the contract's documentation test reads `describe()`.
google/api/field_behavior.proto is found beside the protos (vendored from the googleapis-common-protos wheel,
whose generated module the code imports at run time), so nothing is fetched.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = Path("fedgate") / "v1"


def _protoc(args: list[str]) -> None:
    import grpc_tools
    from grpc_tools import protoc

    well_known = str(Path(grpc_tools.__file__).parent / "_proto")
    if protoc.main(["protoc", f"-I{well_known}", *args]) != 0:
        raise SystemExit("protoc failed: fix the .proto files named above, then run `make proto` again")


def _protos(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Generate *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto under `out_root/fedgate/v1`."""
    (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    protos = _protos(PROTO_ROOT)
    outputs = [f"--python_out={out_root}", f"--pyi_out={out_root}", f"--grpc_python_out={out_root}"]
    _protoc([f"-I{PROTO_ROOT}", *outputs, *protos])
    return sorted((out_root / PACKAGE_DIR).glob("*_pb2*.py*"))


def describe(root: Path = PROTO_ROOT) -> descriptor_pb2.FileDescriptorSet:
    """The descriptors of `root/fedgate/v1/*.proto` with their source info (comments and spans), imports left
    out. `root` may be another directory laid out the same way (a test's deliberately bad proto); the vendored
    google/api protos stay importable from it."""
    with tempfile.TemporaryDirectory() as out:
        target = Path(out) / "contract.binpb"
        includes = [f"-I{root}"] + ([f"-I{PROTO_ROOT}"] if root != PROTO_ROOT else [])
        _protoc([*includes, "--include_source_info", f"--descriptor_set_out={target}", *_protos(root)])
        return descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes())


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT
    for path in generate(out):
        print(path)
