"""HumanEval through the sandbox: canonical solutions pass, wrong ones fail, completions in any shape."""

from __future__ import annotations

import asyncio

import pytest

from ratchet.suites.humaneval import HumanEvalSuite, as_body, build_program, strip_fences


@pytest.fixture(scope="module")
def suite() -> HumanEvalSuite:
    return HumanEvalSuite(timeout_s=10.0)


def score_all(suite: HumanEvalSuite, pairs: list[tuple[str, str]]) -> list:
    by_id = {t.id: t for t in suite.tasks()}

    async def go() -> list:
        return await asyncio.gather(*(suite.score(by_id[tid], answer) for tid, answer in pairs))

    return asyncio.run(go())


def test_tasks_carry_the_prompt_but_not_the_solution(suite: HumanEvalSuite) -> None:
    tasks = suite.tasks()
    assert len(tasks) == 164 and tasks[0].id == "HumanEval/0"
    assert "def has_close_elements" in tasks[0].input
    for t in tasks:
        assert suite.gold(t.id) not in t.input and "canonical_solution" not in t.metadata
    assert len(suite.fingerprint()) == 64 and suite.fingerprint() == suite.fingerprint()


def test_first_canonical_solutions_pass(suite: HumanEvalSuite) -> None:
    ids = [t.id for t in suite.tasks()[:12]]
    scores = score_all(suite, [(tid, suite.gold(tid)) for tid in ids])
    assert [s.value for s in scores] == [1.0] * 12, [s.feedback for s in scores]


@pytest.mark.slow
def test_all_164_canonical_solutions_pass(suite: HumanEvalSuite) -> None:
    ids = [t.id for t in suite.tasks()]
    scores = score_all(suite, [(tid, suite.gold(tid)) for tid in ids])
    failed = {tid: s.feedback for tid, s in zip(ids, scores) if s.value != 1.0}
    assert failed == {} and len(scores) == 164


def test_wrong_and_broken_solutions_fail(suite: HumanEvalSuite) -> None:
    scores = score_all(
        suite,
        [
            ("HumanEval/0", "    return False\n"),
            ("HumanEval/0", "    return (\n"),  # syntax error
            ("HumanEval/0", ""),
        ],
    )
    assert [s.value for s in scores] == [0.0, 0.0, 0.0]
    assert "AssertionError" in scores[0].feedback
    assert "SyntaxError" in scores[1].feedback
    assert "no answer" in scores[2].feedback


def test_completion_shapes_all_pass(suite: HumanEvalSuite) -> None:
    body = suite.gold("HumanEval/0")
    full = suite.tasks()[0].input + body
    fenced = f"Here is my solution:\n```python\n{full}```\nIt compares all pairs."
    stripped_first_line = body.strip()  # a harness that called .strip() lost the first indentation
    dedented = (
        "for i in range(len(numbers)):\n    for j in range(i):\n"
        "        if abs(numbers[i] - numbers[j]) < threshold:\n            return True\nreturn False\n"
    )
    scores = score_all(suite, [("HumanEval/0", a) for a in (body, full, fenced, stripped_first_line, dedented)])
    assert [s.value for s in scores] == [1.0] * 5, [s.feedback for s in scores]


def test_infinite_loop_is_killed_at_the_suite_timeout() -> None:
    suite = HumanEvalSuite(timeout_s=1.0)
    (score,) = score_all(suite, [("HumanEval/0", "    while True:\n        pass\n")])
    assert score.value == 0.0 and "timeout after 1s" in score.feedback


def test_program_assembly_helpers() -> None:
    assert strip_fences("x\n```py\nprint(1)\n```\n") == "print(1)\n"
    assert strip_fences("no fences") == "no fences"
    assert as_body("return 1") == "    return 1\n"
    assert as_body("    return 1\n") == "    return 1\n"
    assert as_body("if x:\n        return 1\n    return 2") == "    if x:\n        return 1\n    return 2\n"
    prompt, test = "def f(x):\n    '''doc'''\n", "def check(c):\n    assert c(1) == 1"
    program = build_program(prompt, "def f(x):\n    return x\n", test, "f")
    assert program.rstrip().endswith("check(f)")
    compile(program, "p", "exec")
