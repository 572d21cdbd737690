"""`params.toml`: the harness's declared knobs (type, range, value) and its skill switches.

One TOML table per knob, plus the reserved `[skills]` table:

    [temperature]
    type = "float"        # float | int | bool | choice | str
    range = [0.0, 1.0]
    log = false           # optional, float/int only
    value = 0.0
    doc = "sampling temperature"   # optional; shown to proposers

    [style]
    type = "choice"
    choices = ["plain", "cot"]
    value = "plain"

    [skills]
    library = ["calculator", "python", "memory"]
    enabled = []

Declarations (type, range, choices) are what a search may explore; `value` is the current point.
Every error names the file, the knob and what to write instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.config import ConfigError

KNOB_TYPES = ("float", "int", "bool", "choice", "str")
SKILLS_TABLE = "skills"
_KNOB_KEYS = {"type", "range", "log", "value", "choices", "doc"}
_EXAMPLE = '[temperature]\ntype = "float"\nrange = [0.0, 1.0]\nvalue = 0.0'


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class Knob:
    name: str
    type: str
    value: Any
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        problem = _knob_problem(self)
        if problem:
            raise ConfigError(f"knob [{self.name}]: {problem}")
        # TOML writes 1 for 1.0; keep float knobs float so renders and comparisons are stable
        if self.type == "float":
            object.__setattr__(self, "value", float(self.value))
            object.__setattr__(self, "low", float(self.low))
            object.__setattr__(self, "high", float(self.high))
        if self.type == "int":
            object.__setattr__(self, "value", int(self.value))

    def accepts(self, value: Any) -> bool:
        try:
            dataclasses.replace(self, value=value)
        except ConfigError:
            return False
        return True


def _same_choice(a: Any, b: Any) -> bool:
    # True == 1 in Python; a bool choice must not accept the number 1 (or the reverse)
    return isinstance(a, bool) == isinstance(b, bool) and type(a) is not list and a == b


def _knob_problem(k: Knob) -> str | None:
    """Why a knob declaration is unusable, phrased as what to fix; None when it is fine."""
    if k.type not in KNOB_TYPES:
        return f"type = {k.type!r} is unknown; write one of {', '.join(KNOB_TYPES)}"
    if k.log and k.type not in ("float", "int"):
        return "log = true only applies to float and int knobs; remove it"
    if k.type in ("float", "int"):
        if not (_is_number(k.low) and _is_number(k.high)):
            return f"a {k.type} knob needs range = [low, high] with numbers, e.g. range = [0, 1]"
        if k.type == "int" and not (float(k.low).is_integer() and float(k.high).is_integer()):
            return f"an int knob needs an integer range, got [{k.low}, {k.high}]"
        if not math.isfinite(k.low) or not math.isfinite(k.high) or k.low > k.high:
            return f"range = [{k.low}, {k.high}] must be finite with low <= high"
        if k.log and k.low <= 0:
            return f"log = true needs a range above 0, got low = {k.low}"
        if not _is_number(k.value):
            return f"value = {k.value!r} must be a number in [{k.low}, {k.high}]"
        if k.type == "int" and not float(k.value).is_integer():
            return f"value = {k.value!r} must be an integer in [{k.low}, {k.high}]"
        if not k.low <= k.value <= k.high:
            return f"value = {k.value!r} is outside range = [{k.low}, {k.high}]; pick a value inside or widen the range"
        if k.choices is not None:
            return "choices only apply to choice knobs; remove it"
        return None
    if k.low is not None or k.high is not None:
        return f"range only applies to float and int knobs; remove it from this {k.type} knob"
    if k.type == "bool":
        if not isinstance(k.value, bool):
            return f"value = {k.value!r} must be true or false"
        return None if k.choices is None else "choices only apply to choice knobs; remove it"
    if k.type == "str":
        if not isinstance(k.value, str):
            return f"value = {k.value!r} must be a string"
        return None if k.choices is None else 'a str knob with choices should be type = "choice"'
    # choice
    if not k.choices:
        return 'a choice knob needs choices = [...] with at least one entry, e.g. choices = ["plain", "cot"]'
    if len(set(map(repr, k.choices))) != len(k.choices):
        return f"choices = {list(k.choices)!r} has duplicates; list each choice once"
    if any(isinstance(c, (list, dict)) for c in k.choices):
        return "choices must be strings, numbers or booleans"
    if not any(_same_choice(k.value, c) for c in k.choices):
        return f"value = {k.value!r} is not one of choices = {list(k.choices)!r}"
    return None


@dataclass
class HarnessParams:
    knobs: dict[str, Knob] = field(default_factory=dict)
    skills_library: list[str] = field(default_factory=list)
    skills_enabled: list[str] = field(default_factory=list)

    def values(self) -> dict[str, Any]:
        """The knob values the harness program sees (skills are reported separately)."""
        return {name: knob.value for name, knob in self.knobs.items()}


def _skills_problem(library: Any, enabled: Any) -> str | None:
    for key, names in (("library", library), ("enabled", enabled)):
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            return f"[skills] {key} must be a list of skill names, e.g. {key} = [\"calculator\"]"
        if len(set(names)) != len(names):
            return f"[skills] {key} = {names!r} lists a skill twice; list each once"
    unknown = [n for n in enabled if n not in library]
    if unknown:
        return (f"[skills] enabled lists {unknown!r}, which are not in library = {library!r}; "
                "add them to library or remove them")
    return None


def _knob_from_table(name: str, table: dict[str, Any]) -> Knob:
    unknown = set(table) - _KNOB_KEYS
    if unknown:
        raise ConfigError(f"knob [{name}]: unknown key(s) {sorted(unknown)}; allowed keys are {sorted(_KNOB_KEYS)}")
    if "type" not in table or "value" not in table:
        raise ConfigError(f"knob [{name}]: needs both type and value, e.g.\n{_EXAMPLE}")
    low = high = None
    if "range" in table:
        rng = table["range"]
        if not isinstance(rng, list) or len(rng) != 2:
            raise ConfigError(f"knob [{name}]: range must be a list of two numbers, e.g. range = [0.0, 1.0]")
        low, high = rng
    doc = table.get("doc", "")
    if not isinstance(doc, str):
        raise ConfigError(f"knob [{name}]: doc must be a string")
    log = table.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"knob [{name}]: log must be true or false")
    choices = table.get("choices")
    if choices is not None and not isinstance(choices, list):
        raise ConfigError(f"knob [{name}]: choices must be a list, e.g. choices = [\"a\", \"b\"]")
    return Knob(name=name, type=table["type"], value=table["value"], low=low, high=high,
                choices=choices, log=log, doc=doc)


def parse_params(text: str, source: str | Path = "params.toml") -> HarnessParams:
    """Parse and validate params.toml text; an empty text declares no knobs."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    knobs: dict[str, Knob] = {}
    library: list[str] = []
    enabled: list[str] = []
    try:
        for name, table in raw.items():
            if not isinstance(table, dict):
                raise ConfigError(f"top-level key {name!r} is not a table; declare each knob as a table:\n{_EXAMPLE}")
            if name == SKILLS_TABLE:
                unknown = set(table) - {"library", "enabled"}
                if unknown:
                    raise ConfigError(f"[skills]: unknown key(s) {sorted(unknown)}; allowed are library and enabled")
                library, enabled = table.get("library", []), table.get("enabled", [])
                problem = _skills_problem(library, enabled)
                if problem:
                    raise ConfigError(problem)
                continue
            knobs[name] = _knob_from_table(name, table)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return HarnessParams(knobs=knobs, skills_library=list(library), skills_enabled=list(enabled))


