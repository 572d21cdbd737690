"""Generic harness techniques: answer extraction, the format check, and the majority vote.

Copied into the sandbox next to `worker.py` and used through `ctx` (`ctx.extract`, `ctx.answer`,
`ctx.vote`; docs/harness.md), so it imports only the standard library. Nothing here knows what a task
is about: a strategy finds where an answer is written in a reply, never what it should be.
"""

import re

STRATEGIES = ("raw", "last_line", "last_number", "marker", "boxed", "regex")
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")
_DECORATION = " \t\n*`_\"'"


def extract(text, strategy="raw", marker="Answer:", pattern=""):
    """The answer written in `text` according to `strategy`, or None when it finds none (a format failure).

    raw: the whole reply. last_line: its last non-empty line. last_number: its last number (thousands
    separators dropped). marker: what follows the last `marker` (case-insensitive) to the end of that line.
    boxed: the content of the last \\boxed{...}. regex: the last match of `pattern` (its first group, if any).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown extraction strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if text is None:
        return None
    text = str(text)
    if strategy == "raw":
        found = text
    elif strategy == "last_line":
        lines = [line for line in text.splitlines() if line.strip(_DECORATION)]
        found = lines[-1] if lines else ""
    elif strategy == "last_number":
        numbers = _NUMBER.findall(text)
        found = numbers[-1].replace(",", "") if numbers else ""
    elif strategy == "marker":
        at = text.lower().rfind(str(marker).lower()) if marker else -1
        found = text[at + len(marker):].strip().split("\n", 1)[0] if at >= 0 else ""
    elif strategy == "boxed":
        found = _last_boxed(text) or ""
    else:
        found = _last_match(text, pattern)
    found = found.strip().strip(_DECORATION).strip()
    return found or None


def format_error(strategy="raw", marker="Answer:", pattern=""):
    """What a reply that failed `extract` should have held, as an instruction the model can follow."""
    return {
        "raw": "the reply was empty; give an answer",
        "last_line": "the reply was empty; give the answer on the last line",
        "last_number": "the reply holds no number; end it with the final number",
        "marker": f"the reply has no line starting with {marker!r}; end it with a line '{marker} <answer>'",
        "boxed": "the reply has no \\boxed{...}; put the final answer in \\boxed{}",
        "regex": f"no part of the reply matches the pattern {pattern!r}; write the answer in that form",
    }[strategy]


def normalize(answer):
    """The form answers are compared in for voting: case, spacing, a trailing period, and number spelling."""
    text = " ".join(str(answer).split()).rstrip(".").casefold()
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def majority(answers):
    """The most common answer (compared after `normalize`; ties go to the first seen), or None if there is none."""
    counts, first = {}, {}
    for a in answers:
        if a is None or not str(a).strip():
            continue
        key = normalize(a)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, a)
    if not counts:
        return None
    best = max(counts.values())
    return next(first[k] for k in first if counts[k] == best)


def _last_boxed(text):
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def _last_match(text, pattern):
    if not pattern:
        raise ValueError("extraction strategy 'regex' needs a pattern (the answer_regex knob)")
    try:
        matches = list(re.finditer(pattern, text))
    except re.error as e:
        raise ValueError(f"answer_regex {pattern!r} is not a valid regular expression: {e}") from None
    if not matches:
        return ""
    m = matches[-1]
    return (m.group(1) if m.re.groups else m.group(0)) or ""
