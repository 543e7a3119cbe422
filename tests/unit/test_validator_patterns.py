"""Validators match whole strings: no pattern anchored with `$` (which also matches before a final newline, so
`re.match(r"^[A-Z]+$", "FOO\n")` passes) is compiled or matched anywhere in the gateway or the agent; they use
`fullmatch` on unanchored patterns instead."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CALLS = {"compile", "match", "search", "fullmatch"}


def dollar_anchored(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CALLS):
            continue
        if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "re" and node.args):
            continue
        pattern = node.args[0]
        text = pattern.value if isinstance(pattern, ast.Constant) else None
        if isinstance(pattern, ast.JoinedStr) and pattern.values and isinstance(pattern.values[-1], ast.Constant):
            text = pattern.values[-1].value
        if isinstance(text, str) and text.endswith("$") and not text.endswith("\\$"):
            lines.append(node.lineno)
    return lines


def test_no_validator_pattern_is_anchored_with_a_dollar() -> None:
    found = {
        str(path.relative_to(ROOT)): lines
        for package in ("gateway", "agents")
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := dollar_anchored(ast.parse(path.read_text(), str(path))))
    }
    assert found == {}, f"use fullmatch on an unanchored pattern instead of `$`: {found}"


def test_the_check_catches_the_pattern_it_is_about() -> None:
    assert dollar_anchored(ast.parse('NAME = re.compile(r"^[A-Z]+$")')) == [1]
    assert dollar_anchored(ast.parse('NAME = re.compile(r"[A-Z]+")')) == []
    assert re.match(r"^[A-Z]+$", "FOO\n") and not re.fullmatch(r"[A-Z]+", "FOO\n")
