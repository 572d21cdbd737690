"""Suite adapters (jsonl, python scorer, reasoning-gym), answer matching and split assignment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ratchet.config import ConfigError, SplitFractions, SuiteSection
from ratchet.suites import build_suite, fingerprint_of, reasoning_gym_entries, tasks_for_split
from ratchet.suites.base import SPLITS, Suite
from ratchet.suites.jsonl import JsonlSuite
from ratchet.suites.matching import extract_final_answer, matches
from ratchet.suites.python_scorer import PythonScorerSuite
from ratchet.suites.reasoning_gym import ReasoningGymSuite
from ratchet.types import Task

ARITH = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"],
         "allow_parentheses": False, "allow_negation": False}  # fmt: skip


def score(suite: Suite, task: Task, answer: str | None):
    return asyncio.run(suite.score(task, answer))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- splits -----------------------------------------------------------------------------------------


class ListSuite:
    name = "list"

    def __init__(self, n: int) -> None:
        self._tasks = [Task(id=f"t{i}", input=str(i)) for i in range(n)]

    def tasks(self):
        return self._tasks


def test_splits_are_stable_disjoint_and_near_the_fractions() -> None:
    suite = ListSuite(4000)
    fractions = SplitFractions()
    parts = {s: tasks_for_split(suite, s, fractions) for s in SPLITS}
    assert sum(len(p) for p in parts.values()) == 4000
    assert len({t.id for p in parts.values() for t in p}) == 4000
    for s in SPLITS:
        assert abs(len(parts[s]) / 4000 - getattr(fractions, s)) < 0.03, (s, len(parts[s]))
        assert tasks_for_split(suite, s, fractions.model_dump()) == parts[s]  # dict or model, same answer
    # a task's split depends on its id alone, not on which other tasks exist
    small = ListSuite(50)
    assert tasks_for_split(small, "dev", fractions) == [t for t in parts["dev"] if int(t.id[1:]) < 50]
    # another salt gives another assignment
    assert tasks_for_split(suite, "dev", fractions, salt="other") != parts["dev"]
    with pytest.raises(ValueError, match="unknown split"):
        tasks_for_split(suite, "validation", fractions)  # type: ignore[arg-type]


# -- matching ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, number, expected, rule",
    [
        ("42", True, "42", "last_number"),
        ("Let me think. 3 + 4 = 7, so the answer is 7.", True, "7", "marker"),
        ("**Answer:** 1,234", True, "1234", "marker"),
        ("x \\boxed{12} y \\boxed{13}", True, "13", "boxed"),
        ("<answer>Paris</answer> I hope", False, "Paris", "answer_tag"),
        ("I think 5 + 3 = 8", True, "8", "last_number"),
        ("The result is 12.0", True, "12", "marker"),
        ("just words", False, "just words", "whole_reply"),
    ],
)
def test_final_answer_extraction(reply: str, number: bool, expected: str, rule: str) -> None:
    got = extract_final_answer(reply, expect_number=number)
    assert (got.text, got.rule) == (expected, rule)


def test_match_modes() -> None:
    assert matches("exact", " Paris ", "Paris") and not matches("exact", "paris", "Paris")
    assert matches("normalized", "  the  PARIS!", "the paris") and not matches("normalized", "Lyon", "Paris")
    assert matches("numeric", "3.0000001", "3") and matches("numeric", "1,000", "1000")
    assert not matches("numeric", "3.1", "3") and not matches("numeric", "three", "3")
    assert matches("regex", "colour", r"colou?r") and not matches("regex", "colours", r"colou?r")
    with pytest.raises(ValueError, match="not a number"):
        matches("numeric", "1", "n/a")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        matches("regex", "x", "(")


# -- jsonl ------------------------------------------------------------------------------------------


def test_jsonl_suite_scores_each_mode(tmp_path: Path) -> None:
    rows = [
        {"id": "capital", "input": "Capital of France?", "answer": "Paris"},
        {"id": 2, "input": "2+2?", "answer": 4, "metadata": {"topic": "math"}},
    ]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    norm = JsonlSuite(path, match="normalized")
    cap, two = norm.tasks()
    assert (cap.id, two.id, two.metadata) == ("capital", "2", {"topic": "math"}) and norm.name == "qa"
    assert score(norm, cap, "paris.").value == 1.0
    assert score(norm, cap, "I believe the answer is: Paris").value == 1.0  # extracted final answer
    wrong = score(norm, cap, "Lyon")
    assert wrong.value == 0.0 and "Paris" in wrong.feedback
    hidden = JsonlSuite(path, match="normalized", reveal_gold_in_feedback=False)
    assert "Paris" not in score(hidden, cap, "Lyon").feedback
    exact = JsonlSuite(path, match="exact")
    assert score(exact, cap, "Paris").value == 1.0 and score(exact, cap, "paris").value == 0.0
    numeric_path = write_jsonl(tmp_path / "n.jsonl", [{"id": "pi", "input": "pi?", "answer": 3.14159,
                                                       "metadata": {"abs_tol": 0.01}}])  # fmt: skip
    numeric = JsonlSuite(numeric_path, match="numeric")
    (pi,) = numeric.tasks()
    assert score(numeric, pi, "about 3.14").value == 1.0 and score(numeric, pi, "3.2").value == 0.0
    regex_path = write_jsonl(tmp_path / "r.jsonl", [{"id": "c", "input": "spell it", "answer": "colou?r"}])
    regex = JsonlSuite(regex_path, match="regex")
    assert score(regex, regex.tasks()[0], "color").value == 1.0
    assert score(norm, cap, None).value == 0.0
    assert norm.gold("capital") == "Paris"
    assert norm.fingerprint() != exact.fingerprint()  # the match mode is part of the scorer


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "a", "input": "x"}', "missing key"),
        ('{"id": "a", "input": "x", "answer": "y", "extra": 1}', "unknown key"),
        ("not json", "not valid JSON"),
        ('{"id": "a", "input": 3, "answer": "y"}', "input must be a string"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "ok", "input": "x", "answer": "y"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message) as err:
        JsonlSuite(path)
    assert "bad.jsonl:2" in str(err.value)


def test_jsonl_rejects_duplicate_ids_and_bad_numeric_gold(tmp_path: Path) -> None:
    dup = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "input": "", "answer": "1"}] * 2)
    with pytest.raises(ValueError, match="duplicate id"):
        JsonlSuite(dup)
    bad = write_jsonl(tmp_path / "b.jsonl", [{"id": "a", "input": "", "answer": "many"}])
    with pytest.raises(ValueError, match="not a number"):
        JsonlSuite(bad, match="numeric")


# -- python scorer --------------------------------------------------------------------------------

SCORER = '''
def tasks():
    return [{"id": f"sq{i}", "input": f"square of {i}?", "answer": i * i, "metadata": {"i": i}} for i in range(5)]

def score(answer, gold, task):
    try:
        value = int(answer.strip())
    except ValueError:
        return 0.0, "not an integer"
    return (1.0, "right") if value == gold else (0.0, f"off by {value - gold}")
'''


def test_python_scorer_suite(tmp_path: Path) -> None:
    path = tmp_path / "squares.py"
    path.write_text(SCORER)
    suite = PythonScorerSuite(path)
    tasks = suite.tasks()
    assert [t.id for t in tasks] == [f"sq{i}" for i in range(5)] and tasks[3].metadata == {"i": 3}
    assert score(suite, tasks[3], "9").value == 1.0
    assert score(suite, tasks[3], "10").feedback == "off by 1"
    assert score(suite, tasks[3], "nine").feedback == "not an integer"
    assert suite.gold("sq3") == "9"
    before = suite.fingerprint()
    path.write_text(SCORER.replace("off by", "wrong by"))
    assert PythonScorerSuite(path).fingerprint() != before  # scorer code is part of the fingerprint


def test_python_scorer_may_be_async_and_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "s.py"
    path.write_text(
        "async def score(answer, gold, task):\n    return answer == gold\n"
        "def tasks():\n    return [{'id': 'a', 'input': 'say a', 'answer': 'a'}]\n"
    )
    suite = PythonScorerSuite(path)
    assert score(suite, suite.tasks()[0], "a").value == 1.0
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def tasks():\n    return [{'id': 1, 'input': 'x', 'answer': 1}]\n" "def score(a, g, t):\n    return 2\n"
    )
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        score(PythonScorerSuite(bad), Task("1", "x"), "1")
    missing = tmp_path / "missing.py"
    missing.write_text("def tasks():\n    return []\n")
    with pytest.raises(ValueError, match="must define a function `score`"):
        PythonScorerSuite(missing)


# -- reasoning gym ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arithmetic() -> ReasoningGymSuite:
    return ReasoningGymSuite("basic_arithmetic", size=20, seed=7, config=ARITH)


def test_reasoning_gym_tasks_hide_the_gold(arithmetic: ReasoningGymSuite) -> None:
    tasks = arithmetic.tasks()
    assert len(tasks) == 20 and tasks[5].id == "basic_arithmetic-7-5"
    assert tasks[0].input.startswith("Calculate")
    assert set(tasks[0].metadata) == {"suite", "dataset", "index", "answer_format"}
    assert tasks[0].metadata["answer_format"] == "number"
    again = ReasoningGymSuite("basic_arithmetic", size=20, seed=7, config=ARITH)
    assert again.fingerprint() == arithmetic.fingerprint()
    assert [t.input for t in again.tasks()] == [t.input for t in tasks]
    other_seed = ReasoningGymSuite("basic_arithmetic", size=20, seed=8, config=ARITH)
    assert other_seed.fingerprint() != arithmetic.fingerprint()


def test_reasoning_gym_scores_right_wrong_and_chatty(arithmetic: ReasoningGymSuite) -> None:
    task = arithmetic.tasks()[0]
    gold = arithmetic.gold(task.id)
    wrong_value = str(int(gold) + 1)
    assert score(arithmetic, task, gold).value == 1.0
    wrong = score(arithmetic, task, wrong_value)
    assert wrong.value == 0.0 and f"expected {gold!r}" in wrong.feedback and "single number" in wrong.feedback
    chatty = f"Sure! {task.input} Let me work it out step by step... so the answer is {gold}."
    assert score(arithmetic, task, chatty).value == 1.0
    assert score(arithmetic, task, f"First I thought {wrong_value}, but it is \\boxed{{{gold}}}").value == 1.0
    assert score(arithmetic, task, f"Answer: {wrong_value}").value == 0.0
    assert score(arithmetic, task, None).value == 0.0
    hidden = ReasoningGymSuite("basic_arithmetic", size=20, seed=7, config=ARITH, reveal_gold_in_feedback=False)
    assert "expected '" not in score(hidden, task, wrong_value).feedback


def test_reasoning_gym_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="did you mean basic_arithmetic"):
        ReasoningGymSuite("basic_arithmetc", size=3)
    with pytest.raises(ConfigError, match="not valid"):
        ReasoningGymSuite("basic_arithmetic", size=3, config={"no_such_option": 1})


_PRINT_ISOMORPHIC_TASKS = (
    "import json; from ratchet.suites.reasoning_gym import ReasoningGymSuite; "
    "s = ReasoningGymSuite('isomorphic_strings', size=12, seed=7); "
    "print(json.dumps([s.fingerprint(), [t.input for t in s.tasks()]]))"
)


def test_reasoning_gym_tasks_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    # isomorphic_strings draws from a set: in-process generation differs per PYTHONHASHSEED
    seen = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "RATCHET_CACHE": str(tmp_path / hash_seed)}
        done = subprocess.run([sys.executable, "-c", _PRINT_ISOMORPHIC_TASKS], env=env, capture_output=True,
                              text=True, check=True)
        seen.append(json.loads(done.stdout))
    assert seen[0] == seen[1]
    assert list((tmp_path / "1" / "suites" / "reasoning_gym").glob("isomorphic_strings-*.pickle"))


def test_reasoning_gym_entry_cache_is_rebuilt_when_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              arithmetic: ReasoningGymSuite) -> None:
    monkeypatch.setattr(reasoning_gym_entries, "_hashes_like_the_child", lambda: False)  # the cached path
    monkeypatch.setenv("RATCHET_CACHE", str(tmp_path))
    ReasoningGymSuite("basic_arithmetic", size=20, seed=7, config=ARITH)
    [cached] = (tmp_path / "suites" / "reasoning_gym").glob("*.pickle")
    cached.write_bytes(b"not a pickle")
    again = ReasoningGymSuite("basic_arithmetic", size=20, seed=7, config=ARITH)
    assert again.fingerprint() == arithmetic.fingerprint()


# -- build_suite ------------------------------------------------------------------------------------


def test_build_suite_for_each_kind(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "qa.jsonl", [{"id": "a", "input": "x", "answer": "y"}])
    (tmp_path / "squares.py").write_text(SCORER)
    rg = build_suite(SuiteSection(kind="reasoning_gym", dataset="basic_arithmetic", size=5, config=ARITH), tmp_path)
    assert isinstance(rg, Suite) and len(rg.tasks()) == 5
    js = build_suite(SuiteSection(kind="jsonl", path="qa.jsonl", match="exact", name="mine"), tmp_path)
    assert js.name == "mine" and isinstance(js, JsonlSuite) and js.match == "exact"
    py = build_suite(SuiteSection(kind="python", path="squares.py"), tmp_path)
    assert len(py.tasks()) == 5
    with pytest.raises(ConfigError, match="needs path"):
        build_suite(SuiteSection(kind="jsonl"), tmp_path)
    with pytest.raises(ConfigError, match="is not a file"):
        build_suite(SuiteSection(kind="python", path="nope.py"), tmp_path)
    with pytest.raises(ConfigError, match="needs dataset"):
        build_suite(SuiteSection(kind="reasoning_gym"), tmp_path)


def test_fingerprint_covers_records_and_sources(tmp_path: Path) -> None:
    src = tmp_path / "scorer.py"
    src.write_text("a = 1\n")
    base = fingerprint_of([{"id": 1}], [src])
    assert fingerprint_of([{"id": 2}], [src]) != base
    src.write_text("a = 2\n")
    assert fingerprint_of([{"id": 1}], [src]) != base
