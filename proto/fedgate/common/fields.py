"""Typed reads from a loaded YAML document, naming file, line and fix: the one field reader of fedgate.

Owns: checking that a value has the expected type, range and shape, that a mapping holds only known keys
(suggesting the nearest valid one) and all required ones, and raising the document's config error class with
file, line, field and fix. Two faces of the same reads: `FieldReader` addresses any value of the document by
key path (the gateway's job specs, policies, reservation files), `Section` is one mapping that remembers which
keys were read and refuses the rest in `finish()` (the agent's config and site policy). It never coerces:
`cards: "4"` is a string, not an integer. It knows no schema and imports neither side.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection
from typing import Any, Final, NoReturn

from fedgate.common.yaml import KeyPath, YamlDocument, format_path

# Spellings of a number that the dialect keeps as strings (fedgate.common.yaml): a typed read says how to fix them.
_NOT_DECIMAL = re.compile(r"^[-+]?(?:0[0-9]+|0[oO][0-7]+|0[xX][0-9a-fA-F]+|[0-9][0-9_]*_[0-9_]*|[0-9]+(?::[0-9]+)+)$")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def describe(value: object) -> str:
    """A value's YAML kind for messages: 'a string', 'an integer', 'a list', ..."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class FieldReader:
    """Reads fields of one document by key path. Every failure is the document's config error (`doc.error`)."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc

    def error(self, path: KeyPath, problem: str, fix: str = "") -> Exception:
        return self.doc.error(path, problem, fix)

    def document(self, api_version: str, kind: str, allowed: Collection[str], when_empty: str) -> None:
        """Check a file's frame: not empty (`when_empty` says where to start), only `allowed` top-level keys,
        then `apiVersion` and `kind` as given, in file order so the first mistake reported is the first one."""
        if self.doc.data is None:
            raise self.error((), "the file is empty", when_empty)
        self.mapping((), allowed=allowed)
        found = self.string(("apiVersion",), hint=f"add apiVersion: {api_version}")
        if found != api_version:
            raise self.error(("apiVersion",), f"unsupported apiVersion {found!r}", f"use {api_version}")
        found = self.string(("kind",), hint=f"add kind: {kind}")
        if found != kind:
            raise self.error(("kind",), f"this file is a {found!r}, not a {kind}", f"use kind: {kind}")

    def value(self, path: KeyPath) -> Any:
        """The raw value at `path`, or MISSING."""
        current: Any = self.doc.data
        for part in path:
            if isinstance(part, int):
                if not isinstance(current, list) or part >= len(current):
                    return MISSING
            elif not isinstance(current, dict) or part not in current:
                return MISSING
            current = current[part]
        return current

    def _required(self, path: KeyPath, fix: str) -> Exception:
        parent, key = path[:-1], path[-1]
        return self.error(parent, f"missing required key {key!r}", fix)

    def mapping(
        self,
        path: KeyPath,
        *,
        allowed: Collection[str],
        required: Collection[str] = (),
        optional: bool = False,
    ) -> dict[str, Any]:
        """A mapping with only `allowed` keys and every `required` one. Missing and `optional` -> {}."""
        value = self.value(path)
        if value is MISSING and optional:
            return {}
        if value is MISSING:
            raise self._required(path, f"add {path[-1]}: with keys {', '.join(sorted(allowed))}")
        if not isinstance(value, dict):
            raise self.error(path, f"must be a mapping of keys to values, got {describe(value)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "remove it"
                raise self.error((*path, key), f"unknown key {key!r} (valid keys: {', '.join(sorted(allowed))})", hint)
        for key in required:
            if key not in value:
                raise self.error(path, f"missing required key {key!r}", f"add {key}: to this mapping")
        return value

    def string(
        self,
        path: KeyPath,
        *,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
    ) -> str:
        """A string, matching `pattern` in full when given; `hint` says what a valid value looks like."""
        value = self.value(path)
        if value is MISSING:
            if default is None:
                raise self._required(path, hint or f"add {path[-1]}:")
            return default
        if not isinstance(value, str):
            raise self.error(path, f"must be a string, got {describe(value)}", hint or "quote the value")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(path, f"{value!r} is not valid", hint)
        return value

    def integer(
        self,
        path: KeyPath,
        *,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self.value(path)
        if value is MISSING:
            if default is None:
                raise self._required(path, f"add {path[-1]}: <integer>")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"must be an integer, got {describe(value)}", integer_fix(value))
        self._check_range(path, value, minimum, maximum)
        return value

    def number(
        self,
        path: KeyPath,
        *,
        default: float | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self.value(path)
        if value is MISSING:
            if default is None:
                raise self._required(path, f"add {path[-1]}: <number>")
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            raise self.error(path, f"must be a finite number, got {describe(value)}", "write a number, unquoted")
        self._check_range(path, value, minimum, maximum)
        return float(value)

    def _check_range(self, path: KeyPath, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            raise self.error(path, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(path, f"must be at most {maximum}, got {value}")

    def sequence(self, path: KeyPath, *, optional: bool = False) -> list[Any]:
        value = self.value(path)
        if value is MISSING and optional:
            return []
        if value is MISSING:
            raise self._required(path, f"add {path[-1]}: as a list")
        if not isinstance(value, list):
            raise self.error(path, f"must be a list, got {describe(value)}", "write it as [a, b] or as '- item' lines")
        return value

    def strings(self, path: KeyPath, *, pattern: re.Pattern[str] | None = None, hint: str = "") -> tuple[str, ...]:
        """A list of strings (missing -> ()). A bare string is refused: `[python, train.py]`, not a line."""
        items = self.sequence(path, optional=True)
        return tuple(self.string((*path, i), pattern=pattern, hint=hint) for i in range(len(items)))

    def string_map(
        self, path: KeyPath, *, key_pattern: re.Pattern[str] | None = None, key_hint: str = ""
    ) -> tuple[tuple[str, str], ...]:
        """A mapping of string to string (missing -> ()), as pairs sorted by key."""
        value = self.value(path)
        if value is MISSING:
            return ()
        if not isinstance(value, dict):
            raise self.error(path, f"must be a mapping of names to strings, got {describe(value)}")
        pairs = []
        for key, item in value.items():
            if key_pattern is not None and not key_pattern.fullmatch(key):
                raise self.error((*path, key), f"key {key!r} is not valid", key_hint)
            if not isinstance(item, str):
                written = str(item).lower() if isinstance(item, bool) else item
                raise self.error((*path, key), f"must be a string, got {describe(item)}", f'quote it: "{written}"')
            pairs.append((key, item))
        return tuple(sorted(pairs))


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


class Section:
    """Typed, strict access to one mapping of a document. Call `finish()` last: it refuses keys nobody read.

    Messages read `file:line: problem; fix`, the line being the key's own (or the mapping's when absent)."""

    def __init__(self, doc: YamlDocument, path: KeyPath = ()) -> None:
        self.doc = doc
        self.source = doc.source
        self.where = format_path(path) if path else ""
        """Dotted path of this mapping in the file (`pools[0]`); empty for the top level."""
        self.line = doc.line(path)
        self._path = path
        self._data: dict[str, Any] = {}
        self._read: set[str] = set()
        data = FieldReader(doc).value(path)
        if not isinstance(data, dict):
            self.fail(f"{self.where or 'the file'} must be a mapping of keys to values, got {describe(data)}")
        self._data = data

    def location(self, key: str | None = None) -> str:
        line = self._line(key) if key is not None else self.line
        return f"{self.source}:{line}"

    def fail(self, problem: str, key: str | None = None) -> NoReturn:
        line = self._line(key) if key is not None else self.line
        raise self._error(line, problem)

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str, default: Any = MISSING) -> Any:
        self._read.add(key)
        if key not in self._data or self._data[key] is None:
            if default is MISSING:
                self.fail(f"missing key {self.path(key)!r}; add it")
            return default
        return self._data[key]

    def text(self, key: str, default: Any = MISSING) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            self.fail(f"{self.path(key)} must be a string, got {describe(value)}; quote it", key)
        return value

    def integer(self, key: str, default: Any = MISSING, *, minimum: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{self.path(key)} must be a whole number, got {describe(value)}; {integer_fix(value)}", key)
        if minimum is not None and value < minimum:
            self.fail(f"{self.path(key)} must be at least {minimum}, got {value}", key)
        return value

    def number(self, key: str, default: Any = MISSING, *, positive: bool = False) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            self.fail(f"{self.path(key)} must be a number, got {describe(value)}", key)
        if positive and not value > 0:
            self.fail(f"{self.path(key)} must be greater than 0, got {value}", key)
        return float(value)

    def section(self, key: str) -> Section:
        self.raw(key)
        return Section(self.doc, (*self._path, key))

    def sections(self, key: str) -> list[Section]:
        """A list of mappings, e.g. `pools:`. Each item's errors name its index and line."""
        items = self.raw(key)
        if not isinstance(items, list):
            self.fail(f"{self.path(key)} must be a list, got {describe(items)}", key)
        return [Section(self.doc, (*self._path, key, i)) for i in range(len(items))]

    def strings(self, key: str) -> tuple[str, ...]:
        """A list of strings, e.g. `tenants: [a, b]`; absent or null gives (). Duplicates are refused."""
        items = self.raw(key, [])
        if not isinstance(items, list):
            self.fail(f"{self.path(key)} must be a list of strings, got {describe(items)}; write [a, b]", key)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.fail_item(key, i, f"{self.path(key)}[{i}] must be a string, got {describe(item)}; quote it")
            if item in items[:i]:
                self.fail_item(key, i, f"{self.path(key)} lists {item!r} twice; keep one")
        return tuple(items)

    def fail_item(self, key: str, index: int, problem: str) -> NoReturn:
        """Fail pointing at the line of item `index` of the list under `key`."""
        raise self._error(self.doc.line((*self._path, key, index)), problem)

    def key_names(self) -> list[str]:
        """The keys of this mapping, in file order (the loader admits only string keys)."""
        return list(self._data)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.raw(key, {})
        if not isinstance(value, dict):
            self.fail(f"{self.path(key)} must be a mapping of strings, got {describe(value)}", key)
        for k, v in value.items():
            if not isinstance(v, str):
                self.fail(f"{self.path(key)}.{k} must map a string to a string; quote numbers", key)
        return dict(value)

    def finish(self) -> None:
        """Refuse every key that was not read, suggesting the closest valid one."""
        for key in self._data:
            if key in self._read:
                continue
            valid = sorted(self._read)
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.fail(
                f"unknown key {key!r} in {self.where or 'the top level'}; {hint}valid keys: {', '.join(valid)}", key
            )

    def path(self, key: str) -> str:
        """The dotted path of `key` in this mapping, for messages: `pools[0].cards`."""
        return f"{self.where}.{key}" if self.where else key

    def _line(self, key: str) -> int:
        return self.doc.line((*self._path, key))

    def _error(self, line: int, problem: str) -> Exception:
        metadata = {"file": self.source, "line": str(line), "field": self.where}
        return self.doc.error_type(f"{self.source}:{line}: {problem}", metadata=metadata)


def integer_fix(value: object) -> str:
    """How to write an integer that was not read as one (`0x10`, `010`, `1_000` stay strings in this dialect)."""
    if isinstance(value, str) and _NOT_DECIMAL.match(value.strip()):
        return f"write {value!r} as a plain decimal number (no leading zero, 0x, 0o, _ or :), unquoted"
    return "write a whole number, unquoted"
