"""Globs are gitignore patterns through pathspec; on the patterns projects use they match as the former
hand-written regexes did (kept here as the reference), and where they differ, they follow gitignore."""

import itertools
import re

import pytest

from ratchet.config import ConfigError, validate_project
from ratchet.globs import glob_problem, matches_any
from ratchet.loop.guard import protected_violations


def old_regex(pattern: str) -> re.Pattern[str]:
    """The former matcher (guard.py before pathspec)."""
    pat = pattern.strip().removeprefix("./")
    anchored = pat.startswith("/") or "/" in pat.rstrip("/")
    pat = pat.lstrip("/")
    if pat.endswith("/"):
        pat += "**"
    out, i = [], 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("/**", i) and i + 3 == len(pat):
            out.append("(?:/.*)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif pat[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pat[i] == "?":
            out.append("[^/]")
            i += 1
        elif pat[i] == "[" and "]" in pat[i + 1:]:
            j = pat.index("]", i + 1)
            out.append("[" + pat[i + 1:j].replace("!", "^", 1) + "]")
            i = j + 1
        else:
            out.append(re.escape(pat[i]))
            i += 1
    body = "".join(out)
    return re.compile(("^" if anchored else "^(?:.*/)?") + body + "$")


PATTERNS = ["scorers/**", "suite/**", "data/**", "*.jsonl", "ratchet.toml", "skills/**", "sandbox*", "params.toml",
            "train.py", "src/*.py", "**/cache/**", "/top.txt", "docs/", "a/**/b.py", "*.py", "conf?.toml", "[ab].txt", "lib/*"]
PATHS = ["scorers/x.py", "scorers", "lib/scorers/y.py", "suite/a/b.json", "a/b.jsonl", "x.jsonl", "ratchet.toml",
         "sub/ratchet.toml", "skills/calc.py", "skills", "sandbox_util.py", "lib/sandbox.py", "params.toml", "x/params.toml",
         "train.py", "src/a.py", "src/b/a.py", "x/cache/y", "cache/y", "top.txt", "x/top.txt", "docs/a.md", "docs",
         "a/b.py", "a/x/y/b.py", "conf1.toml", "a.txt", "c.txt", "lib/x", "lib/x/y", "data/x.csv", "data", "harness.py",
         "ratchet.toml/x", "train.py/x"]
# gitignore: `dir/**` and `dir/` match below a directory, not a file named `dir`; a matched name covers a
# directory and everything below it (`train.py/x`, `lib/x/y` under `lib/*`)
GITIGNORE_DIFFERENCES = {("scorers/**", "scorers"), ("data/**", "data"), ("skills/**", "skills"), ("docs/", "docs"),
                         ("ratchet.toml", "ratchet.toml/x"), ("train.py", "train.py/x"), ("*.py", "train.py/x"),
                         ("lib/*", "lib/scorers/y.py"), ("lib/*", "lib/x/y")}


def test_same_matches_as_the_former_regexes_except_gitignore_rules():
    differ = {(pat, path) for pat, path in itertools.product(PATTERNS, PATHS)
              if bool(old_regex(pat).match(path)) != (matches_any(path, [pat]) is not None)}
    assert differ == GITIGNORE_DIFFERENCES


def test_negation_last_match_wins_and_reports_the_deciding_pattern():
    pats = ["  ./src/**  ", "!src/secret.py", "", "*.md"]
    assert matches_any("src/a.py", pats) == "  ./src/**  "
    assert matches_any("src/secret.py", pats) is None
    assert matches_any("src/README.md", pats) == "*.md"


def test_a_project_negation_cannot_unprotect_the_defaults():
    assert protected_violations(["scorers/score.py"], ["!scorers/score.py"])
    assert protected_violations(["notes/x.txt"], ["notes/", "!notes/ok.txt"])
    assert not protected_violations(["notes/ok.txt"], ["notes/", "!notes/ok.txt"])


def test_bad_patterns_are_config_errors(tmp_path):
    assert glob_problem("a\\") and glob_problem("!") and glob_problem("\\!x") is None
    with pytest.raises(ConfigError, match="gitignore-style"):
        validate_project({"suite": {"kind": "jsonl", "path": "t.jsonl"}, "guard": {"protected": ["!"]}}, tmp_path)
