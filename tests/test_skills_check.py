"""New skills are checked before evaluation: statically by the guard (name, `def run`, enabled has a file) and by
importing them once in the sandbox; a new skill makes the candidate risky for the approval gate."""

import asyncio

from conftest import SEED_PARAMS
from ratchet.config import GuardSection
from ratchet.loop.guard import check_candidate
from ratchet.loop.skills_check import import_skills, skill_problems
from ratchet.sandbox import Sandbox, SandboxLimits

HARNESS = "def solve(task, ctx):\n    return ctx.skill('arith', task.input)\n"
ENABLED = SEED_PARAMS + '\n[skills]\nlibrary = ["arith", "calculator"]\nenabled = ["arith", "calculator"]\n'


def test_static_problems_name_what_to_fix():
    files = {"harness.py": HARNESS, "params.toml": ENABLED}
    cases = {
        "skills/calculator.py": ("def run(x):\n    return x\n", "built-in skill"),
        "skills/my-skill.py": ("def run(x):\n    return x\n", "Python identifier"),
        "skills/nothing.py": ("x = 1\n", "defines no top-level function run"),
        "skills/later.py": ("async def run(x):\n    return x\n", "async def"),
    }
    for path, (text, message) in cases.items():
        problems = skill_problems({**files, path: text}, {path: text})
        assert any(message in p for p in problems), (path, problems)
    assert any("no skills/arith.py" in p for p in skill_problems(files, {"params.toml": ENABLED}))
    ok = {**files, "skills/arith.py": "from operator import add as run\n"}
    assert skill_problems(ok, {"skills/arith.py": ok["skills/arith.py"]}) == []


def test_guard_calls_a_new_skill_risky_and_rejects_a_broken_one():
    parent = {"harness.py": HARNESS, "params.toml": SEED_PARAMS}
    good = {"skills/arith.py": "def run(text):\n    return 2\n", "params.toml": ENABLED}
    verdict = check_candidate(good, "+x\n", GuardSection(risky_paths=[]), parent)
    assert verdict.ok and verdict.risky and "adds a new skill skills/arith.py" in verdict.risky_reasons
    broken = {"params.toml": ENABLED}  # enables arith without writing it
    verdict = check_candidate(broken, "+x\n", GuardSection(), parent)
    assert not verdict.ok and any("no skills/arith.py" in r for r in verdict.reasons)


def test_skills_are_imported_once_in_the_sandbox(tmp_path):
    marker = tmp_path / "written-by-the-skill"
    files = {"harness.py": HARNESS,
             "skills/good.py": "import re\n\ndef run(text, k=1):\n    return text * k\n",
             "skills/boom.py": "raise RuntimeError('broken at import')\n",
             "skills/escape.py": f"open({str(marker)!r}, 'w').write('x')\n\ndef run():\n    return 1\n"}
    sandbox = Sandbox(SandboxLimits(wall_s=10))
    problems = asyncio.run(import_skills(sandbox, files, ["good", "boom", "escape"]))
    assert len(problems) == 2
    assert "skills/boom.py: importing it in the sandbox failed: RuntimeError: broken at import" in problems[0]
    assert "skills/escape.py" in problems[1] and "No such file or directory" in problems[1]
    assert not marker.exists()  # its code ran in the sandbox, never in this process
