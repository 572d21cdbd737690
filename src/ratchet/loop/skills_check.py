"""New and changed skills: checked before a candidate that carries one is ever evaluated.

A proposer may add `skills/NAME.py` to a harness and switch it on in params.toml (`[skills] library` and
`enabled`). Two checks, so a broken skill costs a retry rather than a whole evaluation:

* `skill_problems` (pure, run by the guard on every candidate): the name is a Python identifier and not
  a built-in skill's (the worker serves `calculator`, `python` and `memory` itself, so a file of that name
  would never run), the file defines a top-level `run` with `def` (the worker calls it synchronously),
  and every enabled skill that is not built in has its file;
* `import_skills` (the sandbox): the files are imported once in the harness sandbox, which runs their
  top-level code, and `run` must be callable there. Nothing of a skill ever runs in the ratchet process.
"""

from __future__ import annotations

import ast
import json

from ratchet.config import ConfigError
from ratchet.harness.params import parse_params
from ratchet.sandbox import Sandbox, python_argv

BUILTIN_SKILLS = ("calculator", "python", "memory")
SKILL_DIR = "skills/"
IMPORT_WALL_S = 10.0
_CHECKER = "ratchet_skill_check.py"
# Runs inside the sandbox: import each skill the way harness/worker.py does, report what it found, one JSON line each.
_CHECK_SOURCE = """\
import importlib.util, inspect, json, sys
for name in sys.argv[1:]:
    out = {"name": name, "ok": False}
    try:
        spec = importlib.util.spec_from_file_location("skill_" + name, "skills/" + name + ".py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        run = getattr(module, "run", None)
        if not callable(run):
            out["error"] = "defines no callable run"
        else:
            try:
                out["signature"] = str(inspect.signature(run))
            except (TypeError, ValueError):
                out["signature"] = "(...)"
            out["ok"] = True
    except BaseException as e:
        out["error"] = type(e).__name__ + ": " + str(e)[:300]
    print(json.dumps(out), flush=True)
"""


def skill_name(path: str) -> str | None:
    """NAME for a path skills/NAME.py (one level deep, as the worker loads them); None for any other path."""
    if not path.startswith(SKILL_DIR) or not path.endswith(".py") or "/" in path[len(SKILL_DIR):]:
        return None
    return path[len(SKILL_DIR):-3]


def new_skills(parent_files: dict[str, str], changes: dict[str, str | None]) -> list[str]:
    """Skills whose file this candidate creates."""
    return sorted(n for p, t in changes.items() if t is not None and p not in parent_files and (n := skill_name(p)))


def _defines_run(tree: ast.Module) -> str | None:
    """None when the module binds `run` at top level with def (or an assignment or import); else what is wrong."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "run":
            return None
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "run":
            return "defines run with async def; ctx.skill calls it synchronously, so write def run(...)"
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "run" for t in targets):
                return None
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == "run" for a in node.names):
            return None
    return "defines no top-level function run; a skill is called as ctx.skill(NAME, ...) -> run(...)"


def skill_problems(files: dict[str, str], changes: dict[str, str | None]) -> list[str]:
    """What is wrong with the skills of a candidate whose files (after the change) are `files`."""
    problems = []
    for path, text in changes.items():
        name = skill_name(path)
        if name is None or text is None:
            continue
        if not name.isidentifier():
            problems.append(f"{path}: a skill name must be a Python identifier (letters, digits, _), not {name!r}")
            continue
        if name in BUILTIN_SKILLS:
            problems.append(f"{path}: {name!r} is a built-in skill, served by ratchet; this file would never run. "
                            "Pick another name")
            continue
        try:
            tree = ast.parse(text, path)
        except (SyntaxError, ValueError):
            continue  # the guard's syntax check reports it
        if (why := _defines_run(tree)) is not None:
            problems.append(f"{path}: {why}")
    try:
        params = parse_params(files.get("params.toml", ""), "params.toml")
    except ConfigError:
        return problems  # the guard's params check reports it
    for name in params.skills_enabled:
        if name not in BUILTIN_SKILLS and f"{SKILL_DIR}{name}.py" not in files:
            problems.append(f"params.toml enables skill {name!r} but there is no {SKILL_DIR}{name}.py; "
                            "create the file or remove the name from [skills] enabled")
    return problems


async def import_skills(sandbox: Sandbox, files: dict[str, str], names: list[str]) -> list[str]:
    """Import each named skill once in `sandbox` (with all harness files beside it); the problems found."""
    if not names:
        return []
    res = await sandbox.run(python_argv(_CHECKER, *names), files={**files, _CHECKER: _CHECK_SOURCE},
                            wall_s=IMPORT_WALL_S)
    seen: dict[str, dict] = {}
    for line in res.stdout.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the skill printed while being imported
        if isinstance(row, dict) and row.get("name") in names:
            seen[row["name"]] = row
    problems = []
    for name in names:
        row = seen.get(name)
        if row is None:
            why = res.reason or f"the check exited with code {res.returncode}"
            problems.append(f"{SKILL_DIR}{name}.py: importing it in the sandbox did not finish ({why})")
        elif not row.get("ok"):
            problems.append(f"{SKILL_DIR}{name}.py: importing it in the sandbox failed: {row.get('error')}")
    return problems
