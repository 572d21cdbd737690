"""Config errors a person can act on: each problem's table, key, and what to write instead."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config table: where it is and what to write instead."""

    loc: tuple[str, ...]  # section path and key, e.g. ("flywheel", "train", "lora_r")
    kind: str  # pydantic's error type, e.g. "extra_forbidden"
    text: str
    known: tuple[str, ...] = ()  # for an unknown key: the keys its table has

    @property
    def where(self) -> str:
        return ".".join(self.loc) or "(top level)"


def config_problems(err: ValidationError, model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[Problem]:
    """The errors of validating `model`, in the file's words: ranges as `key must be in (0, 1]`, choices as
    `key = 'x'; use a, b or c`. `prefix` is where `model` sits in the file (e.g. ("flywheel",))."""
    out = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        kind, key, text = e["type"], loc[-1] if loc else "", e["msg"]
        info = _field_at(model, loc)
        if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and info is not None:
            text = f"{_range_text(key, info) or text}; got {e['input']!r}"
        elif kind == "literal_error" and "expected" in e.get("ctx", {}):
            text = f"{key} = {e['input']!r}; use {e['ctx']['expected'].replace(chr(39), '')}"
        elif kind in ("model_type", "dict_type") and info is not None and _model_of(info.annotation) is not None:
            text = f"{key} must be a table: [{'.'.join(prefix + loc)}]"
        elif kind == "missing":
            text = f"{key} is required"
        elif kind == "value_error":
            text = text.removeprefix("Value error, ")
        known = tuple(_keys(_table_at(model, loc[:-1]))) if kind == "extra_forbidden" else ()
        out.append(Problem(prefix + loc, kind, text, known))
    return out


def format_config_error(source: Path | str, err: ValidationError, model: type[BaseModel]) -> str:
    """A file's validation error against `model`: the file, then one `[section.key] what to fix` line per problem."""
    lines = [f"{source}: invalid configuration"]
    for p in config_problems(err, model):
        text = p.text
        if p.kind == "extra_forbidden":
            text = "unknown key (check the spelling; see docs/config.md for the keys of each section)"
        lines.append(f"  [{p.where}] {text}")
    return "\n".join(lines)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The section model a field holds (through `X | None`), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, type(int | None)):
        return next((m for a in get_args(annotation) if (m := _model_of(a)) is not None), None)
    return None


def _table_at(model: type[BaseModel] | None, loc: tuple[str, ...]) -> type[BaseModel] | None:
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        model = _model_of(model.model_fields[part].annotation)
    return model


def _field_at(model: type[BaseModel], loc: tuple[str, ...]) -> FieldInfo | None:
    table = _table_at(model, loc[:-1])
    return table.model_fields.get(loc[-1]) if table is not None and loc else None


def _keys(model: type[BaseModel] | None) -> list[str]:
    return sorted(k for k, f in model.model_fields.items() if not f.exclude) if model is not None else []


def _range_text(key: str, info: FieldInfo) -> str | None:
    """`key must be in (0, 1]`, `key must be >= 1`: the whole valid range, from the field's constraints."""
    low = high = None
    for m in info.metadata:
        if isinstance(m, annotated_types.Gt):
            low = f"({m.gt:g}"
        elif isinstance(m, annotated_types.Ge):
            low = f"[{m.ge:g}"
        elif isinstance(m, annotated_types.Lt):
            high = f"{m.lt:g})"
        elif isinstance(m, annotated_types.Le):
            high = f"{m.le:g}]"
    if low and high:
        text = f"{key} must be in {low}, {high}"
    elif low:
        text = f"{key} must be {'>' if low[0] == '(' else '>='} {low[1:]}"
    elif high:
        text = f"{key} must be {'<' if high[-1] == ')' else '<='} {high[:-1]}"
    else:
        return None
    why = (info.json_schema_extra or {}).get("why") if isinstance(info.json_schema_extra, dict) else None
    return f"{text} ({why})" if why else text

