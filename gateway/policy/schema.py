"""One model, two uses: read a YAML document strictly into frozen dataclasses, and describe the same model as
a JSON Schema so that editors validate and complete policy files.

Owns: walking a dataclass model (str, int, float, bool, Literal, tuples, string-keyed mappings, optional and
nested dataclasses) with per-field metadata (`doc`, `pattern`, `minimum`, `maximum`, `yaml` name). It knows
no particular policy: `gateway.policy.model` declares the language.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from fedgate.common.fields import MISSING, FieldReader, describe
from fedgate.common.yaml import KeyPath

T = TypeVar("T")


def meta(doc: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: `doc` for humans and the schema; optional pattern / minimum / maximum / yaml name."""
    return {"doc": doc, **extra}


_HINTS: dict[Any, dict[str, Any]] = {}


def _hints(cls: Any) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def yaml_name(field: dataclasses.Field[Any]) -> str:
    return str(field.metadata.get("yaml", field.name))


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def read(cls: type[T], fields: FieldReader, path: KeyPath) -> T:
    """Read the mapping at `path` as an instance of dataclass `cls`; ConfigError with file:line otherwise."""
    model = dataclasses.fields(cls)  # type: ignore[arg-type]
    present = fields.mapping(
        path,
        allowed={yaml_name(f) for f in model},
        required={yaml_name(f) for f in model if _required(f)},
    )
    values: dict[str, Any] = {}
    for field in model:
        name = yaml_name(field)
        if name in present:
            values[field.name] = _value(_hints(cls)[field.name], fields, (*path, name), field.metadata)
    return cls(**values)


def _value(kind: Any, fields: FieldReader, path: KeyPath, info: Mapping[str, Any]) -> Any:
    origin, args = get_origin(kind), get_args(kind)
    raw = fields.value(path)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if raw is None:
            return None
        return _value(options[0], fields, path, info)
    if origin is Literal:
        if raw not in args:
            raise fields.error(path, f"{describe(raw)} is not allowed", f"use one of: {', '.join(map(str, args))}")
        return raw
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return read(kind, fields, path)
    if origin is tuple:
        items = fields.sequence(path)
        return tuple(_value(args[0], fields, (*path, i), info) for i in range(len(items)))
    if origin in (Mapping, dict) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        mapping = fields.mapping(path, allowed=raw.keys() if isinstance(raw, dict) else ())
        key_pattern = info.get("key_pattern")
        result = {}
        for key in mapping:
            if key_pattern is not None and not re.fullmatch(key_pattern, key):
                raise fields.error((*path, key), f"key {key!r} is not valid", info.get("key_hint", ""))
            result[key] = _value(args[1], fields, (*path, key), {})
        return types.MappingProxyType(result)
    if kind is bool:
        if not isinstance(raw, bool):
            raise fields.error(path, f"must be true or false, got {describe(raw)}")
        return raw
    if kind is int:
        return fields.integer(path, minimum=info.get("minimum"), maximum=info.get("maximum"))
    if kind is float:
        return fields.number(path, minimum=info.get("minimum"), maximum=info.get("maximum"))
    if kind is str:
        pattern = info.get("pattern")
        return fields.string(path, pattern=re.compile(pattern) if pattern else None, hint=info.get("hint", ""))
    raise TypeError(f"the policy model uses an unsupported type {kind!r} at {path}")


def json_schema(cls: type, title: str = "") -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of dataclass `cls`, from the same model `read` uses."""
    definitions: dict[str, Any] = {}
    root = _schema(cls, definitions)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title or cls.__name__,
        **root,
        "$defs": definitions,
    }


def _schema(kind: Any, definitions: dict[str, Any], info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    info = info or {}
    origin, args = get_origin(kind), get_args(kind)
    out: dict[str, Any] = {}
    if info.get("doc"):
        out["description"] = info["doc"]
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return {**out, **_schema(options[0], definitions, {})}
    if origin is Literal:
        return {**out, "enum": list(args)}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        name = kind.__name__
        if name not in definitions:
            definitions[name] = {}  # placeholder against recursion
            model = dataclasses.fields(kind)
            definitions[name] = {
                "type": "object",
                "description": (kind.__doc__ or "").strip().split("\n\n")[0],
                "additionalProperties": False,
                "properties": {yaml_name(f): _schema(_hints(kind)[f.name], definitions, f.metadata) for f in model},
                "required": [yaml_name(f) for f in model if _required(f)],
            }
        return {**out, "$ref": f"#/$defs/{name}"}
    if origin is tuple:
        return {**out, "type": "array", "items": _schema(args[0], definitions, {})}
    if origin in (Mapping, dict) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        schema = {**out, "type": "object", "additionalProperties": _schema(args[1], definitions, {})}
        if info.get("key_pattern"):
            schema["propertyNames"] = {"pattern": f"^(?:{info['key_pattern']})$"}
        return schema
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    out["type"] = simple[kind]
    if kind is str and info.get("pattern"):
        out["pattern"] = f"^(?:{info['pattern']})$"
    for bound in ("minimum", "maximum"):
        if info.get(bound) is not None:
            out[bound] = info[bound]
    return out


def to_data(value: Any) -> Any:
    """The YAML-ready data of a model instance (the inverse of `read`), for round trips and `policy diff`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            default = (
                field.default
                if field.default is not dataclasses.MISSING
                else (field.default_factory() if field.default_factory is not dataclasses.MISSING else MISSING)
            )
            if item == default and not _required(field):
                continue
            out[yaml_name(field)] = to_data(item)
        return out
    if isinstance(value, tuple):
        return [to_data(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_data(v) for k, v in value.items()}
    return value
