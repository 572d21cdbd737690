"""The agent proposer's tools over one round's workspace, and the action format they are called with.

The agent's files are the workspace (loop/workspace.py). Reads see the working copy of the harness
(`harness/...`, as edited so far); writes change only that copy, held here in memory, never the workspace
on disk or anything else; only harness files (harness.py, params.toml, rules.md, prompts/*, skills/*.py)
may be written, and never a protected path. `finish` validates the change (it compiles, params.toml
reads, skills define `run` and import in the sandbox) and any problem is a tool error the agent can fix.

One action per reply: a native tool call (function_specs) or, from a model that writes text instead, a JSON
object (ACTION_SCHEMA): {"tool": "read", "args": {"path": "BRIEF.md"}}. Both are checked by check_action.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ratchet.globs import matches_any
from ratchet.harness.loader import HARNESS_GLOBS, MAX_FILE_BYTES
from ratchet.ledger import redact
from ratchet.loop.edits import EditError, SearchReplace, apply_edits, changed_files, normalize_path
from ratchet.loop.guard import params_problems, protected_violations, syntax_problems
from ratchet.loop.probe import ProbeRefused
from ratchet.loop.skills_check import skill_problems
from ratchet.loop.trajectory_view import render, summary_line

HARNESS = "harness"
RESULT_CHARS = 6000  # of one tool result shown to the agent
READ_LINES = 200
GREP_HITS = 60
# tool -> (what it does, {arg: (json type, required)})
TOOLS: dict[str, tuple[str, dict[str, tuple[str, bool]]]] = {
    "list": ("files under a workspace directory (default: all)", {"path": ("string", False)}),
    "read": ("lines of a file: start (1-based, default 1), lines (default 200)",
             {"path": ("string", True), "start": ("integer", False), "lines": ("integer", False)}),
    "grep": ("lines matching a regular expression, in all files or under path",
             {"pattern": ("string", True), "path": ("string", False)}),
    "write": ("replace or create a harness file with the whole content", {"path": ("string", True),
                                                                          "content": ("string", True)}),
    "edit": ("replace the one exact occurrence of search by replace in a harness file",
             {"path": ("string", True), "search": ("string", True), "replace": ("string", True)}),
    "run_episode": ("run your working copy on one dev or train task in the sandbox; one rollout of the budget",
                    {"task_id": ("string", True)}),
    "finish": ("propose the working copy: why, and a falsifiable prediction; summary is one line",
               {"rationale": ("string", True), "hypothesis": ("string", True), "summary": ("string", False)}),
}
ACTION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["tool", "args"], "additionalProperties": False,
    "properties": {"tool": {"enum": list(TOOLS)}, "args": {"type": "object"}},
}
_TYPES = {"string": str, "integer": int}


class ToolError(ValueError):
    """A malformed action or a tool that could not do what was asked; shown to the agent, who may retry."""


def tools_help() -> str:
    lines = []
    for name, (doc, args) in TOOLS.items():
        shown = ", ".join(f'"{a}": {t}{"" if req else " (optional)"}' for a, (t, req) in args.items())
        lines.append(f"- {name} {{{shown}}}: {doc}")
    return "\n".join(lines)


def function_specs() -> tuple[dict[str, Any], ...]:
    """The tools as OpenAI function specs, for native tool calling (vLLM guides a required call by them)."""
    specs = []
    for name, (doc, args) in TOOLS.items():
        props = {a: {"type": t} for a, (t, _) in args.items()}
        required = [a for a, (_, req) in args.items() if req]
        specs.append({"type": "function", "function": {"name": name, "description": doc, "parameters": {
            "type": "object", "properties": props, "required": required}}})
    return tuple(specs)


def parse_action(text: str) -> tuple[str, dict[str, Any]]:
    """(tool, args) from a reply holding one JSON action; ToolError saying what to write instead."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    decoder = json.JSONDecoder(strict=False)  # strict=False: raw newlines inside strings, as small models write them
    found: dict[str, Any] | None = None
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and any(k in obj for k in ("tool", "name", "action")):
            found = obj
            break
    if found is None:
        raise ToolError('no JSON action in the reply. Reply with exactly one JSON object, e.g. '
                        '{"tool": "read", "args": {"path": "BRIEF.md"}}')
    tool = found.get("tool", found.get("name", found.get("action")))
    return check_action(tool, found.get("args", found.get("arguments", found.get("parameters", {}))))


