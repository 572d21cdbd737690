"""Checks on a candidate before any evaluation, and tamper checks on scorers and data after.

Everything here is a pure function of text: candidate code is compiled to find syntax errors but is
never imported or executed in this process (that happens only inside the sandbox, at evaluation).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import tokenize
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.config import ConfigError, GuardSection
from ratchet.globs import matches_any
from ratchet.harness.params import parse_params
from ratchet.loop.skills_check import new_skills, skill_problems

DEFAULT_PROTECTED = ("scorers/**", "suite/**", "data/**", "*.jsonl", "ratchet.toml")
PARAMS_FILE = "params.toml"
_SKIP_DIRS = {".git", "__pycache__", ".ratchet"}


@dataclass(frozen=True)
class GuardVerdict:
    ok: bool
    reasons: list[str] = field(default_factory=list)
    risky: bool = False
    risky_reasons: list[str] = field(default_factory=list)


def _unsafe_path(path: str) -> str | None:
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "" in parts or "\\" in path:
        return f"{path!r} is not a plain path inside the harness dir"
    if parts[0] == ".git":
        return f"{path!r} is inside .git"
    return None


def protected_violations(paths: Iterable[str], protected: Iterable[str] = ()) -> list[str]:
    protected = list(protected)
    reasons = []
    for path in paths:
        unsafe = _unsafe_path(path)
        if unsafe:
            reasons.append(f"touches {unsafe}")
        # the defaults are their own list, so a project's `!pattern` cannot re-include a scorer or data file
        elif (pat := matches_any(path, DEFAULT_PROTECTED) or matches_any(path, protected)) is not None:
            reasons.append(f"touches protected path {path!r} (pattern {pat!r}); scorers, suite data and the "
                           "project file are off limits to candidates")
    return reasons


def diff_line_count(diff_text: str) -> int:
    """Added plus removed lines in a unified diff, headers excluded."""
    count, in_hunk = 0, False
    lines = diff_text.splitlines()
    for i, line in enumerate(lines):
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        if line.startswith("diff --git ") or (line.startswith("--- ") and next_line.startswith("+++ ")):
            in_hunk = False  # file headers; a removed line may itself start with "--- "
        elif line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line.startswith(("+", "-")):
            count += 1
    return count


def syntax_problems(changes: dict[str, str | None]) -> list[str]:
    """compile() every changed .py file; never imports or runs it."""
    problems = []
    for path, text in changes.items():
        if text is None or not path.endswith(".py"):
            continue
        try:
            compile(text, path, "exec", dont_inherit=True)
        except SyntaxError as e:
            problems.append(f"{path}:{e.lineno}: syntax error: {e.msg}")
        except ValueError as e:  # e.g. null bytes
            problems.append(f"{path}: cannot compile: {e}")
    return problems


def params_problems(changes: dict[str, str | None]) -> list[str]:
    if PARAMS_FILE not in changes:
        return []
    text = changes[PARAMS_FILE]
    if text is None:
        return [f"deletes {PARAMS_FILE}; edit its values instead"]
    try:
        parse_params(text, PARAMS_FILE)
    except ConfigError as e:
        return [str(e)]
    return []


def _declarations(text: str) -> object:
    params = parse_params(text, PARAMS_FILE)
    return ([(k.name, k.type, k.low, k.high, k.choices, k.log) for k in params.knobs.values()],
            params.skills_library)


def check_candidate(changes: dict[str, str | None], diff_text: str, guard: GuardSection,
                    parent_files: dict[str, str] | None = None) -> GuardVerdict:
    """The verdict on a candidate: `changes` maps each changed harness path to its new text (None:
    deleted), `diff_text` is its unified diff against the parent."""
    reasons: list[str] = []
    if not changes:
        reasons.append("the candidate changes nothing")
    reasons += protected_violations(changes, guard.protected)
    lines = diff_line_count(diff_text)
    if lines > guard.max_diff_lines:
        reasons.append(f"diff has {lines} changed lines, over the limit of {guard.max_diff_lines} "
                       "([guard] max_diff_lines); propose a smaller change")
    reasons += syntax_problems(changes)
    reasons += params_problems(changes)
    after = {p: t for p, t in {**(parent_files or {}), **changes}.items() if t is not None}
    harness = "harness.py" in after  # a research repo's skills/ dir is not a harness's skill library
    if harness:
        reasons += skill_problems(after, changes)

    risky: list[str] = []
    if harness:  # its code runs in every episode that enables it: a person may want to read it first
        risky += [f"adds a new skill skills/{name}.py" for name in new_skills(parent_files or {}, changes)]
    for path in changes:
        if (pat := matches_any(path, guard.risky_paths)) is not None:
            risky.append(f"touches {path!r} (risky pattern {pat!r})")
    if lines > guard.max_diff_lines / 2:
        risky.append(f"large diff: {lines} changed lines (over half of max_diff_lines = {guard.max_diff_lines})")
    new_params = changes.get(PARAMS_FILE)
    old_params = (parent_files or {}).get(PARAMS_FILE)
    if new_params is not None and old_params is not None and not params_problems(changes):
        try:
            if _declarations(new_params) != _declarations(old_params):
                risky.append("params.toml changes knob declarations (types, ranges, choices or the skill library)")
        except ConfigError:
            pass  # the parent's own params being invalid is not this candidate's fault
    return GuardVerdict(ok=not reasons, reasons=reasons, risky=bool(risky), risky_reasons=risky)


# --- scorer / data tamper detection -------------------------------------------------------------

def fingerprint_paths(root: str | Path, patterns: Iterable[str]) -> dict[str, str]:
    """sha256 of every file under `root` whose relative path matches one of `patterns`."""
    root = Path(root)
    patterns = list(patterns)
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS for part in rel.parts) or not path.is_file():
            continue
        rel_posix = rel.as_posix()
        if matches_any(rel_posix, patterns) is not None:
            out[rel_posix] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def check_fingerprints(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """What changed between two fingerprint maps; empty when nothing did."""
    problems = [f"{p} changed (sha256 {expected[p][:12]} -> {actual[p][:12]})"
                for p in sorted(expected) if p in actual and actual[p] != expected[p]]
    problems += [f"{p} was removed" for p in sorted(expected) if p not in actual]
    problems += [f"{p} was added" for p in sorted(actual) if p not in expected]
    return problems


# --- duplicate proposals ------------------------------------------------------------------------

def _normalize_python(text: str) -> str:
    # the AST ignores comments, blank lines, spacing, quote style and redundant parentheses;
    # string contents (prompts, docstrings) still count, because they change behaviour
    try:
        return ast.dump(ast.parse(text))
    except (SyntaxError, ValueError):
        pass
    try:
        toks = [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING)]
        return " ".join(toks)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return _normalize_text(re.sub(r"(?m)#.*$", "", text))


def _normalize_text(text: str) -> str:
    return " ".join(text.split())


def _normalize_toml(text: str) -> str:
    try:
        return json.dumps(tomllib.loads(text), sort_keys=True)
    except tomllib.TOMLDecodeError:
        return _normalize_text(re.sub(r"(?m)^\s*#.*$", "", text))


def normalize_for_fingerprint(path: str, text: str) -> str:
    if path.endswith(".py"):
        return _normalize_python(text)
    if path.endswith(".toml"):
        return _normalize_toml(text)
    return _normalize_text(text)


def proposal_fingerprint(files: dict[str, str | None]) -> str:
    """A hash of the files that ignores comments and formatting, so near-identical proposals collide."""
    h = hashlib.sha256()
    for path in sorted(files):
        text = files[path]
        if text is None:
            continue
        h.update(path.encode() + b"\0" + normalize_for_fingerprint(path, text).encode() + b"\0")
    return h.hexdigest()
