"""Every module says what it owns: a folder's `__init__` says what the folder is for, every other module has an
"Owns:" paragraph (STYLE.md: if you cannot say in one line what a module owns, split it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "gateway", ROOT / "agents", ROOT / "proto" / "fedgate" / "common"]
MODULES = sorted(p for package in PACKAGES for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_says_what_it_owns(path: Path) -> None:
    doc = _docstring(path)
    assert doc, f"{path.relative_to(ROOT)} has no docstring: say what it owns"
    if path.name != "__init__.py":
        assert "Owns:" in doc, f"{path.relative_to(ROOT)}: its docstring needs an 'Owns:' paragraph"


def test_the_list_is_not_empty() -> None:
    assert len(MODULES) > 150
