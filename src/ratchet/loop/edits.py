"""Turn a proposer's text into file edits, and apply them to a dict of files.

Two formats are understood, and may be mixed in one answer:

* search/replace blocks (a path line, then the block; an empty SEARCH replaces or creates the whole file)

      path: prompts/system.md
      <<<<<<< SEARCH
      Answer the question.
      =======
      Answer the question. Think step by step.
      >>>>>>> REPLACE

* unified diffs (`--- a/path`, `+++ b/path`, `@@ ... @@` hunks; `/dev/null` creates or deletes a file).
  Hunks are located by their text, using the line numbers only to choose between equal matches,
  because model-written line numbers and counts are often wrong.

Errors say which block, which file, and what to do about it, so a proposer can retry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

FORMAT_HELP = """\
Write each edit as a search/replace block: a line naming the file, then

path/to/file
<<<<<<< SEARCH
exact lines copied from the current file
=======
the lines that replace them
>>>>>>> REPLACE

The SEARCH text must match the file exactly and only once (add surrounding lines to make it unique).
An empty SEARCH section replaces the whole file, or creates it if it does not exist."""

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_LOOSE_HUNK = re.compile(r"^@@.*@@")
_PATH_PREFIX = re.compile(r"^(?:#+\s*|\*+\s*|(?:path|file(?:name)?)\s*[:=]\s*)", re.IGNORECASE)


class EditError(ValueError):
    """Proposer output that cannot be turned into edits; the message says which block and why."""


@dataclass(frozen=True)
class SearchReplace:
    index: int  # 1-based block number in the answer, for error messages
    path: str
    search: str
    replace: str


@dataclass(frozen=True)
class Hunk:
    old_start: int | None
    lines: tuple[tuple[str, str], ...]  # (" " | "-" | "+", text without newline)

    def old(self) -> list[str]:
        return [t for op, t in self.lines if op != "+"]

    def new(self) -> list[str]:
        return [t for op, t in self.lines if op != "-"]


@dataclass(frozen=True)
class FileDiff:
    index: int
    path: str
    create: bool = False
    delete: bool = False
    hunks: tuple[Hunk, ...] = field(default_factory=tuple)


Edit = SearchReplace | FileDiff


def normalize_path(raw: str, where: str) -> str:
    """A harness-relative posix path, or EditError when it is absolute or leaves the harness dir."""
    text = raw.strip().strip("`'\"").strip()
    if text.startswith(("a/", "b/")) and where.startswith("diff"):
        text = text[2:]
    if not text:
        raise EditError(f"{where}: no file path given; put the file's path on the line before the block")
    if text.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", text):
        raise EditError(f"{where}: path {text!r} is absolute; give it relative to the harness dir")
    parts = [p for p in PurePosixPath(text.replace("\\", "/")).parts if p != "."]
    if ".." in parts or not parts:
        raise EditError(f"{where}: path {text!r} leaves the harness dir; give a path inside it")
    if parts[0] == ".git":
        raise EditError(f"{where}: path {text!r} is inside .git; edit harness files only")
    return "/".join(parts)


def _path_before(lines: list[str], at: int) -> str | None:
    """The file path named just above a SEARCH marker (skipping blanks and code fences)."""
    i = at - 1
    while i >= 0 and (not lines[i].strip() or lines[i].strip().startswith("```")):
        i -= 1
    if i < 0:
        return None
    candidate = lines[i].strip()
    for _ in range(3):  # "### FILE: x", "**path:** x"
        candidate = _PATH_PREFIX.sub("", candidate.strip("`*").strip()).strip()
    candidate = candidate.strip("`*").strip().rstrip(":")
    if not candidate or " " in candidate or _REPLACE.match(lines[i]):
        return None
    return candidate


def _parse_search_replace(lines: list[str], start: int, index: int,
                          last_path: str | None) -> tuple[SearchReplace, int]:
    where = f"block {index}"
    raw_path = _path_before(lines, start) or last_path
    if raw_path is None:
        raise EditError(f"{where} (line {start + 1}): no file path before <<<<<<< SEARCH; "
                        "write the file's path on the line above it")
    path = normalize_path(raw_path, f"{where}")
    divider = end = None
    for j in range(start + 1, len(lines)):
        if _SEARCH.match(lines[j]):
            break
        if divider is None and _DIVIDER.match(lines[j]):
            divider = j
        elif divider is not None and _REPLACE.match(lines[j]):
            end = j
            break
    if divider is None:
        raise EditError(f"{where} ({path}): <<<<<<< SEARCH at line {start + 1} has no ======= divider")
    if end is None:
        raise EditError(f"{where} ({path}): <<<<<<< SEARCH at line {start + 1} has no closing >>>>>>> REPLACE")
    search = "".join(s + "\n" for s in lines[start + 1:divider])
    replace = "".join(s + "\n" for s in lines[divider + 1:end])
    return SearchReplace(index, path, search, replace), end + 1


def _parse_hunk_body(lines: list[str], i: int, old_n: int | None,
                     new_n: int | None) -> tuple[list[tuple[str, str]], int]:
    body: list[tuple[str, str]] = []
    seen_old = seen_new = 0
    while i < len(lines):
        if old_n is not None and new_n is not None and seen_old >= old_n and seen_new >= new_n:
            break
        line = lines[i]
        if line.startswith("\\"):  # "\ No newline at end of file"
            i += 1
            continue
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        if _LOOSE_HUNK.match(line) or (line.startswith("--- ") and next_line.startswith("+++ ")):
            break  # the next hunk or the next file, whatever the (often wrong) counts said
        op = line[:1] if line[:1] in (" ", "-", "+") else (" " if line == "" else None)
        if op is None:
            break
        body.append((op, line[1:]))
        seen_old += op != "+"
        seen_new += op != "-"
        i += 1
    while body and body[-1] == (" ", ""):
        body.pop()  # trailing blank lines are the answer's end (or context that locates nothing)
    return body, i


def _parse_diff(lines: list[str], start: int, index: int) -> tuple[FileDiff, int]:
    old_raw = lines[start][4:].split("\t")[0].strip()
    new_raw = lines[start + 1][4:].split("\t")[0].strip()
    create, delete = old_raw == "/dev/null", new_raw == "/dev/null"
    where = f"diff {index}"
    path = normalize_path(old_raw if delete else new_raw, where)
    hunks: list[Hunk] = []
    i = start + 2
    while i < len(lines) and _LOOSE_HUNK.match(lines[i]):
        m = _HUNK.match(lines[i])
        old_start = int(m.group(1)) if m else None
        old_n = (int(m.group(2)) if m.group(2) is not None else 1) if m else None
        new_n = (int(m.group(4)) if m.group(4) is not None else 1) if m else None
        body, i = _parse_hunk_body(lines, i + 1, old_n, new_n)
        if not body:
            raise EditError(f"{where} ({path}): hunk at line {i} has no lines")
        hunks.append(Hunk(old_start, tuple(body)))
    if not hunks and not delete:
        raise EditError(f"{where} ({path}): --- / +++ headers at line {start + 1} are not followed by an @@ hunk")
    return FileDiff(index, path, create=create, delete=delete, hunks=tuple(hunks)), i


def parse_edits(text: str) -> list[Edit]:
    """All edit blocks in a proposer's answer, in order; EditError when there are none or one is malformed."""
    lines = text.replace("\r\n", "\n").split("\n")
    edits: list[Edit] = []
    last_path: str | None = None
    i = 0
    while i < len(lines):
        if _SEARCH.match(lines[i]):
            edit, i = _parse_search_replace(lines, i, len(edits) + 1, last_path)
            last_path = edit.path
            edits.append(edit)
        elif lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            edit, i = _parse_diff(lines, i, len(edits) + 1)
            edits.append(edit)
        elif _REPLACE.match(lines[i]):  # a stray ======= may be a markdown heading; a stray REPLACE is a broken block
            raise EditError(f"line {i + 1}: {lines[i].strip()!r} without a preceding <<<<<<< SEARCH")
        else:
            i += 1
    if not edits:
        raise EditError("no edits found; " + FORMAT_HELP)
    return edits


