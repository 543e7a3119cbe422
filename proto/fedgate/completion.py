"""`fedgate completion bash|zsh|fish`: a shell script that completes groups, commands, flags and flag choices.

    source <(fedgate completion bash)          # or: fedgate completion bash > /etc/bash_completion.d/fedgate
    source <(fedgate completion zsh)           # zsh, through its bash completion layer (bashcompinit)
    fedgate completion fish > ~/.config/fish/completions/fedgate.fish

Owns: walking the argparse parser of every group of `fedgate.cli.GROUPS` (each group module's `parser()`) into a
tree of commands and options, and writing that tree as a script. Nothing is listed by hand, so a new command
completes the day it is added. It is part of the dispatcher: it imports each group, gateway's and the agent's,
by name when it runs, as the dispatcher does.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh", "fish")


@dataclass(frozen=True)
class Option:
    strings: tuple[str, ...]
    """e.g. ("-o", "--output")"""
    help: str = ""
    takes_value: bool = False
    choices: tuple[str, ...] = ()
    """The values it accepts; empty with takes_value: any (a file, a name)."""


@dataclass
class Command:
    help: str = ""
    options: list[Option] = field(default_factory=list)
    commands: dict[str, Command] = field(default_factory=dict)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fedgate completion", description=__doc__.splitlines()[0] if __doc__ else "")
    top.add_argument("shell", choices=SHELLS, help="the shell to write a completion script for")
    return top


def command_tree() -> Command:
    """Every group's parser, walked: `fedgate` at the root, its groups below, their commands below them."""
    from fedgate.cli import GROUPS

    root = Command(options=[Option(("-h", "--help"), "show help"), Option(("--version",), "the CLI's version")])
    for name, (module, text) in GROUPS.items():
        root.commands[name] = _command(importlib.import_module(module).parser(), text)
    return root


def _command(parser: argparse.ArgumentParser, text: str) -> Command:
    command = Command(help=text)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                command.commands[name] = _command(sub, helps.get(name, ""))
        elif action.option_strings:
            choices = tuple(str(c) for c in action.choices) if action.choices else ()
            takes_value = action.nargs != 0
            command.options.append(Option(tuple(action.option_strings), action.help or "", takes_value, choices))
        elif action.choices:  # a positional with fixed words, e.g. the shell here: offered like commands
            for choice in action.choices:
                command.commands[str(choice)] = Command()
    return command


def walk(command: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    """Each command with its path of words, the root (()) first."""
    yield path, command
    for name, sub in command.commands.items():
        yield from walk(sub, (*path, name))


def bash_script(root: Command) -> str:
    words, commands, values = [], [], []
    for path, command in walk(root):
        key = shlex.quote(" ".join(path))
        flags = [s for option in command.options for s in option.strings]
        words.append(f"    {key}) echo {shlex.quote(' '.join([*command.commands, *flags]))} ;;")
        commands.append(f"    {key}) echo {shlex.quote(' '.join(command.commands))} ;;")
        for option in command.options:
            if option.takes_value:
                pattern = "|".join(shlex.quote(f"{' '.join(path)} {s}") for s in option.strings)
                values.append(f"    {pattern}) echo {shlex.quote(' '.join(option.choices))} ;;")
    return _BASH.format(words="\n".join(words), commands="\n".join(commands), values="\n".join(values))


_BASH = """# fedgate completion for bash, written by `fedgate completion bash` from the CLI's own parsers.
_fedgate_words() {{  # a command path -> its commands and flags
  case "$1" in
{words}
  esac
}}
_fedgate_commands() {{  # a command path -> its commands only
  case "$1" in
{commands}
  esac
}}
_fedgate_values() {{  # a command path and a flag -> the values it takes (none listed: any); fails for a switch
  case "$1 $2" in
{values}
    *) return 1 ;;
  esac
}}
_fedgate() {{
  local cur word path="" values i=1
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  while [ "$i" -lt "$COMP_CWORD" ]; do
    word="${{COMP_WORDS[i]}}"
    if [[ "$word" == -* ]]; then
      if [ "$i" -eq $((COMP_CWORD - 1)) ] && values="$(_fedgate_values "$path" "$word")"; then
        COMPREPLY=()
        [ -n "$values" ] && COMPREPLY=($(compgen -W "$values" -- "$cur"))
        return 0  # nothing listed: the shell's default (file names)
      fi
      _fedgate_values "$path" "$word" >/dev/null && i=$((i + 1))  # skip the flag's value
    elif [[ " $(_fedgate_commands "$path") " == *" $word "* ]]; then
      path="${{path:+$path }}$word"
    fi
    i=$((i + 1))
  done
  COMPREPLY=($(compgen -W "$(_fedgate_words "$path")" -- "$cur"))
}}
complete -o default -F _fedgate fedgate
"""


def zsh_script(root: Command) -> str:
    return (
        "#compdef fedgate\n# fedgate completion for zsh: the bash script through zsh's bashcompinit.\n"
        "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n" + bash_script(root)
    )


def fish_script(root: Command) -> str:
    commands, values, lines = [], [], ["complete -c fedgate -f"]
    for path, command in walk(root):
        joined = " ".join(path)
        key = _fish_quote(joined)
        commands.append(
            f"        case {key}\n            printf '%s\\n' {' '.join(map(_fish_quote, command.commands))}"
        )
        takes = [s for o in command.options if o.takes_value for s in o.strings]
        values.append(f"        case {key}\n            printf '%s\\n' {' '.join(map(_fish_quote, takes))}")
        condition = _fish_quote(f"test (__fedgate_path) = {_fish_quote(joined)}")
        for name, sub in command.commands.items():
            lines.append(f"complete -c fedgate -n {condition} -a {_fish_quote(name)} -d {_fish_quote(sub.help)}")
        for option in command.options:
            spec = [f"-s {s[1:]}" if len(s) == 2 else f"-l {s[2:]}" for s in option.strings]
            if option.takes_value:
                spec.append(f"-x -a {_fish_quote(' '.join(option.choices))}" if option.choices else "-r -F")
            lines.append(f"complete -c fedgate -n {condition} {' '.join(spec)} -d {_fish_quote(option.help)}")
    return _FISH.format(commands="\n".join(commands), values="\n".join(values), lines="\n".join(lines))


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_FISH = """# fedgate completion for fish, written by `fedgate completion fish` from the CLI's own parsers.
function __fedgate_commands
    switch $argv[1]
{commands}
    end
end
function __fedgate_value_flags
    switch $argv[1]
{values}
    end
end
function __fedgate_path
    set -l path ''
    set -l skip 0
    for word in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
        else if string match -q -- '-*' $word
            contains -- $word (__fedgate_value_flags "$path"); and set skip 1
        else if contains -- $word (__fedgate_commands "$path")
            set path (string trim -- "$path $word")
        end
    end
    echo $path
end
{lines}
"""


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    script = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[args.shell](command_tree())
    sys.stdout.write(script)
    return 0
