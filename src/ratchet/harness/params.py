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
A knob named like a sampling parameter (`SAMPLING_KNOBS`: temperature, top_p, max_tokens, top_k,
frequency_penalty, presence_penalty, repetition_penalty) sets it on every model call, so its range or
choices must lie where that parameter is valid. Every error names the file, the knob and what to write instead.
Reading is tomllib; writing (`render_params`) and editing values in place with comments and layout kept
(`update_values_text`) are tomlkit documents.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from ratchet.config import ConfigError

KNOB_TYPES = ("float", "int", "bool", "choice", "str")
SKILLS_TABLE = "skills"
_KNOB_KEYS = {"type", "range", "log", "value", "choices", "doc"}
_EXAMPLE = '[temperature]\ntype = "float"\nrange = [0.0, 1.0]\nvalue = 0.0'


# Knobs named like a sampling parameter set it on every model call (worker.py): (integer only, lowest, whether
# the lowest is allowed, highest) as SamplingParams accepts them, so that no point a search picks breaks a call.
SAMPLING_KNOBS: dict[str, tuple[bool, float, bool, float]] = {
    "temperature": (False, 0.0, True, 5.0),
    "top_p": (False, 0.0, False, 1.0),
    "max_tokens": (True, 1, True, math.inf),
    "top_k": (True, 0, True, math.inf),  # 0 = off
    "frequency_penalty": (False, -2.0, True, 2.0),
    "presence_penalty": (False, -2.0, True, 2.0),
    "repetition_penalty": (False, 0.0, False, 10.0),  # 1 = off
}


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


def _sampling_problem(k: Knob) -> str | None:
    """Why a knob named like a sampling parameter cannot set it; None when every value it allows is valid."""
    integer, low, low_ok, high = SAMPLING_KNOBS[k.name]
    allowed = ("an int or choice knob" if integer else "a float, int or choice knob") + " with values"
    domain = f"{'[' if low_ok else '('}{low:g}, {high:g}{')' if math.isinf(high) else ']'}" + (" (integers)" if integer else "")
    if k.type not in (("int", "choice") if integer else ("float", "int", "choice")):
        return f"sets the sampling parameter {k.name}: declare {allowed} in {domain}, not type = {k.type!r}"
    values = list(k.choices) if k.type == "choice" else [k.low, k.high]
    for v in values:
        if not _is_number(v) or (integer and not float(v).is_integer()) or not (low < v or (low_ok and v == low)) \
                or v > high:
            where = "choices" if k.type == "choice" else "range"
            return f"sets the sampling parameter {k.name}, which must be in {domain}; {where} allows {v!r}: narrow it"
    return None


def _knob_problem(k: Knob) -> str | None:
    """Why a knob declaration is unusable, phrased as what to fix; None when it is fine."""
    problem = _knob_shape_problem(k)
    return problem if problem or k.name not in SAMPLING_KNOBS else _sampling_problem(k)


def _knob_shape_problem(k: Knob) -> str | None:
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


def render_params(params: HarnessParams) -> str:
    """params.toml text for `params`; parse_params(render_params(p)) == p, knob order kept."""
    doc = tomlkit.document()
    for name, k in params.knobs.items():
        table = tomlkit.table()
        table.add("type", k.type)
        if k.low is not None:
            table.add("range", [k.low, k.high])
        if k.log:
            table.add("log", True)
        if k.choices is not None:
            table.add("choices", list(k.choices))
        table.add("value", k.value)
        if k.doc:
            table.add("doc", k.doc)
        doc.add(name, table)
    if params.skills_library or params.skills_enabled:
        skills = tomlkit.table()
        skills.add("library", list(params.skills_library))
        skills.add("enabled", list(params.skills_enabled))
        doc.add(SKILLS_TABLE, skills)
    return tomlkit.dumps(doc)


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


def update_values_text(text: str, params: HarnessParams, source: str = "params.toml") -> str:
    """`text` with each knob's `value =` and the skills' `enabled =` set from `params`, keeping comments
    and layout (a tomlkit document edit); falls back to render_params when the edited text does not
    read back as `params` (a knob without a `value` line, a file tomlkit cannot parse)."""
    try:
        doc = tomlkit.parse(text)
        for name, knob in params.knobs.items():
            table = doc.get(name)
            if isinstance(table, MutableMapping) and "value" in table:
                table["value"] = knob.value
        skills = doc.get(SKILLS_TABLE)
        if isinstance(skills, MutableMapping) and "enabled" in skills:
            skills["enabled"] = list(params.skills_enabled)
        updated = tomlkit.dumps(doc)
        if parse_params(updated, source) == params:
            return updated
    except (TOMLKitError, ConfigError, ValueError):
        pass
    return render_params(params)