def load_params(path: str | Path) -> HarnessParams:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; create it (one table per knob, e.g.\n{_EXAMPLE})")
    return parse_params(path.read_text(), str(path))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # repr always has '.', 'e', or is inf/nan: a TOML float
    if isinstance(v, str):
        # JSON string escapes are TOML basic-string escapes; TOML also forbids a raw DEL
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to params.toml")


def _toml_key(name: str) -> str:
    bare = name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    return name if bare else _toml_value(name)


def render_params(params: HarnessParams) -> str:
    """params.toml text for `params`; parse_params(render_params(p)) == p, knob order kept."""
    blocks: list[str] = []
    for name, k in params.knobs.items():
        lines = [f"[{_toml_key(name)}]", f"type = {_toml_value(k.type)}"]
        if k.low is not None:
            lines.append(f"range = [{_toml_value(k.low)}, {_toml_value(k.high)}]")
        if k.log:
            lines.append("log = true")
        if k.choices is not None:
            lines.append(f"choices = {_toml_value(list(k.choices))}")
        lines.append(f"value = {_toml_value(k.value)}")
        if k.doc:
            lines.append(f"doc = {_toml_value(k.doc)}")
        blocks.append("\n".join(lines))
    if params.skills_library or params.skills_enabled:
        blocks.append("\n".join([
            f"[{SKILLS_TABLE}]",
            f"library = {_toml_value(params.skills_library)}",
            f"enabled = {_toml_value(params.skills_enabled)}",
        ]))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def with_values(params: HarnessParams, values: dict[str, Any], skills_enabled: list[str] | None = None,
                source: str = "params.toml") -> HarnessParams:
    """A copy of `params` with new knob values (and optionally new enabled skills), validated."""
    unknown = sorted(set(values) - set(params.knobs))
    if unknown:
        raise ConfigError(f"{source}: no knob(s) named {unknown}; declared knobs are {list(params.knobs)}")
    try:
        knobs = {name: dataclasses.replace(k, value=values[name]) if name in values else k
                 for name, k in params.knobs.items()}
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    enabled = list(params.skills_enabled if skills_enabled is None else skills_enabled)
    problem = _skills_problem(params.skills_library, enabled)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    return HarnessParams(knobs=knobs, skills_library=list(params.skills_library), skills_enabled=enabled)