def _find_lines(haystack: list[str], needle: list[str], key) -> list[int]:
    keyed_hay = [key(s) for s in haystack]
    keyed_needle = [key(s) for s in needle]
    n = len(needle)
    return [i for i in range(len(haystack) - n + 1) if keyed_hay[i:i + n] == keyed_needle]


def _locate(content: str, search: str, where: str, hint: int | None = None) -> tuple[int, int, str]:
    """(start, end) character offsets of `search` in `content`: exact first, then line-wise ignoring
    trailing whitespace, then ignoring indentation. A line hint picks the nearest of several matches."""
    if search in content and (content.count(search) == 1 or hint is None):
        if content.count(search) > 1:
            raise EditError(f"{where}: SEARCH text matches {content.count(search)} places; "
                            "include more surrounding lines so it matches exactly one")
        start = content.index(search)
        return start, start + len(search), "exact"
    lines = content.splitlines(keepends=True)
    needle = search.splitlines()
    while needle and not needle[-1].strip():
        needle.pop()
    while needle and not needle[0].strip():
        needle.pop(0)
    if not needle:
        raise EditError(f"{where}: SEARCH text is only blank lines; copy real lines from the file")
    for how, key in (("trailing-space", str.rstrip), ("indentation", str.strip)):
        found = _find_lines([s.rstrip("\n") for s in lines], needle, key)
        if len(found) > 1 and hint is not None:
            found = [min(found, key=lambda i: abs(i + 1 - hint))]
        if len(found) > 1:
            raise EditError(f"{where}: SEARCH text matches {len(found)} places; "
                            "include more surrounding lines so it matches exactly one")
        if found:
            start = sum(len(s) for s in lines[:found[0]])
            end = start + sum(len(s) for s in lines[found[0]:found[0] + len(needle)])
            return start, end, how
    first = needle[0].strip()
    raise EditError(f"{where}: SEARCH text not found (its first line is {first[:80]!r}); "
                    "copy the lines exactly from the current file")


