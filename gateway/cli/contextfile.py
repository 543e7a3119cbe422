"""The CLI's config file: named contexts (a gateway and the credentials to reach it), as kubeconfig has.

    current-context: prod
    contexts:
      prod: {gateway: "gw-1.example.org:7443,gw-2.example.org:7443", ca: creds/ca.pem, cert: creds/cert.pem,
             key: creds/key.pem}
      public: {gateway: "gw.example.org:7445", ca: creds/ca.pem, token-file: ~/.fedgate-token}

Found at `$FEDGATE_CONFIG`, else `$XDG_CONFIG_HOME/fedgate/config.yaml` (default `~/.config/fedgate/`). Relative
paths resolve against the file's own folder, so the file and its credentials can move together.

Owns: finding, reading (strictly: unknown keys, a malformed file, a context without a gateway are errors naming file
and line), choosing a context by name, resolving its paths, and writing the file atomically with mode 0600 (it may
hold a token). It does not decide precedence against flags or environment (`gateway.cli.connect` does) and does not
read the PEM files.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from fedgate.common.sections import Section
from fedgate.common.yaml import dump_yaml, load_yaml
from gateway.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
PATH_KEYS = ("ca", "cert", "key", "token-file")
KEYS = ("gateway", *PATH_KEYS, "token")


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the config file is: $FEDGATE_CONFIG, else $XDG_CONFIG_HOME/fedgate/config.yaml (~/.config default)."""
    env = os.environ if environ is None else environ
    if env.get("FEDGATE_CONFIG"):
        return Path(env["FEDGATE_CONFIG"]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path("~/.config").expanduser()
    return base / "fedgate" / "config.yaml"


@dataclass(frozen=True)
class Context:
    """One named way to reach a gateway. Values are the file's text; `path()` resolves the path keys."""

    name: str
    values: Mapping[str, str]
    """gateway (host:port[,host:port]), ca, cert, key (paths), token or token-file: only the keys set."""
    base: Path
    """The folder that relative paths are relative to (the config file's)."""
    lines: Mapping[str, str] = field(default_factory=dict, compare=False)
    """key -> 'file:line' where it was written, for errors."""

    def get(self, key: str) -> str:
        return self.values.get(key, "")

    def path(self, key: str) -> Path | None:
        """The resolved path under `key`, or None when unset. A missing file is an error naming the key."""
        text = self.get(key)
        if not text:
            return None
        resolved = Path(text).expanduser()
        if not resolved.is_absolute():
            resolved = self.base / resolved
        if not resolved.exists():
            where = self.lines.get(key, "")
            raise ConfigError(
                f"{where + ': ' if where else ''}context {self.name!r}: {key} {resolved} does not exist; fix it with"
                f" `fedgate config set-context {self.name} --{key} FILE`"
            )
        return resolved

    def token(self) -> str:
        """The token written inline or read from token-file (surrounding white space removed)."""
        token_file = self.path("token-file")
        if token_file is None:
            return self.get("token")
        try:
            return token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"context {self.name!r}: token-file {token_file} is not readable ({exc.strerror})"
            ) from None


@dataclass(frozen=True)
class CliConfig:
    path: Path
    current_context: str = ""
    contexts: Mapping[str, Context] = field(default_factory=dict)

    def context(self, name: str | None = None) -> Context | None:
        """The context `name` (or the current one); None when no name is given and none is current."""
        chosen = name or self.current_context
        if not chosen:
            return None
        found = self.contexts.get(chosen)
        if found is None:
            known = ", ".join(sorted(self.contexts)) or "none yet"
            raise ConfigError(
                f"no context {chosen!r} in {self.path} (known: {known}); create it with `fedgate config set-context"
                f" {chosen} --gateway HOST:PORT --creds DIR` or pick one with `fedgate config use-context NAME`",
                reason="USAGE",
            )
        return found

    def with_context(self, context: Context) -> CliConfig:
        return replace(self, contexts={**self.contexts, context.name: context})

    def to_data(self, *, redact: bool = False) -> dict[str, object]:
        contexts = {
            name: {k: ("REDACTED" if redact and k == "token" else v) for k, v in ctx.values.items()}
            for name, ctx in self.contexts.items()
        }
        return {"current-context": self.current_context, "contexts": contexts}


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ConfigError(f"context name {name!r}: use 1-63 letters, digits, '.', '_' and '-'", reason="USAGE")
    return name


def load_config(path: Path | None = None) -> CliConfig:
    """Read the config file; a file that does not exist is an empty config (the first set-context writes it)."""
    path = config_path() if path is None else path
    if not path.exists():
        return CliConfig(path=path)
    doc = load_yaml(path, str(path), error=ConfigError)
    if doc.data is None:
        return CliConfig(path=path)
    root = Section(doc)
    current = root.text("current-context", "")
    contexts: dict[str, Context] = {}
    raw = root.raw("contexts", {})
    if not isinstance(raw, dict):
        root.fail("contexts must be a mapping of context names to {gateway, ca, cert, key | token-file}", "contexts")
    if raw:
        section = root.section("contexts")
        contexts = {name: _context(name, section) for name in section.key_names()}
    root.finish()
    if current and current not in contexts:
        root.fail(
            f"current-context {current!r} names no context (known: {', '.join(sorted(contexts)) or 'none'}); "
            "run `fedgate config use-context NAME`",
            "current-context",
        )
    return CliConfig(path=path, current_context=current, contexts=contexts)


def _context(name: str, parent: Section) -> Context:
    if not NAME.fullmatch(name):
        parent.fail(f"context name {name!r}: use 1-63 letters, digits, '.', '_' and '-'", name)
    section = parent.section(name)
    values = {key: section.text(key) for key in KEYS if section.raw(key, None) is not None}
    section.finish()
    if not values.get("gateway"):
        section.fail(f"context {name!r} has no gateway; add gateway: HOST:PORT")
    if "token" in values and "token-file" in values:
        section.fail(f"context {name!r} has both token and token-file; keep one", "token")
    if ("cert" in values) != ("key" in values):
        section.fail(f"context {name!r} needs cert and key together", "cert" if "cert" in values else "key")
    lines = {key: section.location(key) for key in values}
    return Context(name=name, values=values, base=Path(parent.source).parent, lines=lines)


def save_config(config: CliConfig) -> None:
    """Write the file atomically (a temporary file renamed over it), readable by its owner only (0600)."""
    folder = config.path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = dump_yaml(config.to_data())
    handle, temporary = tempfile.mkstemp(prefix=".config-", suffix=".yaml", dir=folder)  # created 0600
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, config.path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
