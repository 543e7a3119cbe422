"""Properties of the policy language: any valid document survives a round trip through YAML unchanged, and no
corruption of a valid file gets past the loader as anything but a ConfigError naming file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedgate.common.yaml import dump_yaml
from gateway.app.config import REPO_POLICIES
from gateway.errors import ConfigError
from gateway.policy import parse_policy
from gateway.policy.model import (
    AcceleratorAccess,
    FederationDocument,
    JointMember,
    JointProject,
    Match,
    MemberSpec,
    Metadata,
    PriorityClass,
    ProjectSpec,
    Quota,
    Requirement,
    Residency,
    Rule,
    SiteSpec,
    TenantSpec,
)
from gateway.policy.schema import to_data

SETTINGS = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SOURCE = "fuzzed.yaml"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Valid names, edge cases included (one character, digits only, '-' inside, 61 characters: 63 with a prefix);
# drawing from a list keeps generation cheap, and names are not what these properties are about.
NAMES = ["a", "0", "x-1", "no", "yes", "on", "null", "deepsea-ai", "panda-lm", "h100", "eval", "b" * 61]
names = st.sampled_from(NAMES + [f"n{i}-{j}" for i in range(4) for j in range(4)])
# Printable text of every script, as admins write it; no control characters (the loader refuses those).
text = st.text(st.characters(categories=("L", "N", "P", "S", "Zs")), max_size=12)
# Strings a YAML 1.1 loader would turn into something else: all must come back as the same strings.
tricky = st.sampled_from(["NO", "no", "yes", "on", "off", "y", "n", "~", "null", "0x1f", "1e3", "0o17", "12:30"])
regions = tricky | st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=8)
classes = st.sampled_from(["*", "nvidia-h100", "ascend-910b", "hygon-k100"])
numbers = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
small_tuple = st.lists(names, max_size=3, unique=True).map(tuple)
labels = st.dictionaries(text.filter(bool), text | tricky, max_size=3)


def _hours() -> st.SearchStrategy[str]:
    time = st.tuples(st.integers(0, 23), st.integers(0, 59)).map(lambda t: f"{t[0]:02d}:{t[1]:02d}")
    return st.tuples(time, time).map("-".join)


quotas = st.builds(
    Quota,
    concurrent_cards=st.dictionaries(classes, st.integers(0, 10_000), max_size=3),
    concurrent_pflops=st.none() | numbers,
    card_hours=st.none() | numbers,
    period=st.sampled_from(["day", "week", "month"]),
    share=st.none() | st.floats(0, 1),
)


@st.composite
def tenants(draw: st.DrawFn, name: str) -> TenantSpec:
    projects = draw(st.lists(names.map(lambda n: f"p-{n}"), max_size=3, unique=True))
    users = draw(st.lists(names, max_size=3, unique=True))
    members = tuple(
        MemberSpec(
            user,
            draw(st.sampled_from(["member", "viewer"])),
            tuple(draw(st.lists(st.sampled_from(projects), unique=True))) if projects else (),
        )
        for user in users
    )
    return TenantSpec(
        name=name,
        display_name=draw(text),
        organisation=draw(text),
        weight=draw(numbers),
        projects=tuple(ProjectSpec(p, draw(numbers), draw(st.none() | quotas)) for p in projects),
        members=members,
        quota=draw(st.none() | quotas),
        accelerators=draw(st.none() | st.builds(AcceleratorAccess, small_tuple, small_tuple)),
    )


@st.composite
def rules(draw: st.DrawFn, name: str, tenant_names: list[str]) -> Rule:
    effect = draw(st.sampled_from(["allow", "deny", "require"]))
    match = Match(
        tenants=tuple(draw(st.lists(st.sampled_from(tenant_names), unique=True))) if tenant_names else (),
        projects=draw(small_tuple),
        classes=draw(small_tuple),
        regions=tuple(draw(st.lists(regions, max_size=2, unique=True))),
        classifications=draw(small_tuple),
        labels=draw(labels),
        min_cards=draw(st.none() | st.integers(1, 4096)),
        max_cards=draw(st.none() | st.integers(1, 4096)),
        hours=draw(st.just("") | _hours()),
        days=tuple(draw(st.lists(st.sampled_from(DAYS), unique=True))),
    )
    requirement = None
    if effect == "require":
        requirement = Requirement(
            labels=draw(small_tuple),
            max_runtime_s=draw(st.none() | st.integers(1, 10**7)),
            priority_classes=draw(small_tuple),
            classification=draw(st.booleans()),
        )
    return Rule(name, effect, draw(text.filter(bool)), match, requirement)  # type: ignore[arg-type]


@st.composite
def documents(draw: st.DrawFn) -> FederationDocument:
    tenant_names = draw(st.lists(names, max_size=3, unique=True))
    joint = [
        JointProject(
            name=f"j-{name}",
            description=draw(text),
            members=tuple(
                JointMember(t, draw(st.just("") | names), draw(st.sampled_from(["member", "viewer"])))
                for t in draw(st.lists(st.sampled_from(tenant_names), unique=True))
            )
            if tenant_names
            else (),
            quota=draw(st.none() | quotas),
            weight=draw(numbers),
        )
        for name in draw(st.lists(names, max_size=2, unique=True))
    ]
    priority_names = draw(st.lists(names, max_size=3, unique=True))
    default = draw(st.none() | st.sampled_from(priority_names)) if priority_names else None
    return FederationDocument(
        api_version="fedgate.io/v1",
        kind="Federation",
        metadata=Metadata(draw(names), draw(text)),
        tenants=tuple(draw(tenants(name)) for name in tenant_names),
        projects=tuple(joint),
        priority_classes=tuple(
            PriorityClass(
                n, draw(st.integers(0, 1_000_000)), draw(st.booleans()), n == default, draw(st.integers(1, 3600))
            )
            for n in priority_names
        ),
        sites=tuple(
            SiteSpec(
                n,
                draw(regions),
                draw(text),
                draw(labels),
                draw(st.dictionaries(classes, numbers, max_size=2)),
                draw(numbers),
            )
            for n in draw(st.lists(names, max_size=3, unique=True))
        ),
        residency=tuple(
            Residency(c, draw(st.dictionaries(regions | st.just("*"), st.lists(regions).map(tuple))), draw(text))
            for c in draw(st.lists(names, max_size=2, unique=True))
        ),
        rules=tuple(draw(rules(n, tenant_names)) for n in draw(st.lists(names, max_size=4, unique=True))),
    )


@SETTINGS
@given(documents())
def test_a_valid_document_round_trips_through_yaml_unchanged(doc: FederationDocument) -> None:
    raw = dump_yaml(to_data(doc)).encode()
    policy = parse_policy(raw, SOURCE)
    assert policy.document == doc
    assert to_data(policy.document) == to_data(doc)
    # The version is the hash of the bytes: the same bytes anywhere, and any edit (even a comment) is new.
    assert policy.version == parse_policy(raw, "elsewhere.yaml").version
    assert policy.version != parse_policy(raw + b"# a comment\n", SOURCE).version


# ---- corruptions ------------------------------------------------------------------------------------------

VALID_FILES = [
    p
    for p in [REPO_POLICIES / "federation.yaml", *sorted((REPO_POLICIES / "examples").glob("*.yaml"))]
    if p.read_text().count("\nkind: Federation\n") == 1
]
VALID_TEXTS = [p.read_text() for p in VALID_FILES]
# What an edit may put in: YAML's structural characters, letters, digits, a tab, a newline, a wide letter.
CHARACTERS = st.sampled_from(list(":-[]{}&*!|>'\"#%@`,?\t\n ") + list("ayN019") + ["é", "中"])
VALUES = st.sampled_from(
    ["123", "-1", "1.5", "true", "null", "[a, b]", "{x: 1}", "'text'", "NO", ".nan", "1e999", "*a", "&a 1"]
)
MESSAGE = re.compile(rf"^{re.escape(SOURCE)}:\d+: \S")


def _lines(text_form: str) -> list[str]:
    return text_form.splitlines(keepends=True)


@st.composite
def corruptions(draw: st.DrawFn) -> str:
    original = draw(st.sampled_from(VALID_TEXTS))
    kind = draw(
        st.sampled_from(["flip", "insert", "delete", "drop-line", "copy-line", "value", "unknown-key", "tag", "alias"])
    )
    if kind in {"flip", "insert", "delete"}:
        at = draw(st.integers(0, len(original) - 1))
        if kind == "delete":
            return original[:at] + original[at + draw(st.integers(1, 8)) :]
        chars = "".join(draw(st.lists(CHARACTERS, min_size=1, max_size=4)))
        return original[:at] + chars + original[at + (1 if kind == "flip" else 0) :]
    lines = _lines(original)
    at = draw(st.integers(0, len(lines) - 1))
    line = lines[at]
    indent = line[: len(line) - len(line.lstrip(" -"))].replace("-", " ")
    if kind == "drop-line":
        del lines[at]
    elif kind == "copy-line":  # a key twice in one mapping, or an item twice in a list
        lines.insert(at, line)
    elif kind == "value" and ":" in line:
        lines[at] = re.sub(r":\s.*$", f": {draw(VALUES)}", line.rstrip("\n")) + "\n"
    elif kind == "unknown-key":
        lines.insert(at + 1, f"{indent}{draw(names)}: {draw(VALUES)}\n")
    elif kind == "tag":
        lines.insert(at + 1, f"{indent}payload: !!python/object/apply:os.system ['true']\n")
    elif kind == "alias":
        lines.insert(at + 1, f"{indent}extra: &anchor {draw(VALUES)}\n{indent}again: *anchor\n")
    return "".join(lines)


@settings(max_examples=200, deadline=None, database=None)
@given(corruptions())
def test_a_corrupted_file_is_valid_or_refused_with_file_and_line(corrupted: str) -> None:
    try:
        parse_policy(corrupted.encode(), SOURCE)
    except ConfigError as exc:
        assert MESSAGE.match(exc.message), exc.message
        assert exc.metadata.get("file") == SOURCE
        assert exc.metadata.get("line", "").isdigit()


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_every_shipped_policy_round_trips(path: Path) -> None:
    policy = parse_policy(path.read_bytes(), str(path))
    assert policy.document is not None
    again = parse_policy(dump_yaml(to_data(policy.document)).encode(), SOURCE)
    assert again.document == policy.document
