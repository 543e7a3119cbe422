"""The strict YAML loader and typed field reads: each class of refused input, with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.yamlfields import MISSING, FieldReader
from gateway.yamlload import format_path, load_yaml


def _refused(text: str | bytes, **kwargs: int) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        load_yaml(text, "f.yaml", **kwargs)
    return refused.value


def test_plain_data_loads() -> None:
    doc = load_yaml("a: 1\nb: [x, 2.5, null, true]\nc: {d: e}\n", "f.yaml")
    assert doc.data == {"a": 1, "b": ["x", 2.5, None, True], "c": {"d": "e"}}


@pytest.mark.parametrize(
    "word", ["NO", "no", "No", "yes", "Yes", "on", "off", "ON", "y", "n", "Y", "N", "Norway", "~~"]
)
def test_yaml_1_1_booleans_stay_strings(word: str) -> None:
    assert load_yaml(f"country: {word}\n").data == {"country": word}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("~", None),
        ("null", None),
        ("", None),
        ("12", 12),
        ("-3", -3),
        ("0x1F", 31),
        ("0o17", 15),
        ("0755", 755),  # YAML 1.2: decimal, not a surprise octal
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("1:30", "1:30"),  # no sexagesimal numbers
        ("2024-01-01", "2024-01-01"),  # no timestamps
        ("1_000", "1_000"),
        ("'12'", "12"),
        ('"true"', "true"),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    assert load_yaml(f"v: {text}\n").data == {"v": value}


def test_duplicate_key_is_refused_naming_both_lines() -> None:
    error = _refused("name: a\nother: 1\nname: b\n")
    assert error.message.startswith("f.yaml:3:")
    assert "duplicate key 'name'" in error.message and "line 1" in error.message
    assert error.metadata["line"] == "3"


def test_nested_duplicate_key_is_refused_at_its_line() -> None:
    assert _refused("spec:\n  cards: 1\n  runs: []\n  cards: 2\n").message.startswith("f.yaml:4:")


def test_quoted_and_plain_spellings_of_a_key_are_duplicates() -> None:
    assert "duplicate key 'a'" in _refused("a: 1\n'a': 2\n").message


@pytest.mark.parametrize(
    "text", ["base: &b {x: 1}\nother: *b\n", "a: &x 1\n", "a: *nowhere\n", "<<: &m {a: 1}\nb: 2\n"]
)
def test_anchors_and_aliases_are_refused(text: str) -> None:
    assert "is not allowed" in _refused(text).message


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    text = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n"
    assert "anchor &a" in _refused(text).message


def test_merge_key_is_just_a_string_key() -> None:
    assert load_yaml("<<: {a: 1}\n").data == {"<<": {"a": 1}}


@pytest.mark.parametrize("key", ["1", "true", "null", "1.5", "[a, b]", "{a: 1}"])
def test_non_string_keys_are_refused(key: str) -> None:
    text = f"{key}: x\n" if not key.startswith(("[", "{")) else f"? {key}\n: x\n"
    message = _refused(text).message
    assert "not a string" in message or "complex keys" in message


@pytest.mark.parametrize("text", ["a: !!binary aGk=\n", "a: !!python/object:os.system x\n", "a: !custom 1\n"])
def test_tags_beyond_the_core_schema_are_refused(text: str) -> None:
    assert "tag" in _refused(text).message


def test_oversize_text_is_refused() -> None:
    assert "larger than the limit of 64 bytes" in _refused("a: " + "x" * 100, max_bytes=64).message


def test_oversize_file_is_refused_without_reading_all_of_it(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * 5000)
    with pytest.raises(ConfigError, match=r"big\.yaml: file is larger"):
        load_yaml(path, max_bytes=1024)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.yaml: cannot read"):
        load_yaml(tmp_path / "absent.yaml")


def test_several_documents_are_refused() -> None:
    assert "several YAML documents" in _refused("a: 1\n---\nb: 2\n").message


def test_syntax_error_names_the_line() -> None:
    assert _refused("a: 1\nb: [1, 2\nc: 3\n").message.startswith("f.yaml:")


def test_non_utf8_is_refused() -> None:
    assert "not UTF-8" in _refused(b"a: \xff\xfe\n").message


def test_empty_document_is_none() -> None:
    assert load_yaml("# only a comment\n").data is None


def test_lines_of_key_paths_and_nearest_ancestor() -> None:
    doc = load_yaml("top:\n  list:\n    - a\n    - b: 1\n  other: 2\n", "f.yaml")
    assert doc.line(("top",)) == 1
    assert doc.line(("top", "list")) == 2
    assert doc.line(("top", "list", 1, "b")) == 4
    assert doc.line(("top", "missing")) == 1
    assert doc.where(("top", "other")) == "f.yaml:5"


def test_error_reads_file_line_field_problem_and_fix() -> None:
    doc = load_yaml("spec:\n  cards: 0\n", "job.yaml")
    error = doc.error(("spec", "cards"), "must be at least 1", "set the number of cards")
    assert error.message == "job.yaml:2: spec.cards: must be at least 1. Set the number of cards"
    assert error.metadata == {"file": "job.yaml", "line": "2", "field": "spec.cards"}


def test_format_path() -> None:
    assert format_path(("spec", "runs", 0, "command")) == "spec.runs[0].command"
    assert format_path(()) == "(document)"


# ---- typed reads --------------------------------------------------------------------------------------


def _fields(text: str) -> FieldReader:
    return FieldReader(load_yaml(text, "f.yaml"))


def test_unknown_key_is_refused_with_the_nearest_valid_one() -> None:
    fields = _fields("spec:\n  cards: 1\n  resorces: {}\n")
    with pytest.raises(ConfigError) as refused:
        fields.mapping(("spec",), allowed=("cards", "resources"))
    assert refused.value.message.startswith("f.yaml:3: spec.resorces: unknown key 'resorces'")
    assert "Did you mean 'resources'?" in refused.value.message


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("v: '4'\n", lambda f: f.integer(("v",))),
        ("v: true\n", lambda f: f.integer(("v",))),
        ("v: 1.5\n", lambda f: f.integer(("v",))),
        ("v: 4\n", lambda f: f.string(("v",))),
        ("v: [a]\n", lambda f: f.string(("v",))),
        ("v: x\n", lambda f: f.number(("v",))),
        ("v: .inf\n", lambda f: f.number(("v",))),
        ("v: a b\n", lambda f: f.strings(("v",))),
        ("v: [a, 1]\n", lambda f: f.strings(("v",))),
        ("v: {a: 1}\n", lambda f: f.string_map(("v",))),
        ("v: [a]\n", lambda f: f.mapping(("v",), allowed=())),
        ("v: ~\n", lambda f: f.sequence(("v",))),
    ],
)
def test_wrong_types_are_refused_not_coerced(text: str, read: object) -> None:
    with pytest.raises(ConfigError, match=r"^f\.yaml:1: v"):
        read(_fields(text))  # type: ignore[operator]


def test_missing_required_values_point_at_the_parent() -> None:
    fields = _fields("spec:\n  a: 1\n")
    with pytest.raises(ConfigError, match=r"^f\.yaml:1: spec: missing required key 'cards'"):
        fields.integer(("spec", "cards"))
    assert fields.integer(("spec", "cards"), default=3) == 3
    assert fields.value(("spec", "nothing")) is MISSING


def test_ranges_are_checked() -> None:
    fields = _fields("v: 0\n")
    with pytest.raises(ConfigError, match="at least 1"):
        fields.integer(("v",), minimum=1)
    with pytest.raises(ConfigError, match="at most -1"):
        fields.number(("v",), maximum=-1)
