"""Typed reads from a loaded YAML document, naming file, line and fix: the one field reader of fedgate.

Owns: checking that a value has the expected type, range and shape, that a mapping holds only known keys
(suggesting the nearest valid one) and all required ones, and raising the document's config error class with
file, line, field and fix, for `FieldReader`, which addresses any value of the document by key path (the
gateway's job specs, policies, reservation files); its other face, `fedgate.common.sections.Section` (the
agent's config and site policy), shares the wording helpers here (`describe`, `integer_fix`, `finite`). It
never coerces: `cards: "4"` is a string, not an integer. It knows no schema and imports neither side.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection
from typing import Any, Final

from fedgate.common.yaml import KeyPath, YamlDocument

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
        if isinstance(value, bool) or not isinstance(value, int | float) or not finite(value):
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


def finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def integer_fix(value: object) -> str:
    """How to write an integer that was not read as one (`0x10`, `010`, `1_000` stay strings in this dialect)."""
    if isinstance(value, str) and _NOT_DECIMAL.fullmatch(value.strip()):
        return f"write {value!r} as a plain decimal number (no leading zero, 0x, 0o, _ or :), unquoted"
    return "write a whole number, unquoted"
