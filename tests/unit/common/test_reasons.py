"""One enum of reason codes: every code the gateway and the agent give is a documented member, and the
user-facing table (docs/reasons.md) is generated from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedgate.common.reasons import ReasonCode, ReasonStage, render_markdown, render_proto

ROOT = Path(__file__).resolve().parents[3]
# Where a code is written in the source: an error's `reason`, a reason chain's `Reason(stage, code, ...)`, a
# table keyed by code, or a reference to the enum itself.
CODE_PATTERNS = (
    re.compile(r'\breason(?:: str)?\s*=\s*"([A-Z][A-Z0-9_]+)"'),
    re.compile(r'\bReason\(\s*"[a-z_]+",\s*"([A-Z][A-Z0-9_]+)"'),
    re.compile(r'\bcode\s*=\s*"([A-Z][A-Z0-9_]+)"'),
    re.compile(r'^\s+"([A-Z][A-Z0-9_]+)": grpc\.StatusCode', re.MULTILINE),
    re.compile(r"(?<!_pb2\.)\bReasonCode\.([A-Z][A-Z0-9_]+)\b"),
    # The helpers that build an error or a reason from a code: `_deny(policy, "CODE", ...)`, `_refuse("CODE", ...)`,
    # `_fail(gang, job, site, "CODE", ...)`.
    re.compile(r'\b_(?:deny|refuse|fail)\((?:[a-z_.]+,\s*)*"([A-Z][A-Z0-9_]+)"'),
)


def _codes_in_source() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for package in ("gateway", "agents"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for pattern in CODE_PATTERNS:
                for match in pattern.finditer(text):
                    found.setdefault(match.group(1), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_code_used_by_the_gateway_or_the_agent_is_a_member() -> None:
    found = _codes_in_source()
    assert len(found) > 100  # the patterns still find the codes
    unknown = {code: sorted(paths) for code, paths in found.items() if code not in ReasonCode.__members__}
    assert unknown == {}, "add these codes to fedgate.common.reasons.ReasonCode, then regenerate docs/reasons.md"


def test_the_wire_value_of_each_code_is_its_name_and_each_is_documented() -> None:
    for code in ReasonCode:
        assert code.value == code.name == f"{code}"
        assert code.kind in {"error", "chain"}
        assert code.doc.endswith(".") and "\n" not in code.doc and len(code.doc) > 20


@pytest.mark.parametrize("code", [ReasonCode.SITE_TERMS, ReasonCode.STALE_EPOCH])
def test_a_code_compares_and_hashes_as_its_string(code: ReasonCode) -> None:
    by_value = ReasonCode(code.value)  # type: ignore[call-arg]  # a look-up by value; mypy reads the members as calls
    assert code == code.value and {code.value: 1}[code] == 1 and by_value is code


def test_a_code_is_written_as_its_text_in_yaml_output() -> None:
    from fedgate.common.yaml import dump_yaml

    assert dump_yaml({"code": ReasonCode.QUOTA}) == "code: QUOTA\n"


def test_docs_reasons_md_is_current() -> None:
    written = (ROOT / "docs" / "reasons.md").read_text(encoding="utf-8")
    assert written == render_markdown(), "regenerate: python -m fedgate.common.reasons > docs/reasons.md"


def test_the_contract_enum_is_made_from_this_one_and_is_current() -> None:
    committed = (ROOT / "proto" / "fedgate" / "v1" / "reason.proto").read_text(encoding="utf-8")
    assert committed == render_proto(), (
        "run `python -m fedgate.common.reasons --proto > proto/fedgate/v1/reason.proto`, then `make proto`"
    )


def test_the_generated_enums_agree_with_reason_code_and_reason_stage_name_for_name() -> None:
    from fedgate.v1 import reason_pb2

    codes = [(v.name, v.number) for v in reason_pb2.ReasonCode.DESCRIPTOR.values]
    assert codes == [("REASON_CODE_UNSPECIFIED", 0)] + [(c.name, i) for i, c in enumerate(ReasonCode, start=1)]
    stages = [(v.name, v.number) for v in reason_pb2.ReasonStage.DESCRIPTOR.values]
    expected = [(f"REASON_STAGE_{s.name}", i) for i, s in enumerate(ReasonStage, start=1)]
    assert stages == [("REASON_STAGE_UNSPECIFIED", 0), *expected]


def test_every_stage_the_gateway_writes_is_a_member() -> None:
    import ast

    stages: dict[str, set[str]] = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Reason" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    stages.setdefault(first.value, set()).add(str(path.relative_to(ROOT)))
    assert len(stages) >= 6  # the walk still finds the reasons
    unknown = {stage: sorted(paths) for stage, paths in stages.items() if stage not in set(ReasonStage)}
    assert unknown == {}, "add these stages to fedgate.common.reasons.ReasonStage, then regenerate reason.proto"
