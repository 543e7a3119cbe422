"""The policy language as admins meet it: every class of bad input refused naming file and line, the JSON Schema
and the README's key reference generated from the model (and never drifting from it), and `policy diff`."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from fedgate.common.yaml import DEFAULT_MAX_BYTES
from gateway.app.config import REPO_POLICIES
from gateway.cli.policy import check_file, main
from gateway.errors import ConfigError
from gateway.policy import load_policy, parse_policy
from gateway.policy.diff import Change, diff_documents
from gateway.policy.model import FederationDocument, Quota
from gateway.policy.reference import reference_text, schema_text
from tests.unit.policytext import error_line, refused

SOURCE = "policy.yaml"
HEADER = "apiVersion: fedgate.io/v1\nkind: Federation\nmetadata:\n  name: lang\n"


def _refused(body: str) -> ConfigError:
    return refused(HEADER + body, SOURCE)


def _line(error: ConfigError) -> int:
    return error_line(error, SOURCE)


# ---- bad input, class by class (issue 4, point 3) ----------------------------------------------------------


def test_a_tag_that_constructs_objects_is_refused_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    error = _refused(f"tenants:\n  - name: !!python/object/apply:os.system ['touch {marker}']\n")
    assert _line(error) == 6 and "tag" in error.message and "not allowed" in error.message
    assert not marker.exists()


def test_a_duplicate_key_is_refused_at_the_second_naming_the_first() -> None:
    error = _refused("tenants:\n  - name: a\n    weight: 1\n    name: b\n")
    assert _line(error) == 8
    assert "duplicate key 'name'" in error.message and "line 6" in error.message


def test_an_alias_bomb_is_refused_before_any_expansion() -> None:
    lols = ['lol0: &l0 "lol"'] + [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    error = _refused("tenants:\n  - name: a\n    labels_bomb:\n" + "".join(f"      {lol}\n" for lol in lols))
    assert _line(error) == 8 and "anchor &l0 is not allowed" in error.message


def test_a_file_over_the_size_limit_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(HEADER + "# padding\n" * (DEFAULT_MAX_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: file is larger than the limit"):
        load_policy(path)
    assert check_file(path)[1].startswith(f"{path}:1: file is larger than the limit")


@pytest.mark.parametrize("word", ["NO", "no", "yes", "Yes", "on", "off", "y", "n", "NULL_ISLAND"])
def test_yaml_1_1_words_stay_strings_where_strings_are_expected(word: str) -> None:
    body = (
        f"sites:\n  - name: s\n    region: {word}\n    labels: {{country: {word}}}\n"
        f"residency:\n  - classification: personal\n    allowed:\n      {word}: [{word}]\n"
        f"rules:\n  - name: r\n    effect: deny\n    message: m\n    match: {{regions: [{word}]}}\n"
    )
    policy = parse_policy((HEADER + body).encode(), SOURCE)
    assert policy.sites["s"].region == word
    assert policy.sites["s"].labels == {"country": word}
    assert policy.residency["personal"].allowed == {word: (word,)}
    assert policy.rules[0].match.regions == (word,)


def test_a_boolean_where_a_string_is_expected_is_refused_with_the_fix() -> None:
    error = _refused("sites:\n  - name: s\n    region: true\n")
    assert _line(error) == 7 and "must be a string, got a boolean (true)" in error.message
    assert "Quote the value" in error.message


def test_an_unknown_key_names_its_line_and_the_nearest_valid_key() -> None:
    error = _refused("tenants:\n  - name: a\n    projets:\n      - name: p\n")
    assert _line(error) == 7
    assert "unknown key 'projets'" in error.message and "Did you mean 'projects'?" in error.message


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("priority_classes:\n  - {name: p, priority: '100'}\n", 6, "must be an integer"),
        ("priority_classes:\n  - {name: p, priority: 2000000}\n", 6, "at most 1000000"),
        ("tenants:\n  - name: Big_Corp\n", 6, "is not valid"),
        ("rules:\n  - {name: r, effect: maybe, message: m}\n", 6, "is not allowed"),
        ("rules:\n  - {name: r, effect: deny, message: m, match: {hours: '25:00-01:00'}}\n", 6, "is not valid"),
        ("tenants:\n  - name: a\n    quota: {share: 1.5}\n", 7, "at most 1"),
        ("tenants:\n  - name: a\n    quota: {concurrent_cards: {NVIDIA: 1}}\n", 7, "key 'NVIDIA' is not valid"),
    ],
)
def test_wrong_values_are_refused_not_coerced(body: str, line: int, words: str) -> None:
    error = _refused(body)
    assert _line(error) == line and words in error.message


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("tenants:\n  - name: a\n  - name: a\n", 7, "tenant 'a' is defined twice"),
        ("projects:\n  - name: j\n    members: [{tenant: ghost}]\n", 7, "tenant 'ghost' is not defined"),
        (
            "tenants:\n  - name: a\n    projects: [{name: p}]\n    members: [{user: u, role: member, projects: [q]}]\n",
            8,
            "project 'q' is not a project of tenant 'a'",
        ),
        (
            "priority_classes:\n  - {name: a, priority: 1, default: true}\n  - {name: b, priority: 2, default: true}\n",
            7,
            "only one priority class can be the default",
        ),
        ("rules:\n  - {name: r, effect: require, message: m}\n", 6, "a require rule needs a `require:` section"),
        ("rules:\n  - {name: r, effect: deny, message: m, match: {tenants: [ghost]}}\n", 6, "tenant 'ghost'"),
        (
            "tenants:\n  - name: a\n    projects: [{name: shared}]\nprojects:\n  - name: shared\n",
            7,
            "'shared' is also a joint project",
        ),
    ],
)
def test_references_that_do_not_resolve_are_refused_at_their_line(body: str, line: int, words: str) -> None:
    error = _refused(body)
    assert _line(error) == line and words in error.message


def test_a_second_document_is_refused() -> None:
    error = _refused("---\napiVersion: fedgate.io/v1\n")
    assert "several YAML documents" in error.message


def test_another_kind_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"accelerators\.yaml:\d+: .*'AcceleratorCatalogue' document"):
        load_policy(REPO_POLICIES / "accelerators.yaml")


# Loader gaps found while fuzzing (issue 4): each is a ConfigError with a line, never another exception.
def test_a_control_character_is_refused_with_file_and_line() -> None:
    assert _line(_refused("tenants:\n  - name: a\x00\n")) == 6


def test_an_integer_of_thousands_of_digits_is_refused_with_file_and_line() -> None:
    assert _line(_refused("priority_classes:\n  - {name: p, priority: 1" + "0" * 5000 + "}\n")) == 6


def test_a_huge_integer_where_a_number_is_expected_is_refused_with_file_and_line() -> None:
    assert _line(_refused("tenants:\n  - name: a\n    weight: 1" + "0" * 400 + "\n")) == 7


def test_a_classification_with_two_residency_entries_is_refused() -> None:
    body = "residency:\n  - {classification: personal, allowed: {a: [a]}}\n"
    body += "  - {classification: personal, allowed: {b: [b]}}\n"
    assert _line(_refused(body)) == 7


# ---- the schema and the reference, generated from the model ----------------------------------------------


def test_the_committed_json_schema_matches_the_model() -> None:
    committed = (REPO_POLICIES / "federation.schema.json").read_text()
    assert committed == schema_text(), "run: fedgate policy schema -o policies/federation.schema.json"


def test_the_schema_refuses_unknown_keys_in_every_section() -> None:
    schema = json.loads(schema_text())
    assert schema["$ref"] == "#/$defs/FederationDocument"
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())
    assert schema["$defs"]["Rule"]["properties"]["effect"]["enum"] == ["allow", "deny", "require"]
    assert schema["$defs"]["FederationDocument"]["required"] == ["apiVersion", "kind", "metadata"]


def test_the_readme_key_reference_matches_the_model() -> None:
    readme = (REPO_POLICIES / "README.md").read_text()
    start, end = "<!-- key reference: fedgate policy schema --markdown -->\n", "<!-- end of key reference -->"
    assert start in readme and end in readme
    embedded = readme.split(start, 1)[1].split(end, 1)[0]
    assert embedded.strip() == reference_text().strip(), "run: fedgate policy schema --markdown, paste it in"


def test_schema_command_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert out.read_text() == schema_text()
    assert main(["schema", "--markdown"]) == 0
    assert "#### `Rule`" in capsys.readouterr().out


# ---- diff ------------------------------------------------------------------------------------------------


def _document(path: Path) -> FederationDocument:
    document = load_policy(path).document
    assert document is not None
    return document


QUOTAS = _document(REPO_POLICIES / "examples" / "quotas.yaml")
ACCESS = _document(REPO_POLICIES / "examples" / "accelerator-access.yaml")


def _find(changes: list[Change], **where: object) -> Change:
    found = [c for c in changes if all(getattr(c, k) == v for k, v in where.items())]
    assert len(found) == 1, f"{where} in {changes}"
    return found[0]


def test_a_policy_does_not_differ_from_itself() -> None:
    assert diff_documents(QUOTAS, QUOTAS) == []


def test_quota_changes_show_old_and_new_for_whom() -> None:
    tenant = QUOTAS.tenants[0]
    project = replace(tenant.projects[0], quota=Quota(concurrent_cards={"nvidia-h100": 256, "ascend-910b": 64}))
    new = replace(QUOTAS, tenants=(replace(tenant, projects=(project, *tenant.projects[1:])), *QUOTAS.tenants[1:]))
    change = _find(diff_documents(QUOTAS, new), field="quota.concurrent_cards.nvidia-h100")
    assert (change.section, change.subject, change.change) == ("tenants", "deepsea-ai/pretrain", "changed")
    assert (change.old, change.new, change.affects) == (128, 256, "deepsea-ai/pretrain")


def test_tenants_members_and_roles_added_removed_and_changed() -> None:
    old = _document(REPO_POLICIES / "federation.yaml")
    panda = old.tenants[1]
    members = (replace(panda.members[0], role="viewer"), *panda.members[2:])  # bob demoted, carol removed
    new = replace(old, tenants=(replace(panda, members=members),))  # deepsea-ai removed
    changes = diff_documents(old, new)
    assert _find(changes, subject="deepsea-ai").change == "removed"
    bob = _find(changes, subject="panda-lm member bob")
    assert (bob.field, bob.old, bob.new, bob.affects) == ("role", "member", "viewer", "user panda-lm/bob")
    assert _find(changes, subject="panda-lm member carol").change == "removed"


def test_rules_accelerator_access_and_order() -> None:
    rule = ACCESS.rules[0]
    renamed = replace(rule, name="no-flagships", message="ask for smaller classes")
    changed = replace(rule, message="new words")
    globex = replace(ACCESS.tenants[0], accelerators=None)
    new = replace(ACCESS, rules=(changed,), tenants=(globex, *ACCESS.tenants[1:]))
    changes = diff_documents(ACCESS, new)
    message = _find(changes, section="rules", field="message")
    assert message.new == "new words" and "projects interns" in message.affects
    access = _find(changes, subject="globex-labs", field="accelerators.deny")
    assert access.old == ["nvidia-h100", "nvidia-h200", "nvidia-a100"] and access.new is None
    both = replace(ACCESS, rules=(rule, renamed))
    swapped = replace(ACCESS, rules=(renamed, rule))
    assert _find(diff_documents(both, swapped), change="reordered").new == ["no-flagships", rule.name]


def test_residency_sites_and_priority_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_path = REPO_POLICIES / "examples" / "time-windows.yaml"
    new_path = tmp_path / "new.yaml"
    text = old_path.read_text().replace("{name: urgent, priority: 100}", "{name: urgent, priority: 90}")
    text = text.replace("  - {name: beijing, region: cn-north}\n", "")
    new_path.write_text(text + "residency:\n  - {classification: personal, allowed: {'*': [cn-east]}}\n")
    assert main(["diff", str(old_path), str(new_path), "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {
        "section": "priority_classes",
        "subject": "urgent",
        "change": "changed",
        "field": "priority",
        "old": 100,
        "new": 90,
        "affects": "jobs of priority class urgent",
    } in rows
    assert any(r["section"] == "sites" and r["change"] == "removed" and r["subject"] == "beijing" for r in rows)
    assert any(r["section"] == "residency" and r["change"] == "added" for r in rows)
    assert main(["diff", str(old_path), str(old_path)]) == 0
    assert "no differences" in capsys.readouterr().out
