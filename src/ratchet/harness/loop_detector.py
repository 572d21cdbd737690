"""The loop detector: an agent that repeats itself is stopped, and the rule that saw it is named.

Three rules, over the actions an episode asks the parent for (model calls, skills, local tools), checked
before each action is served:

- **repeat**: the same action `repeats` times in a row (compared whole);
- **cycle**: the last 2p actions are one sequence of p >= 2 actions done twice (A-B-A-B, A-B-C-A-B-C),
  within the last `window` actions;
- **near-repeat**: `repeats` actions in a row, each near-identical to the one before: the same kind, and
  each of its parts (a message, an argument) either the same or at least `similarity` alike (difflib's
  ratio), e.g. the same long reply with a word changed, sent back with the same tool result.

Cycles and near-repeats compare what is *new* in an action. A conversation grows with every step, so a
stuck agent never sends the same request twice: it appends the same reply and the same tool result
again. For a model call the new part is the messages after those it shares with the previous model call
(all of them when it shares none, or when it is the previous call again); for a skill or tool, its name
and arguments. A part shorter than `MIN_NEAR_CHARS` must be the same to count: in `calculator("12+7")`
then `calculator("12+8")`, or in two short answers sent back with the same format error, the few
characters that differ are the whole point.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MIN_NEAR_CHARS = 64  # shorter actions differ meaningfully by a character: never called near-repeats
_COMPARED_CHARS = 2000  # of a long action, its first and last this many characters are compared (difflib is quadratic)


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _clipped(text: str) -> str:
    return text if len(text) <= 2 * _COMPARED_CHARS else text[:_COMPARED_CHARS] + text[-_COMPARED_CHARS:]


def similarity(a: str, b: str) -> float:
    """difflib's ratio of two action texts (1.0: identical), with the cheap upper bounds tried first."""
    if a == b:
        return 1.0
    matcher = difflib.SequenceMatcher(None, _clipped(a), _clipped(b), autojunk=False)
    if matcher.real_quick_ratio() == 0.0 or matcher.quick_ratio() == 0.0:
        return 0.0
    return matcher.ratio()


@dataclass
class LoopDetector:
    repeats: int = 3  # the same (or a near-identical) action this many times in a row ends the episode
    window: int = 8  # actions in which a cycle is looked for; 0 turns the cycle rule off
    near: float = 0.95  # similarity at which two actions count as the same; 1.0 turns the near rule off
    _last_whole: str | None = field(default=None, repr=False)
    _whole_repeats: int = 0
    _last_new: list[tuple[str, str]] | None = field(default=None, repr=False)
    _near_repeats: int = 0
    _recent: deque[str] = field(default_factory=deque, repr=False)  # digests of the new parts, newest last
    _last_messages: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.repeats < 2:
            raise ValueError(f"repeats must be >= 2, got {self.repeats}")
        if self.window != 0 and self.window < 4:
            raise ValueError(f"window must be 0 (off) or >= 4 (room for A-B-A-B), got {self.window}")
        if not 0.0 < self.near <= 1.0:
            raise ValueError(f"similarity must be in (0, 1] (1 = only identical actions), got {self.near}")

    def new_part(self, action: dict[str, Any]) -> list[tuple[str, str]]:
        """What this action adds, as labelled parts: for a model call, the messages after those it shares with
        the previous call (and its sampling params); for a tool or skill, its name and arguments."""
        if action.get("op") != "llm":
            args = action.get("args") or []
            kwargs = action.get("kwargs") or {}
            return ([("op", f"{action.get('op')}:{action.get('name')}")]
                    + [("arg", a if isinstance(a, str) else _text(a)) for a in args]
                    + [(f"kw:{k}", v if isinstance(v, str) else _text(v)) for k, v in sorted(kwargs.items())])
        messages = list(action.get("messages") or [])
        shared = 0
        for mine, before in zip(messages, self._last_messages):
            if mine != before:
                break
            shared += 1
        self._last_messages = messages
        fresh = messages[shared:] or messages  # the previous call again: all of it is "new" again
        return [("op", "llm"), ("params", _text(action.get("params")))] + [
            (str(m.get("role")) if isinstance(m, dict) else "?", str(m.get("content")) if isinstance(m, dict) else _text(m))
            for m in fresh]

    def near_identical(self, a: list[tuple[str, str]], b: list[tuple[str, str]]) -> bool:
        """The same kind of action, each part the same or (long enough and) at least `near` alike."""
        if self.near >= 1.0 or [label for label, _ in a] != [label for label, _ in b]:
            return False
        return all(x == y or (min(len(x), len(y)) >= MIN_NEAR_CHARS and similarity(x, y) >= self.near)
                   for (_, x), (_, y) in zip(a, b))

    def check(self, action: dict[str, Any]) -> str | None:
        """Record one action; the rule and what it saw when the episode must end, else None."""
        whole = _digest(_text(action))
        self._whole_repeats = self._whole_repeats + 1 if whole == self._last_whole else 1
        self._last_whole = whole
        new = self.new_part(action)
        near = self._last_new is not None and self.near_identical(new, self._last_new)
        self._near_repeats = self._near_repeats + 1 if near else 1
        self._last_new = new
        self._recent.append(_digest(_text(new)))
        while len(self._recent) > max(self.window, 1):
            self._recent.popleft()
        what = action.get("op", "action")
        if self._whole_repeats >= self.repeats:
            return f"loop (repeat): the same {what} was repeated {self._whole_repeats} times in a row"
        if (period := self._cycle()) is not None:
            return (f"loop (cycle): the last {2 * period} actions are a cycle of {period} done twice "
                    f"(within the last {self.window} actions)")
        if self._near_repeats >= self.repeats:
            return (f"loop (near-repeat): {self._near_repeats} {what} actions in a row, each at least "
                    f"{self.near:g} alike to the one before")
        return None

    def _cycle(self) -> int | None:
        recent = list(self._recent)
        for period in range(2, min(self.window, len(recent)) // 2 + 1):
            last, before = recent[-period:], recent[-2 * period:-period]
            if last == before and len(set(last)) > 1:  # a cycle of one action is the repeat rules' business
                return period
        return None
