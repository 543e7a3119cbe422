"""The one YAML dialect of fedgate: every file the gateway and the agent read goes through `load_yaml`.

Owns: turning YAML text into plain Python data (dict, list, str, int, float, bool, None) under one strict
dialect, the same on both sides of the federation, and remembering the line of every key so that schema errors
can name file, line and fix. The dialect:
- only `true` and `false` are booleans; `True`, `NO`, `yes`, `on`, `y` stay strings (YAML 1.1 surprises);
- only `~`, `null` (any case) and an empty value are null;
- integers are plain decimal without leading zeros (`0`, `12`, `-3`); `010`, `0o17`, `0x1F`, `1_000` and `1:30`
  stay strings, so `zone: 0700` is the text an operator wrote and a typed reader refuses `cards: 0x10` naming
  file and line;
- floats have a decimal point (`1.5`, `.5`, `2.`, `1.0e3`); `1e3`, `.inf`, `.nan` stay strings;
- no timestamps, no sexagesimal numbers, no `<<` merges (a plain key);
- refused with file and line: anchors and aliases, duplicate keys, non-string keys, tags beyond the core
  schema, several documents, integers of more than MAX_INT_DIGITS characters, nesting deeper than Python's
  recursion limit, text that is not UTF-8, files over `max_bytes` (1 MiB by default, read bounded).
Errors are raised as the caller's own config error class (`error=`), so each package keeps one error base.
Typed reading of fields lives in `fedgate.common.fields`. It knows no schema and imports neither side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

import yaml
import yaml.reader
from yaml.composer import Composer, ComposerError
from yaml.constructor import BaseConstructor, ConstructorError
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

KeyPath = tuple[str | int, ...]


class ConfigErrorType(Protocol):
    """The caller's config error class: `gateway.errors.ConfigError` or `agents.errors.ConfigError`."""

    def __call__(self, message: str, *, metadata: dict[str, str]) -> Exception: ...


DEFAULT_MAX_BYTES = 1 << 20
MAX_INT_DIGITS = 30  # no count, size or duration in a config needs more; int() of thousands of digits is refused

_TAG = "tag:yaml.org,2002:"
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_BOOL = re.compile(r"^(?:true|false)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")


class _Resolver(BaseResolver):
    """null, true/false, plain decimal integers, floats with a decimal point. Everything else is a string."""

    yaml_implicit_resolvers: dict[Any, Any] = {}


_Resolver.add_implicit_resolver(_TAG + "null", _NULL, ["~", "n", "N", ""])
_Resolver.add_implicit_resolver(_TAG + "bool", _BOOL, list("tf"))
# Integers before floats: the resolver takes the first pattern that matches.
_Resolver.add_implicit_resolver(_TAG + "int", _INT, list("-+0123456789"))
_Resolver.add_implicit_resolver(_TAG + "float", _FLOAT, list("-+.0123456789"))


class _StrictLoader(Reader, Scanner, Parser, Composer, BaseConstructor, _Resolver):
    """Composes without anchors or aliases and builds plain data only; any non-core tag is refused."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        BaseConstructor.__init__(self)
        _Resolver.__init__(self)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        mark = cast(Mark, event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            raise ComposerError(None, None, f"alias *{event.anchor} is not allowed: write the value out", mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise ComposerError(None, None, f"anchor &{anchor} is not allowed: write each value out", mark)
        return super().compose_node(parent, index)

    def construct_str(self, node: ScalarNode) -> str:
        return self.construct_scalar(node)

    def construct_null(self, node: ScalarNode) -> None:
        return None

    def construct_bool(self, node: ScalarNode) -> bool:
        value = self.construct_scalar(node)
        if not _BOOL.fullmatch(value):
            raise ConstructorError(None, None, f"{value!r} is not a boolean: write true or false", node.start_mark)
        return value == "true"

    def construct_int(self, node: ScalarNode) -> int:
        value = self.construct_scalar(node)
        if not _INT.fullmatch(value):
            raise ConstructorError(
                None, None, f"{value!r} is not an integer: write it in plain decimal digits", node.start_mark
            )
        if len(value) > MAX_INT_DIGITS:
            raise ConstructorError(
                None, None, f"an integer of {len(value)} digits is not a sensible value", node.start_mark
            )
        return int(value, 10)

    def construct_float(self, node: ScalarNode) -> float:
        value = self.construct_scalar(node)
        if not _FLOAT.fullmatch(value):
            raise ConstructorError(
                None, None, f"{value!r} is not a number: write digits with a decimal point", node.start_mark
            )
        return float(value)

    def construct_seq(self, node: SequenceNode) -> list[Any]:
        return [self.construct_object(child, deep=True) for child in node.value]

    def construct_map(self, node: MappingNode) -> dict[str, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                problem = (
                    f"key {key_node.value} is not a string: quote it ('{key_node.value}':)"
                    if isinstance(key_node, ScalarNode)
                    else "complex keys are not allowed: use a plain string key"
                )
                raise ConstructorError(None, None, problem, key_node.start_mark)
            if key in result:
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first defined on line {first_line[key]}): keep only one",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
            result[key] = self.construct_object(value_node, deep=True)
        return result

    def construct_unknown(self, node: Node) -> Any:
        raise ConstructorError(
            None, None, f"tag {node.tag} is not allowed: remove it and write plain values", node.start_mark
        )

    yaml_constructors: ClassVar[dict[str | None, Any]] = {
        _TAG + "str": construct_str,
        _TAG + "null": construct_null,
        _TAG + "bool": construct_bool,
        _TAG + "int": construct_int,
        _TAG + "float": construct_float,
        _TAG + "seq": construct_seq,
        _TAG + "map": construct_map,
        None: construct_unknown,
    }


def format_path(path: KeyPath) -> str:
    """`("spec", "runs", 0, "command")` -> `spec.runs[0].command`; the root is `(document)`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(document)"


