"""The contract documents itself: every message, field, oneof, RPC, enum and enum value of proto/fedgate/v1 has
a leading comment (a client written in another language from the .proto files alone has nothing else), and the
vendored google/api protos are the locked wheel's, unchanged.

Comments are read from protoc's source info (`proto/generate.py describe`): a comment is the one right above a
declaration, not a detached one separated by a blank line.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]

# Paths into FileDescriptorProto (descriptor.proto's field numbers), as source info numbers them.
MESSAGE, ENUM, SERVICE = 4, 5, 6  # FileDescriptorProto.message_type, enum_type, service
FIELD, NESTED, NESTED_ENUM, ONEOF = 2, 3, 4, 8  # DescriptorProto.field, nested_type, enum_type, oneof_decl
VALUE, METHOD = 2, 2  # EnumDescriptorProto.value, ServiceDescriptorProto.method

Path_ = tuple[int, ...]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _enum(enum: descriptor_pb2.EnumDescriptorProto, path: Path_, name: str) -> Iterator[tuple[str, Path_]]:
    yield f"enum {name}", path
    for i, value in enumerate(enum.value):
        yield f"enum value {value.name}", (*path, VALUE, i)


def _message(message: descriptor_pb2.DescriptorProto, path: Path_, name: str) -> Iterator[tuple[str, Path_]]:
    if message.options.map_entry:
        return  # a map's entry type is the compiler's, not ours: the map field carries the comment
    yield f"message {name}", path
    for i, field in enumerate(message.field):
        yield f"field {name}.{field.name}", (*path, FIELD, i)
    for i, oneof in enumerate(message.oneof_decl):
        if not oneof.name.startswith("_"):  # proto3 `optional` makes a synthetic oneof
            yield f"oneof {name}.{oneof.name}", (*path, ONEOF, i)
    for i, nested in enumerate(message.nested_type):
        yield from _message(nested, (*path, NESTED, i), f"{name}.{nested.name}")
    for i, enum in enumerate(message.enum_type):
        yield from _enum(enum, (*path, NESTED_ENUM, i), f"{name}.{enum.name}")


def declarations(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[str, Path_]]:
    """Every declaration of a file that must carry a comment, with its source-info path."""
    for i, message in enumerate(file.message_type):
        yield from _message(message, (MESSAGE, i), message.name)
    for i, enum in enumerate(file.enum_type):
        yield from _enum(enum, (ENUM, i), enum.name)
    for i, service in enumerate(file.service):
        yield f"service {service.name}", (SERVICE, i)
        for j, method in enumerate(service.method):
            yield f"rpc {service.name}.{method.name}", (SERVICE, i, METHOD, j)


def uncommented(files: descriptor_pb2.FileDescriptorSet) -> list[str]:
    """`file:line: what` for every declaration without a leading comment."""
    missing = []
    for file in files.file:
        comments = {tuple(loc.path): loc for loc in file.source_code_info.location}
        for what, path in declarations(file):
            location = comments.get(path)
            if location is None or not location.leading_comments.strip():
                line = location.span[0] + 1 if location is not None else 0
                missing.append(f"{file.name}:{line}: {what}")
    return missing


def test_every_declaration_of_the_contract_is_commented() -> None:
    files = _generator().describe()
    assert len(files.file) >= 7
    missing = uncommented(files)
    assert not missing, (
        f"{len(missing)} declarations have no comment (say what it means, its unit, default, limit and who sets "
        "it, in a comment right above it):\n" + "\n".join(missing)
    )


BAD_PROTO = """syntax = "proto3";

package fedgate.v1;

// A documented message.
message Documented {
  // A documented field.
  string name = 1;
  string bare_field = 2;
}

message BareMessage {
  // Documented.
  uint32 count = 1;
}

// A documented enum.
enum Colour {
  // Documented.
  COLOUR_UNSPECIFIED = 0;
  COLOUR_RED = 1;
}

// Detached: a blank line separates it from the service, so it documents nothing.

service BareService {
  rpc Bare(Documented) returns (BareMessage);
}
"""


def test_the_check_names_every_uncommented_declaration(tmp_path: Path) -> None:
    # The check itself must be able to fail: a proto with one gap of each kind is reported gap by gap.
    (tmp_path / "fedgate" / "v1").mkdir(parents=True)
    (tmp_path / "fedgate" / "v1" / "bad.proto").write_text(BAD_PROTO)
    missing = uncommented(_generator().describe(tmp_path))
    assert missing == [
        "fedgate/v1/bad.proto:9: field Documented.bare_field",
        "fedgate/v1/bad.proto:12: message BareMessage",
        "fedgate/v1/bad.proto:21: enum value COLOUR_RED",
        "fedgate/v1/bad.proto:26: service BareService",
        "fedgate/v1/bad.proto:27: rpc BareService.Bare",
    ]


def test_the_vendored_google_protos_are_the_locked_wheels() -> None:
    import google.api

    wheel = Path(next(iter(google.api.__path__)))
    vendored = sorted((ROOT / "proto" / "google" / "api").glob("*.proto"))
    assert [p.name for p in vendored] == ["field_behavior.proto"]
    for path in vendored:
        assert path.read_bytes() == (wheel / path.name).read_bytes(), (
            f"proto/google/api/{path.name} differs from googleapis-common-protos' copy: copy it again from the wheel"
        )