def _apply_search_replace(files: dict[str, str], e: SearchReplace) -> None:
    where = f"block {e.index} ({e.path})"
    if not e.search.strip():
        files[e.path] = e.replace  # empty SEARCH: whole-file replacement or a new file
        return
    if e.path not in files:
        raise EditError(f"{where}: no such file; existing files are {sorted(files)[:20]}. "
                        "To create a file, leave the SEARCH section empty")
    content = files[e.path]
    start, end, how = _locate(content, e.search, where)
    replace = e.replace
    if how == "indentation":
        replace = _reindent(replace, content[start:end], e.search)
    if not content[start:end].endswith("\n") and replace.endswith("\n"):
        replace = replace[:-1]  # the match was the file's last line, which has no newline
    files[e.path] = content[:start] + replace + content[end:]


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _reindent(replace: str, matched: str, search: str) -> str:
    """Shift the replacement by the indentation the model dropped from its SEARCH text."""
    first_file = next((s for s in matched.splitlines() if s.strip()), "")
    first_search = next((s for s in search.splitlines() if s.strip()), "")
    have, want = _indent(first_search), _indent(first_file)
    if len(want) <= len(have) or not want.endswith(have):
        return replace
    extra = want[:len(want) - len(have)]
    return "".join(extra + s if s.strip() else s for s in replace.splitlines(keepends=True))


def _apply_diff(files: dict[str, str], d: FileDiff) -> None:
    where = f"diff {d.index} ({d.path})"
    if d.delete:
        if d.path not in files:
            raise EditError(f"{where}: deletes a file that does not exist")
        del files[d.path]
        return
    if d.create:
        if d.path in files:
            raise EditError(f"{where}: creates a file that already exists; diff against it instead")
        files[d.path] = "".join(t + "\n" for h in d.hunks for t in h.new())
        return
    if d.path not in files:
        raise EditError(f"{where}: no such file; existing files are {sorted(files)[:20]}")
    content = files[d.path]
    # apply bottom-up so earlier offsets stay valid; locate everything first against the original text
    spans = []
    for n, h in enumerate(d.hunks, 1):
        old = "".join(t + "\n" for t in h.old())
        new = "".join(t + "\n" for t in h.new())
        if not old.strip():
            raise EditError(f"{where}: hunk {n} has no context or removed lines to locate it; add context lines")
        start, end, _ = _locate(content, old, f"{where}, hunk {n}", hint=h.old_start)
        if not content[start:end].endswith("\n"):
            new = new[:-1]
        spans.append((start, end, new, n))
    spans.sort()
    for (_, e1, _, n1), (s2, _, _, n2) in zip(spans, spans[1:]):
        if s2 < e1:
            raise EditError(f"{where}: hunks {n1} and {n2} overlap; merge them into one hunk")
    for start, end, new, _ in reversed(spans):
        content = content[:start] + new + content[end:]
    files[d.path] = content


def apply_edits(files: dict[str, str], edits: list[Edit]) -> dict[str, str]:
    """The files after applying `edits` in order (the input is not modified); deleted files are absent."""
    out = dict(files)
    for e in edits:
        if isinstance(e, SearchReplace):
            _apply_search_replace(out, e)
        else:
            _apply_diff(out, e)
    return out


def changed_files(before: dict[str, str], after: dict[str, str]) -> dict[str, str | None]:
    """path -> new content for every file that differs; None marks a deleted file."""
    changes: dict[str, str | None] = {p: c for p, c in after.items() if before.get(p) != c}
    changes.update({p: None for p in before if p not in after})
    return changes
