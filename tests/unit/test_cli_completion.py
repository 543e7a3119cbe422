"""`fedgate completion`: scripts generated from the groups' own parsers, so no command is ever left out."""

from __future__ import annotations

import argparse
import importlib
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedgate.cli import GROUPS
from fedgate.completion import bash_script, command_tree, fish_script, zsh_script

BASH = shutil.which("bash")


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Every command path under a parser, read from argparse directly (not through fedgate.completion)."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*path, name))


def all_command_paths() -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for group, (module, _) in GROUPS.items():
        paths += _command_paths(importlib.import_module(module).parser(), (group,))
    return paths


def test_every_group_builds_its_parser_without_running() -> None:
    for group, (module, _) in GROUPS.items():
        assert isinstance(importlib.import_module(module).parser(), argparse.ArgumentParser), group


@pytest.fixture(scope="module")
def script() -> str:
    return bash_script(command_tree())


def test_the_bash_script_is_valid_bash(script: str, tmp_path: Path) -> None:
    if BASH is None:
        pytest.skip("no bash on this machine")
    (tmp_path / "fedgate.bash").write_text(script)
    subprocess.run([BASH, "-n", str(tmp_path / "fedgate.bash")], check=True)


def test_the_bash_script_knows_every_group_and_every_command(script: str) -> None:
    paths = all_command_paths()
    assert ("job", "submit") in paths and ("admin", "policy", "status") in paths  # the walk itself works
    root_line = next(line for line in script.splitlines() if line.startswith("    '') echo"))
    root_words = root_line.split("echo '")[1].split("'")[0].split()
    for path in paths:
        assert f"    {shlex.quote(' '.join(path))}) echo" in script, path
        if len(path) == 1:
            assert path[0] in root_words, path


def _complete(script: str, tmp_path: Path, *words: str) -> list[str]:
    """Run the real bash completion function on COMP_WORDS = fedgate WORDS (the last being completed)."""
    assert BASH is not None
    (tmp_path / "fedgate.bash").write_text(script)
    driver = (
        f"source {shlex.quote(str(tmp_path / 'fedgate.bash'))}\n"
        f"COMP_WORDS=(fedgate {' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words)}\n"
        '_fedgate; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run([BASH, "-c", driver], check=True, capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("jo",), ["job"]),
        (("job", "su"), ["submit"]),
        (("job", "submit", "--wa"), ["--wait"]),
        (("job", "submit", "-o", ""), ["table", "json", "yaml"]),
        (("job", "submit", "-f", "x.yaml", "--cont"), ["--context"]),
        (("admin", "policy", "re"), ["reload"]),
        (("config", "use"), ["use-context"]),
        (("completion", "f"), ["fish"]),
    ],
)
def test_bash_completes_what_a_user_types(
    script: str, tmp_path: Path, words: tuple[str, ...], expected: list[str]
) -> None:
    if BASH is None:
        pytest.skip("no bash on this machine")
    assert _complete(script, tmp_path, *words) == expected


def test_zsh_and_fish_scripts_cover_the_same_commands() -> None:
    tree = command_tree()
    assert "bashcompinit" in zsh_script(tree) and "complete -o default -F _fedgate fedgate" in zsh_script(tree)
    fish = fish_script(tree)
    for path in all_command_paths():
        assert f"-a '{path[-1]}'" in fish, path
    assert "-s o -l output -x -a 'table json yaml'" in fish
