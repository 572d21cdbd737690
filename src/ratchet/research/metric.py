"""Reading a metric out of a command's output: a JSON line, a `name: value` line, or a user regex.

Pure functions of text. The last reading in the output wins (training scripts often print the metric
as they go, and the final one is the result).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)"


@dataclass(frozen=True)
class Reading:
    value: float | None  # None: no metric found
    source: str  # "json", "line", "regex" or "" when nothing was found

    @property
    def found(self) -> bool:
        return self.value is not None

    @property
    def finite(self) -> bool:
        return self.value is not None and math.isfinite(self.value)


def _number(x: object) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str) and re.fullmatch(NUMBER, x.strip(), re.IGNORECASE):
        return float(x.strip())
    return None


def from_json_lines(output: str, name: str) -> float | None:
    """The value under key `name` in the last line that is a JSON object holding it."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and name in obj:
            return _number(obj[name])
    return None


def from_name_lines(output: str, name: str) -> float | None:
    """The last `name: value` or `name = value` in the output (the form autoresearch's train.py prints)."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}\s*[:=]\s*({NUMBER})(?![\w.])", re.IGNORECASE)
    matches = pattern.findall(output)
    return float(matches[-1]) if matches else None


def from_regex(output: str, regex: str) -> float | None:
    pattern = re.compile(regex, re.MULTILINE)
    last = None
    for m in pattern.finditer(output):
        text = m.group("value") if "value" in pattern.groupindex else m.group(1)
        if text is not None and (v := _number(text)) is not None:
            last = v
    return last


def read_metric(output: str, name: str, regex: str | None = None) -> Reading:
    """The metric in `output`: by `regex` when given, else a JSON line, else a `name: value` line."""
    if regex is not None:
        v = from_regex(output, regex)
        return Reading(v, "regex" if v is not None else "")
    v = from_json_lines(output, name)
    if v is not None:
        return Reading(v, "json")
    v = from_name_lines(output, name)
    return Reading(v, "line" if v is not None else "")
