"""A strict YAML reader for the agent's own files, and a typed field reader that names file and line.

Owns: parsing YAML with `yaml.SafeLoader`'s safety plus these rules: duplicate keys and aliases are errors,
`<<` merge keys are plain keys (and so rejected as unknown), only `true`/`false` are booleans (`NO`, `on`
stay strings), only plain decimal numbers are numbers (`010`, `1:30`, dates stay strings). Every mapping
and list remembers its line so later validation can point at it. `Section` reads typed fields from one
mapping and rejects keys nobody asked for. It does not know what an agent config means (`agents.core.config`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml

from agents.errors import ConfigError

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_DROPPED_TAGS = {_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge"}


class LineMap(dict[Any, Any]):
    """A YAML mapping that remembers the 1-based line of itself and of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list[Any]):
    """A YAML sequence that remembers its 1-based line and the line of each item."""

    line: int = 0
    item_lines: list[int]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML-1.2-like scalars, no aliases and no duplicate keys."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):  # check_event leaves the event in current_event
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not allowed; write the value out",
                problem_mark=self.current_event.start_mark,
            )
        return super().compose_node(parent, index)


# YAML 1.1 reads yes/no/on/off as booleans, 010 as octal, 1:30 as 90 and bare dates as dates; an operator
# who writes `site: NO` (Norway) or `zone: 0700` means the text. Keep only the unsurprising forms.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|false)$"), list("tf"))
_StrictLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_StrictLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> Iterator[LineMap]:
    data = LineMap()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.MarkedYAMLError(problem="keys must be plain scalars", problem_mark=key_node.start_mark)
        if key in data:
            raise yaml.MarkedYAMLError(
                problem=f"duplicate key {key!r} (first set on line {data.key_lines[key]}); keep only one",
                problem_mark=key_node.start_mark,
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line


def _construct_sequence(loader: _StrictLoader, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList()
    data.line = node.start_mark.line + 1
    data.item_lines = []
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=True))
        data.item_lines.append(item.start_mark.line + 1)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def load_yaml_file(path: Path) -> Any:
    """Parse one YAML document strictly. Raises ConfigError naming the file and line on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror}); check the path") from exc
    return load_yaml_text(text, source=path)


def load_yaml_text(text: str, *, source: Path) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # _StrictLoader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else str(source)
        raise ConfigError(f"{where}: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc


_MISSING: Any = object()


class Section:
    """Typed, strict access to one YAML mapping. Call `finish()` last: it rejects keys nobody read."""

    def __init__(self, data: Any, *, source: Path, where: str = "", line: int = 0) -> None:
        self.source = source
        self.where = where
        """Dotted path of this mapping in the file (`pools[0]`); empty for the top level."""
        self.line = getattr(data, "line", 0) or line
        if not isinstance(data, dict):
            self.fail(f"{where or 'the file'} must be a mapping of keys to values, got {_kind(data)}")
        self._data: dict[Any, Any] = data
        self._read: set[Any] = set()

    def location(self, key: str | None = None) -> str:
        lines = getattr(self._data, "key_lines", {}) if hasattr(self, "_data") else {}
        line = lines.get(key, self.line) if key is not None else self.line
        return f"{self.source}:{line}" if line else str(self.source)

    def fail(self, problem: str, key: str | None = None) -> NoReturn:
        raise ConfigError(f"{self.location(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._read.add(key)
        if key not in self._data or self._data[key] is None:
            if default is _MISSING:
                self.fail(f"missing key {self.path(key)!r}; add it")
            return default
        return self._data[key]

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            self.fail(f"{self.path(key)} must be a string, got {_kind(value)}; quote it", key)
        return value

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{self.path(key)} must be a whole number, got {_kind(value)}", key)
        if minimum is not None and value < minimum:
            self.fail(f"{self.path(key)} must be at least {minimum}, got {value}", key)
        return value

    def number(self, key: str, default: Any = _MISSING, *, positive: bool = False) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{self.path(key)} must be a number, got {_kind(value)}", key)
        if positive and not value > 0:
            self.fail(f"{self.path(key)} must be greater than 0, got {value}", key)
        return float(value)

    def section(self, key: str) -> Section:
        return Section(self.raw(key), source=self.source, where=self.path(key), line=self._line(key))

    def sections(self, key: str) -> list[Section]:
        """A list of mappings, e.g. `pools:`. Each item's errors name its index and line."""
        items = self.raw(key)
        if not isinstance(items, list):
            self.fail(f"{self.path(key)} must be a list, got {_kind(items)}", key)
        lines = getattr(items, "item_lines", [self._line(key)] * len(items))
        return [
            Section(item, source=self.source, where=f"{self.path(key)}[{i}]", line=lines[i])
            for i, item in enumerate(items)
        ]

    def strings(self, key: str) -> tuple[str, ...]:
        """A list of strings, e.g. `tenants: [a, b]`; absent or null gives (). Duplicates are refused."""
        items = self.raw(key, [])
        if not isinstance(items, list):
            self.fail(f"{self.path(key)} must be a list of strings, got {_kind(items)}; write [a, b]", key)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.fail_item(key, i, f"{self.path(key)}[{i}] must be a string, got {_kind(item)}; quote it")
            if item in items[:i]:
                self.fail_item(key, i, f"{self.path(key)} lists {item!r} twice; keep one")
        return tuple(items)

    def fail_item(self, key: str, index: int, problem: str) -> NoReturn:
        """Fail pointing at the line of item `index` of the list under `key`."""
        items = self._data.get(key)
        lines = getattr(items, "item_lines", [])
        line = lines[index] if index < len(lines) else self._line(key)
        raise ConfigError(f"{self.source}:{line}: {problem}")

    def key_names(self) -> list[str]:
        """The keys of this mapping, in file order; a non-string key is an error."""
        for key in self._data:
            if not isinstance(key, str):
                self.fail(f"{self.where or 'the file'} has the key {key!r}; keys must be strings, quote it")
        return list(self._data)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.raw(key, {})
        if not isinstance(value, dict):
            self.fail(f"{self.path(key)} must be a mapping of strings, got {_kind(value)}", key)
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str):
                self.fail(f"{self.path(key)}.{k} must map a string to a string; quote numbers", key)
        return dict(value)

    def finish(self) -> None:
        """Reject every key that was not read, suggesting the closest valid one."""
        for key in self._data:
            if key in self._read:
                continue
            valid = sorted(str(k) for k in self._read)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.fail(
                f"unknown key {key!r} in {self.where or 'the top level'}; {hint}valid keys: {', '.join(valid)}", key
            )

    def path(self, key: str) -> str:
        """The dotted path of `key` in this mapping, for messages: `pools[0].cards`."""
        return f"{self.where}.{key}" if self.where else key

    def _line(self, key: str) -> int:
        return int(getattr(self._data, "key_lines", {}).get(key, self.line))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
