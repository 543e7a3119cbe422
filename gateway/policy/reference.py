"""The policy language described from its own model: the JSON Schema file and the key reference table that
policies/README.md embeds. Tests fail when either drifts from `gateway.policy.model`.

Owns: rendering the JSON Schema and the key reference from the policy model.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from gateway.policy.model import FederationDocument
from gateway.policy.schema import json_schema, yaml_name

SCHEMA_TITLE = "fedgate federation policy (kind: Federation)"


def schema_text() -> str:
    """The committed `policies/federation.schema.json`: the JSON Schema of the model, as `schema` prints it."""
    return json.dumps(json_schema(FederationDocument, SCHEMA_TITLE), indent=2, ensure_ascii=False) + "\n"


def reference_text() -> str:
    """The key reference of policies/README.md: one Markdown table per section of the model."""
    seen: list[type] = []
    _collect(FederationDocument, seen)
    parts = []
    for cls in seen:
        doc = " ".join((cls.__doc__ or "").split())
        lines = [f"#### `{cls.__name__}`", "", doc, "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            kind = _type_text(typing.get_type_hints(cls)[f.name], f.metadata)
            meaning = str(f.metadata.get("doc", "")).replace("|", "\\|")
            lines.append(f"| `{yaml_name(f)}` | {kind} | {_default_text(f)} | {meaning} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _collect(kind: Any, seen: list[type]) -> None:
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if kind not in seen:
            seen.append(kind)
            for f in dataclasses.fields(kind):
                _collect(typing.get_type_hints(kind)[f.name], seen)
        return
    for arg in get_args(kind):
        _collect(arg, seen)


def _type_text(kind: Any, info: Mapping[str, Any]) -> str:
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        return _type_text(next(a for a in args if a is not type(None)), info)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return f"[`{kind.__name__}`](#{kind.__name__.lower()})"
    if origin is tuple:
        return f"list of {_type_text(args[0], {})}"
    if origin is not None:  # a mapping
        return f"map of string to {_type_text(args[1], {})}"
    text = {bool: "boolean", int: "integer", float: "number", str: "string"}[kind]
    bounds = [f"{word} {info[key]}" for key, word in (("minimum", ">="), ("maximum", "<=")) if key in info]
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    return "-" if value in (None, "", (), {}) else f"`{str(value).lower() if isinstance(value, bool) else value}`"
