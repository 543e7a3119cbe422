"""The agent's face of the one field reader: one mapping of a document, read strictly, key by key.

Owns: `Section`, which reads typed values of one mapping (the agent's config and site policy), remembers which
keys were read and refuses the rest in `finish()`, with messages `file:line: problem; fix` in the same words as
`fedgate.common.fields.FieldReader`. It never coerces and knows no schema.
"""

from __future__ import annotations

import difflib
from typing import Any, NoReturn

from fedgate.common.fields import MISSING, FieldReader, describe, finite, integer_fix
from fedgate.common.yaml import KeyPath, YamlDocument, format_path


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
        if isinstance(value, bool) or not isinstance(value, int | float) or not finite(value):
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
