"""Path globs as in .gitignore (pathspec's GitIgnoreSpec): protected paths, risky paths, research editables.

Paths are relative and posix (`scorers/x.py`). A pattern without a slash (other than a trailing one)
matches a name at any depth, and a matched directory covers everything below it (`data` protects
`data/x.csv`, `lib/data/y`); one with a slash is anchored to the root (`scorers/**` does not match
`lib/scorers/y.py`); `*` and `?` stay within a segment, `**` spans segments, `[...]` is a class,
`\\` escapes, a leading `!` re-includes what an earlier pattern of the same list matched (last match
wins), `#` starts a comment. Patterns are stripped of surrounding spaces and a leading `./`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from pathspec import GitIgnoreSpec


def _clean(pattern: str) -> str:
    return pattern.strip().removeprefix("./")


@lru_cache(maxsize=256)
def _spec(patterns: tuple[str, ...]) -> GitIgnoreSpec:
    spec = GitIgnoreSpec.from_lines(patterns)
    assert len(spec.patterns) == len(patterns), "blank patterns are dropped before compiling"
    return spec


def glob_problem(pattern: str) -> str | None:
    """Why `pattern` is not a usable glob, or None."""
    if not isinstance(pattern, str):
        return f"{pattern!r} is not a string"
    try:
        _spec((_clean(pattern),) if pattern.strip() else ())
    except ValueError as e:  # pathspec's GitIgnorePatternError is a ValueError
        return f"{pattern!r} is not a valid gitignore-style pattern ({e}); escape a literal '!' or '\\' with '\\'"
    return None


def check_globs(patterns: list[str]) -> list[str]:
    """`patterns` unchanged when every one is usable; else a ValueError naming the first bad one (for validators)."""
    for pattern in patterns:
        problem = glob_problem(pattern)
        if problem:
            raise ValueError(problem)
    return patterns


def matches_any(path: str, patterns: Iterable[str]) -> str | None:
    """The pattern (as written) that decides that `path` matches, or None (unmatched, or re-included by `!`)."""
    given = [p for p in patterns if p.strip()]
    result = _spec(tuple(_clean(p) for p in given)).check_file(path)
    return given[result.index] if result.include else None