@dataclass(frozen=True)
class YamlDocument:
    """Loaded data plus where each key came from. `lines` maps a key path to its 1-based line."""

    data: Any
    source: str
    lines: Mapping[KeyPath, int]
    error_type: ConfigErrorType = field(compare=False, repr=False, kw_only=True)
    """The caller's config error class; `error` builds one."""

    def line(self, path: Sequence[str | int]) -> int:
        """The line of `path`, or of its nearest existing ancestor (a missing key points at its parent)."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 1)

    def where(self, path: Sequence[str | int]) -> str:
        return f"{self.source}:{self.line(path)}"

    def error(self, path: Sequence[str | int], problem: str, fix: str = "") -> Exception:
        """A config error reading `file:line: field: problem. Fix.`, with the same facts in its metadata."""
        name = format_path(tuple(path)) if path else ""
        message = f"{self.where(path)}: {name + ': ' if name else ''}{problem}"
        if fix:
            message += f". {fix[:1].upper()}{fix[1:]}"
        metadata = {"file": self.source, "line": str(self.line(path)), "field": name}
        return self.error_type(message, metadata=metadata)


def _index_lines(node: Node, path: KeyPath, line: int, out: dict[KeyPath, int]) -> None:
    out[path] = line
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode):
                _index_lines(value_node, (*path, key_node.value), key_node.start_mark.line + 1, out)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), item.start_mark.line + 1, out)


def _read(source: str | bytes | Path, name: str, max_bytes: int, error: ConfigErrorType) -> str:
    if isinstance(source, Path):
        try:
            with source.open("rb") as handle:
                raw = handle.read(max_bytes + 1)
        except OSError as exc:
            raise error(
                f"{name}: cannot read: {exc.strerror or exc}. Check the path and its permissions",
                metadata={"file": name},
            ) from exc
    else:
        raw = source.encode() if isinstance(source, str) else source
    if len(raw) > max_bytes:
        raise error(
            f"{name}: file is larger than the limit of {max_bytes} bytes; split it or remove unused entries",
            metadata={"file": name},
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{name}: not UTF-8 text (byte {exc.start}): save the file as UTF-8", metadata={"file": name}
        ) from exc


def load_yaml(
    source: str | bytes | Path,
    source_name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    error: ConfigErrorType,
) -> YamlDocument:
    """Load one YAML document strictly.

    `source` is YAML text (str or bytes) or a `Path` to read; `source_name` names it in errors (default: the
    path, or `<yaml>`). Raises `error` (the caller's config error class) naming file and line for any refused
    input; the document's own `error()` builds the same class. An empty document loads as `data=None`.
    """
    name = source_name or (str(source) if isinstance(source, Path) else "<yaml>")
    text = _read(source, name, max_bytes, error)
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _unreadable(name, text, exc, error) from exc
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(data=None, source=name, lines={(): 1}, error_type=error)
        lines: dict[KeyPath, int] = {}
        _index_lines(node, (), node.start_mark.line + 1, lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in (exc.context or ""):
            problem = "several YAML documents (---) found; put one document in each file"
        raise error(f"{name}:{line}: {problem}", metadata={"file": name, "line": str(line)}) from exc
    except yaml.reader.ReaderError as exc:
        raise _unreadable(name, text, exc, error) from exc
    except yaml.YAMLError as exc:
        raise error(f"{name}: invalid YAML: {exc}", metadata={"file": name}) from exc
    except RecursionError as exc:
        raise error(f"{name}: nested too deeply; flatten the structure", metadata={"file": name}) from exc
    finally:
        loader.dispose()
    return YamlDocument(data=data, source=name, lines=lines, error_type=error)


def _unreadable(name: str, text: str, exc: yaml.reader.ReaderError, error: ConfigErrorType) -> Exception:
    """A character YAML does not allow (a control character, say), located by line."""
    line = text.count("\n", 0, max(0, int(exc.position))) + 1
    return error(
        f"{name}:{line}: character {exc.character!r} is not allowed in YAML; remove it or quote it as an escape",
        metadata={"file": name, "line": str(line)},
    )


class _Dumper(yaml.SafeDumper):
    """Quotes every string that a YAML reader could read back as something else (`0e0`, `null`, `0x10`, `True`):
    this dialect's resolver, the YAML 1.2 core schema's, and (through SafeDumper itself) YAML 1.1's."""


_NON_STRING = (
    _INT,
    _FLOAT,
    _BOOL,
    _NULL,
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|True|TRUE|False|FALSE)$"),
)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    text = str.__str__(value)  # a str subclass (a reason code, a StrEnum) is written as its text
    style = "'" if text == "" or any(p.fullmatch(text) for p in _NON_STRING) else None
    return dumper.represent_scalar(_TAG + "str", text, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_multi_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """YAML that `load_yaml` reads back to equal data (block style, keys in insertion order)."""
    text: str = yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True)
    return text