_TABLE_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(?:#.*)?$")
_ASSIGN = re.compile(r"^(\s*)(value|enabled)(\s*=\s*)(.*)$")


def _value_span(lines: list[str], i: int, rhs: str) -> int:
    """Index of the last line of a value starting on line i (arrays may span lines)."""
    if not rhs.lstrip().startswith("["):
        return i
    depth, j = 0, i
    while j < len(lines):
        text = rhs if j == i else lines[j]
        depth += text.count("[") - text.count("]")  # knob arrays hold simple scalars; good enough with the check below
        if depth <= 0:
            return j
        j += 1
    return i


def _trailing_comment(rhs: str) -> str:
    """The ` # ...` after a value, found where the text before it parses as a TOML value."""
    for pos in (i for i, c in enumerate(rhs) if c == "#"):
        try:
            tomllib.loads("v = " + rhs[:pos])
        except tomllib.TOMLDecodeError:
            continue
        return "  " + rhs[pos:] if not rhs[:pos].endswith(" ") else rhs[len(rhs[:pos].rstrip()):]
    return ""


def update_values_text(text: str, params: HarnessParams, source: str = "params.toml") -> str:
    """`text` with each knob's `value =` and the skills' `enabled =` set from `params`, keeping comments
    and layout; falls back to render_params when the file's layout is not the simple one."""
    lines = text.splitlines()
    table: str | None = None
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _TABLE_HEADER.match(line)
        if header:
            table = header.group(1)
        m = _ASSIGN.match(line)
        new_value = None
        if m and table is not None:
            if m.group(2) == "value" and table in params.knobs:
                new_value = params.knobs[table].value
            elif m.group(2) == "enabled" and table == SKILLS_TABLE:
                new_value = params.skills_enabled
        if new_value is None:
            out.append(line)
            i += 1
            continue
        end = _value_span(lines, i, m.group(4))
        comment = _trailing_comment(lines[end] if end != i else m.group(4))
        out.append(f"{m.group(1)}{m.group(2)}{m.group(3)}{_toml_value(new_value)}{comment}")
        i = end + 1
    updated = "\n".join(out) + ("\n" if text.endswith("\n") or not text else "")
    try:
        if parse_params(updated, source) == params:
            return updated
    except ConfigError:
        pass
    return render_params(params)
