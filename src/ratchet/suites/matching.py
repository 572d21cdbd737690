"""How a model's reply is compared with a gold answer: final-answer extraction and the match modes.

Extraction turns a chatty reply ("Let me think... so the answer is **42**.") into the string a
verifier should see. The rules, in order, and the first that finds something wins:
``\\boxed{...}`` (last one), ``<answer>...</answer>`` (last one), the text after the last
"answer:" / "answer is" / "result:" marker (to the end of its line), and, when a number is expected,
the last number in the reply. Otherwise the whole reply, stripped.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Literal

MatchMode = Literal["exact", "normalized", "numeric", "regex"]
MATCH_MODES: tuple[MatchMode, ...] = ("exact", "normalized", "numeric", "regex")

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_MARKER = re.compile(
    r"\b(?:final answer|answer|result)\b\**\s*(?:is\b\s*[:=]?|[:=])\s*(.+)", re.IGNORECASE
)
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_DECORATION = " \t\n*`_$\"'.,;:!"  # markdown emphasis, quotes and trailing sentence marks around an answer


@dataclass(frozen=True)
class Extraction:
    text: str
    rule: str  # which rule found it: boxed, answer_tag, marker, last_number, whole_reply


def looks_numeric(text: str) -> bool:
    return parse_number(text) is not None


def parse_number(text: str) -> float | None:
    """A number written as the whole of `text` (thousands separators, a leading + and a trailing
    period allowed), or None."""
    t = text.strip().rstrip(".").replace(",", "").replace("\u2212", "-").lstrip("+")
    if not t:
        return None
    try:
        value = float(t)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def canonical_number(text: str) -> str:
    """'1,234' -> '1234', '+7' -> '7', '12.0' -> '12'; anything not a number comes back stripped."""
    value = parse_number(text)
    if value is None:
        return text.strip()
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return text.strip().rstrip(".").replace(",", "").lstrip("+")


def last_boxed(reply: str) -> str | None:
    """The content of the last \\boxed{...}, braces balanced."""
    start = reply.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(reply)):
        if reply[j] == "{":
            depth += 1
        elif reply[j] == "}":
            depth -= 1
            if depth == 0:
                return reply[i + 1 : j]
    return None


def last_number(reply: str) -> str | None:
    found = _NUMBER.findall(reply)
    return found[-1] if found else None


def extract_final_answer(reply: str, expect_number: bool = False) -> Extraction:
    """The final answer inside a reply; see the module docstring for the rules."""
    boxed = last_boxed(reply)
    if boxed is not None and boxed.strip():
        return _finish(boxed, "boxed", expect_number)
    tags = _ANSWER_TAG.findall(reply)
    if tags and tags[-1].strip():
        return _finish(tags[-1], "answer_tag", expect_number)
    markers = [m for m in _MARKER.finditer(reply) if m.group(1).strip(_DECORATION)]
    if markers:
        return _finish(markers[-1].group(1), "marker", expect_number)
    if expect_number:
        number = last_number(reply)
        if number is not None:
            return Extraction(canonical_number(number), "last_number")
    return Extraction(reply.strip(), "whole_reply")


def _finish(text: str, rule: str, expect_number: bool) -> Extraction:
    text = text.strip().strip(_DECORATION).strip()
    if expect_number and not looks_numeric(text):
        number = last_number(text)  # "x = 42 apples" -> "42"
        if number is not None:
            return Extraction(canonical_number(number), rule)
    return Extraction(canonical_number(text) if expect_number else text, rule)


def normalize_text(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed."""
    return " ".join(text.lower().translate(_PUNCT).split())


def numbers_close(a: float, b: float, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


def matches(mode: MatchMode, answer: str, gold: str, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Whether `answer` (already extracted) matches `gold` under `mode`.

    exact: identical after stripping surrounding whitespace. normalized: equal after `normalize_text`.
    numeric: both parse as numbers within the tolerance. regex: `gold` is a pattern that must match the
    whole answer (case-sensitive unless the pattern says `(?i)`).
    """
    if mode == "exact":
        return answer.strip() == gold.strip()
    if mode == "normalized":
        return normalize_text(answer) == normalize_text(gold)
    if mode == "numeric":
        a, g = parse_number(answer), parse_number(gold)
        if g is None:
            raise ValueError(f"numeric match: gold answer {gold!r} is not a number; use match = \"normalized\"")
        return a is not None and numbers_close(a, g, rel_tol, abs_tol)
    if mode == "regex":
        try:
            return re.fullmatch(gold, answer.strip(), re.DOTALL) is not None
        except re.error as e:
            raise ValueError(f"regex match: gold answer {gold!r} is not a valid regular expression: {e}") from None
    raise ValueError(f"unknown match mode {mode!r}; use one of {', '.join(MATCH_MODES)}")


def match_reply(
    mode: MatchMode, reply: str, gold: str, rel_tol: float = 1e-6, abs_tol: float = 1e-9
) -> tuple[bool, Extraction]:
    """Match the reply as written; failing that (except in exact mode), its extracted final answer."""
    whole = Extraction(reply.strip(), "whole_reply")
    if matches(mode, whole.text, gold, rel_tol, abs_tol) or mode == "exact":
        return matches(mode, whole.text, gold, rel_tol, abs_tol), whole
    extracted = extract_final_answer(reply, expect_number=mode == "numeric")
    return matches(mode, extracted.text, gold, rel_tol, abs_tol), extracted
