"""A strict, small YAML loader for every file the gateway reads: job specs, policies, the catalogue.

Owns: turning YAML text into plain Python data (dict, list, str, int, float, bool, None) with a YAML 1.2-like
resolver (only true/false are booleans, so `NO`, `yes`, `on` stay strings; no timestamps, no sexagesimal
numbers, no octal surprises), refusing what a hand-written config never needs (anchors and aliases, duplicate
keys, non-string keys, custom tags, several documents, files over a size limit), and remembering the line of
every key so that schema errors can name file, line and fix. Typed reading of fields lives in
`gateway.yamlfields`. It does not know any schema: callers turn the data into frozen dataclasses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

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

from gateway.errors import ConfigError

KeyPath = tuple[str | int, ...]

DEFAULT_MAX_BYTES = 1 << 20
MAX_INT_DIGITS = 30  # no count, size or duration in a config needs more; int() of thousands of digits is refused

_TAG = "tag:yaml.org,2002:"
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class _Resolver(BaseResolver):
    """YAML 1.2 core schema: null, true/false, decimal/0o/0x integers, floats. Everything else is a string."""

    yaml_implicit_resolvers: dict[Any, Any] = {}


_Resolver.add_implicit_resolver(_TAG + "null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Resolver.add_implicit_resolver(_TAG + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
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
        return self.construct_scalar(node).lower() == "true"

    def construct_int(self, node: ScalarNode) -> int:
        value = self.construct_scalar(node)
        if not _INT.match(value):
            raise ConstructorError(None, None, f"{value!r} is not an integer", node.start_mark)
        if len(value) > MAX_INT_DIGITS:
            raise ConstructorError(
                None, None, f"an integer of {len(value)} digits is not a sensible value", node.start_mark
            )
        return int(value, 0) if value[:2] in {"0o", "0x"} else int(value, 10)

    def construct_float(self, node: ScalarNode) -> float:
        value = self.construct_scalar(node)
        if not _FLOAT.match(value):
            raise ConstructorError(None, None, f"{value!r} is not a number", node.start_mark)
        lowered = value.lower()
        if lowered.endswith(".inf"):
            return float("-inf") if lowered.startswith("-") else float("inf")
        return float("nan") if lowered == ".nan" else float(value)

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

    def error(self, path: Sequence[str | int], problem: str, fix: str = "") -> ConfigError:
        """A ConfigError reading `file:line: field: problem. Fix.`, with the same facts in its metadata."""
        field = format_path(tuple(path)) if path else ""
        message = f"{self.where(path)}: {field + ': ' if field else ''}{problem}"
        if fix:
            message += f". {fix[:1].upper()}{fix[1:]}"
        metadata = {"file": self.source, "line": str(self.line(path)), "field": field}
        return ConfigError(message, metadata=metadata)


def _index_lines(node: Node, path: KeyPath, line: int, out: dict[KeyPath, int]) -> None:
    out[path] = line
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode):
                _index_lines(value_node, (*path, key_node.value), key_node.start_mark.line + 1, out)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), item.start_mark.line + 1, out)


def _read(source: str | bytes | Path, name: str, max_bytes: int) -> str:
    if isinstance(source, Path):
        try:
            with source.open("rb") as handle:
                raw = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ConfigError(
                f"{name}: cannot read: {exc.strerror or exc}. Check the path and its permissions",
                metadata={"file": name},
            ) from exc
    else:
        raw = source.encode() if isinstance(source, str) else source
    if len(raw) > max_bytes:
        raise ConfigError(
            f"{name}: file is larger than the limit of {max_bytes} bytes; split it or remove unused entries",
            metadata={"file": name},
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{name}: not UTF-8 text (byte {exc.start}): save the file as UTF-8", metadata={"file": name}
        ) from exc


def load_yaml(
    source: str | bytes | Path, source_name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> YamlDocument:
    """Load one YAML document strictly.

    `source` is YAML text (str or bytes) or a `Path` to read; `source_name` names it in errors (default: the
    path, or `<yaml>`). Raises ConfigError naming file and line for any refused input. An empty document
    loads as `data=None`.
    """
    name = source_name or (str(source) if isinstance(source, Path) else "<yaml>")
    text = _read(source, name, max_bytes)
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _unreadable(name, text, exc) from exc
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(data=None, source=name, lines={(): 1})
        lines: dict[KeyPath, int] = {}
        _index_lines(node, (), node.start_mark.line + 1, lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in (exc.context or ""):
            problem = "several YAML documents (---) found; put one document in each file"
        raise ConfigError(f"{name}:{line}: {problem}", metadata={"file": name, "line": str(line)}) from exc
    except yaml.reader.ReaderError as exc:
        raise _unreadable(name, text, exc) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML: {exc}", metadata={"file": name}) from exc
    except RecursionError as exc:
        raise ConfigError(f"{name}: nested too deeply; flatten the structure", metadata={"file": name}) from exc
    finally:
        loader.dispose()
    return YamlDocument(data=data, source=name, lines=lines)


def _unreadable(name: str, text: str, exc: yaml.reader.ReaderError) -> ConfigError:
    """A character YAML does not allow (a control character, say), located by line."""
    line = text.count("\n", 0, max(0, int(exc.position))) + 1
    return ConfigError(
        f"{name}:{line}: character {exc.character!r} is not allowed in YAML; remove it or quote it as an escape",
        metadata={"file": name, "line": str(line)},
    )


class _Dumper(yaml.SafeDumper):
    """Quotes every string that this module's resolver would read back as something else (`0e0`, `null`)."""


_NON_STRING = (_INT, _FLOAT, re.compile(r"^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE)$"))


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if value == "" or any(p.match(value) for p in _NON_STRING) else None
    return dumper.represent_scalar(_TAG + "str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """YAML that `load_yaml` reads back to equal data (block style, keys in insertion order)."""
    text: str = yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True)
    return text