def action_of_call(call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(tool, args) from a native tool call (Completion.tool_calls' shape)."""
    fn = call.get("function") or {}
    return check_action(fn.get("name"), fn.get("arguments") or "{}")


def check_action(tool: Any, args: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(args, str):
        try:
            args = json.loads(args, strict=False)
        except json.JSONDecodeError:
            raise ToolError('"args" must be a JSON object, e.g. {"path": "BRIEF.md"}') from None
    if tool not in TOOLS:
        raise ToolError(f"unknown tool {tool!r}; the tools are {', '.join(TOOLS)}")
    if not isinstance(args, dict):
        raise ToolError(f'"args" of {tool} must be a JSON object')
    for name, (kind, required) in TOOLS[tool][1].items():
        if name not in args:
            if required:
                raise ToolError(f"{tool} needs the argument {name!r} ({kind})")
            continue
        if kind == "integer" and isinstance(args[name], str) and args[name].strip().isdigit():
            args[name] = int(args[name])
        if not isinstance(args[name], _TYPES[kind]) or isinstance(args[name], bool):
            raise ToolError(f"{tool}: argument {name!r} must be a {kind}")
    return tool, args


def _clip(text: str, limit: int = RESULT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters not shown]"


class AgentTools:
    """The tools of one proposal. `files`: the parent's harness files the workspace shows (the working copy
    starts as them); `probe`: the round's EpisodeProbe, or None when the arena runs no single episodes."""

    def __init__(self, workspace: Path, files: dict[str, str], probe: Any = None):
        self.root, self.base, self.working, self.probe = Path(workspace), dict(files), dict(files), probe
        self.episodes = 0

    # -- paths ---------------------------------------------------------------------------------
    def _where(self, raw: str) -> tuple[str, str]:
        """("harness", harness-relative path) or ("disk", workspace-relative path)."""
        try:
            rel = normalize_path(str(raw), "path")
        except EditError as e:
            raise ToolError(str(e)) from None
        if rel == HARNESS or rel.startswith(HARNESS + "/"):
            return "harness", rel[len(HARNESS) + 1:]
        if not (self.root / rel).exists() and (rel in self.working or matches_any(rel, HARNESS_GLOBS)):
            return "harness", rel  # a bare harness path, as small models write them
        return "disk", rel

    def _disk_files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                      if p.is_file() and not p.is_symlink() and p.relative_to(self.root).parts[0] != HARNESS)

    def _all_files(self) -> list[str]:
        return sorted(self._disk_files() + [f"{HARNESS}/{p}" for p in self.working])

    def _text(self, raw: str) -> tuple[str, str]:
        where, rel = self._where(raw)
        if where == "harness":
            if rel not in self.working:
                raise ToolError(f"no file harness/{rel}; `list` shows the files")
            return f"{HARNESS}/{rel}", self.working[rel]
        path = self.root / rel
        if not path.is_file() or path.is_symlink():
            raise ToolError(f"no file {rel}; `list` shows the files")
        return rel, path.read_text(errors="replace")

    # -- the tools -----------------------------------------------------------------------------
    async def call(self, tool: str, args: dict[str, Any]) -> str:
        if tool == "run_episode":
            return await self.run_episode(**args)
        if tool == "finish":
            raise ToolError("finish is validated by `finish_problems`; call it through the proposer")
        return getattr(self, f"tool_{tool}")(**{k: v for k, v in args.items() if k in TOOLS[tool][1]})

    @staticmethod
    def _prefix(path: str) -> str:
        if not path.strip() or path.strip() in (".", "./", "/"):
            return ""
        try:
            return normalize_path(path, "path").rstrip("/") + "/"
        except EditError as e:
            raise ToolError(str(e)) from None

    def tool_list(self, path: str = "") -> str:
        prefix = self._prefix(path)
        names = [p for p in self._all_files() if p.startswith(prefix)]
        return "\n".join(names) if names else f"no files under {prefix or '.'}"

    def tool_read(self, path: str, start: int = 1, lines: int = READ_LINES) -> str:
        name, text = self._text(path)
        all_lines = text.splitlines()
        start, lines = max(1, start), max(1, min(lines, 2000))
        chunk = all_lines[start - 1:start - 1 + lines]
        more = len(all_lines) - (start - 1 + len(chunk))
        tail = f"\n[{more} more lines: read with start={start + len(chunk)}]" if more > 0 else ""
        return f"{name} (lines {start}-{start + len(chunk) - 1} of {len(all_lines)}):\n" + "\n".join(chunk) + tail

    def tool_grep(self, pattern: str, path: str = "") -> str:
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ToolError(f"bad regular expression {pattern!r}: {e}") from None
        prefix = self._prefix(path)
        hits = []
        for name in self._all_files():
            if not (name.startswith(prefix) or name == prefix.rstrip("/")):
                continue
            for n, line in enumerate(self._text(name)[1].splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{name}:{n}: {line[:200]}")
        shown = hits[:GREP_HITS]
        more = f"\n[{len(hits) - GREP_HITS} more matches]" if len(hits) > GREP_HITS else ""
        return "\n".join(shown) + more if shown else f"no line matches {pattern!r}"

    def _writable(self, path: str) -> str:
        where, rel = self._where(path)
        if where != "harness":
            raise ToolError(f"{path!r} is not a harness file; only files under harness/ may be changed")
        if "harness.py" in self.base and matches_any(rel, HARNESS_GLOBS) is None:  # (a research repo: any path)
            raise ToolError(f"harness/{rel} would not reach the sandbox; harness files are {', '.join(HARNESS_GLOBS)}")
        if problems := protected_violations([rel]):
            raise ToolError("; ".join(problems))
        return rel

    def _saved(self, rel: str) -> str:
        notes = syntax_problems({rel: self.working[rel]}) + params_problems({rel: self.working[rel]})
        size = len(self.working[rel].encode())
        if size > MAX_FILE_BYTES:
            notes.append(f"harness/{rel} has {size} bytes, over the {MAX_FILE_BYTES}-byte limit of a harness file")
        return f"saved harness/{rel}" + ("; fix before finishing: " + "; ".join(notes) if notes else "")

    def tool_write(self, path: str, content: str) -> str:
        rel = self._writable(path)
        self.working[rel] = content if content.endswith("\n") or not content else content + "\n"
        return self._saved(rel)

    def tool_edit(self, path: str, search: str, replace: str) -> str:
        rel = self._writable(path)
        if rel not in self.working:
            raise ToolError(f"no file harness/{rel}; create it with write")
        if not search.strip():
            raise ToolError("search is empty; to replace the whole file use write")
        try:
            self.working = apply_edits(self.working, [SearchReplace(1, rel, search, replace)])
        except EditError as e:
            raise ToolError(str(e).replace("block 1 ", "")) from None
        return self._saved(rel)

    async def run_episode(self, task_id: str) -> str:
        if self.probe is None:
            raise ToolError("run_episode is not available here: this tier's arena runs no single episodes")
        try:
            traj, split, task_input = await self.probe.run_episode(self.working, task_id)
        except ProbeRefused as e:
            raise ToolError(str(e)) from None
        self.episodes += 1
        return redact(_clip(f"{summary_line(traj)}\n\n" + render(traj, task_input, split, RESULT_CHARS)))

    def changes(self) -> dict[str, str | None]:
        return changed_files(self.base, self.working)

    async def finish_problems(self) -> list[str]:
        """Why the working copy cannot be proposed yet (empty when it can)."""
        changes = self.changes()
        if not changes:
            return ["nothing changed yet: edit a harness file before finishing"]
        problems = (protected_violations(changes) + syntax_problems(changes) + params_problems(changes)
                    + skill_problems(self.working, changes))
        if not problems and self.probe is not None:
            problems += await self.probe.check_skills(self.working, changes)
        return problems

