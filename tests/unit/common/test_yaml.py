"""The one YAML dialect (fedgate.common.yaml) and typed field reads: each rule, each refused input, file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedgate.common import yaml as dialect
from fedgate.common.fields import MISSING, FieldReader
from fedgate.common.sections import Section
from fedgate.common.yaml import DEFAULT_MAX_BYTES, YamlDocument, dump_yaml, format_path


class ConfigError(Exception):
    """Stands for each side's own config error class: the loader raises whatever class it is given."""

    def __init__(self, message: str, *, metadata: dict[str, str]) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = metadata


def load_yaml(source: str | bytes | Path, source_name: str | None = None, max_bytes: int = 1 << 20) -> YamlDocument:
    return dialect.load_yaml(source, source_name, max_bytes, error=ConfigError)


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


# The dialect, one rule a row: what an operator writes, and what both the gateway and the agent read.
DIALECT = [
    # booleans: only true and false
    ("true", True),
    ("false", False),
    ("True", "True"),
    ("FALSE", "FALSE"),
    ("yes", "yes"),
    ("NO", "NO"),
    ("on", "on"),
    # null
    ("~", None),
    ("null", None),
    ("NULL", None),
    ("", None),
    # integers: plain decimal only
    ("12", 12),
    ("-3", -3),
    ("+4", 4),
    ("0", 0),
    ("0755", "0755"),  # no octal surprise and no silent decimal either: `zone: 0700` is text
    ("0o17", "0o17"),
    ("0x1F", "0x1F"),
    ("1_000", "1_000"),
    ("1:30", "1:30"),  # no sexagesimal numbers
    # floats: a decimal point
    ("1.5", 1.5),
    ("-.5", -0.5),
    ("2.", 2.0),
    ("1.0e3", 1000.0),
    ("1e3", "1e3"),
    ("01.5", "01.5"),
    (".inf", ".inf"),
    (".nan", ".nan"),
    # no timestamps, quoting always wins
    ("2024-01-01", "2024-01-01"),
    ("'12'", "12"),
    ('"true"', "true"),
    ("!!str 12", "12"),
]


@pytest.mark.parametrize(("text", "value"), DIALECT)
def test_scalars_follow_the_one_dialect(text: str, value: object) -> None:
    assert load_yaml(f"v: {text}\n").data == {"v": value}


@pytest.mark.parametrize(("text", "value"), DIALECT)
def test_dumped_data_reads_back_equal(text: str, value: object) -> None:
    assert load_yaml(dump_yaml({"v": value})).data == {"v": value}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("!!int 0x10", "'0x10' is not an integer: write it in plain decimal digits"),
        ("!!bool yes", "'yes' is not a boolean: write true or false"),
        ("!!float 1e3", "'1e3' is not a number"),
        ("1" * 31, "an integer of 31 digits"),
    ],
)
def test_explicit_tags_cannot_bring_the_surprises_back(text: str, problem: str) -> None:
    error = _refused(f"a: 1\nv: {text}\n")
    assert error.message.startswith("f.yaml:2: ") and problem in error.message


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


def test_default_size_cap_is_one_mebibyte_on_both_sides() -> None:
    assert DEFAULT_MAX_BYTES == 1 << 20
    just_under = "a: " + "x" * (DEFAULT_MAX_BYTES - 4) + "\n"
    assert len(just_under.encode()) == DEFAULT_MAX_BYTES
    assert load_yaml(just_under).data is not None
    assert "larger than the limit of 1048576 bytes" in _refused(just_under + "b: 1\n").message


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
    assert isinstance(error, ConfigError)
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


@pytest.mark.parametrize("written", ["0x10", "010", "1_000", "0o7"])
def test_a_number_the_dialect_keeps_as_text_is_refused_with_the_decimal_fix(written: str) -> None:
    with pytest.raises(ConfigError, match=r"^f\.yaml:2: spec\.cards: must be an integer.*plain decimal number"):
        _fields(f"spec:\n  cards: {written}\n").integer(("spec", "cards"))


# ---- sections (a mapping that refuses the keys nobody read) -------------------------------------------------


def test_section_reads_typed_values_and_refuses_unread_keys_at_their_line() -> None:
    root = Section(load_yaml("site: a\npools:\n  - {class: x, cards: 2}\n  - class: y\n    cardz: 3\n", "f.yaml"))
    assert root.text("site") == "a"
    first, second = root.sections("pools")
    assert (first.text("class"), first.integer("cards")) == ("x", 2)
    assert second.text("class") == "y" and second.integer("cards", 1) == 1
    with pytest.raises(ConfigError) as refused:
        second.finish()
    assert refused.value.message.startswith("f.yaml:5: unknown key 'cardz' in pools[1]; did you mean 'cards'?")
    assert refused.value.metadata == {"file": "f.yaml", "line": "5", "field": "pools[1]"}


def test_section_names_the_line_of_a_bad_list_item() -> None:
    root = Section(load_yaml("tenants:\n  - a\n  - 7\n", "f.yaml"))
    with pytest.raises(ConfigError, match=r"^f\.yaml:3: tenants\[1\] must be a string, got an integer \(7\)"):
        root.strings("tenants")


def test_an_empty_file_is_not_a_section() -> None:
    with pytest.raises(ConfigError, match=r"^f\.yaml:1: the file must be a mapping of keys to values, got empty"):
        Section(load_yaml("# nothing\n", "f.yaml"))


def test_each_side_gets_its_own_config_error_class_with_file_and_line() -> None:
    from agents.errors import AgentError
    from agents.errors import ConfigError as AgentConfigError
    from gateway.errors import ConfigError as GatewayConfigError
    from gateway.errors import GatewayError

    for error_class, base in ((GatewayConfigError, GatewayError), (AgentConfigError, AgentError)):
        with pytest.raises(base) as refused:
            dialect.load_yaml("a: 1\na: 2\n", "f.yaml", error=error_class)
        assert isinstance(refused.value, error_class) and refused.value.reason == "INVALID_CONFIG"
        assert refused.value.metadata == {"file": "f.yaml", "line": "2"}
