"""Contamination: eval inputs and answers inside training text are caught; template text and short answers are not."""

import hashlib

from ratchet.flywheel.contamination import ContaminationIndex, EvalItem, index_for_suite, tokens
from ratchet.flywheel.datasets import SFT, Example, Provenance
from ratchet.flywheel.filter import filter_examples
from ratchet.suites.base import split_of
from ratchet.types import Score, Task

FRACTIONS = {"train": 0.4, "dev": 0.3, "holdout": 0.2, "test": 0.1}
TEMPLATE = "Read the question carefully and answer with a single number at the end of your reply please."


def test_tokens_split_words_numbers_and_marks():
    assert tokens("Calculate 6 + 10.") == ["calculate", "6", "+", "10", "."]


def test_short_input_is_matched_whole_and_exactly():
    idx = ContaminationIndex.build([EvalItem("h1", "holdout", "input", "Calculate 6 + 2.")], ["Calculate 6 + 2."], n=8)
    assert [h.task_id for h in idx.check("Sure. Calculate 6 + 2. It is 8")] == ["h1"]
    assert idx.check("Calculate 6 + 20.") == []  # a different question is not a hit
    assert idx.check("Calculate 6 + 3.") == []


def test_template_ngrams_do_not_make_everything_contaminated():
    inputs = [f"{TEMPLATE} What is {a} times {a + 3} minus {a * 7}?" for a in range(20)]
    items = [EvalItem(f"d{a}", "dev", "input", inputs[a]) for a in range(10)]
    idx = ContaminationIndex.build(items, inputs, n=4, threshold=0.5, boilerplate_df=0.2)
    other = f"{TEMPLATE} What is 99 times 102 minus 693?"  # same template, different numbers
    assert idx.check(other) == []
    assert [h.task_id for h in idx.check("copied: " + inputs[3])] == ["d3"]


def test_long_gold_answer_is_indexed_short_gold_only_labels():
    solution = "def add(a, b):\n    total = a + b\n    return total  # the reference solution"
    items = [EvalItem("t1", "test", "input", "Write add."), EvalItem("t1", "test", "answer", solution),
             EvalItem("h2", "holdout", "input", "Calculate 7 + 4."), EvalItem("h2", "holdout", "answer", "11")]
    idx = ContaminationIndex.build(items, ["Write add.", "Calculate 7 + 4."], n=5)
    hits = idx.check("Here is code: " + solution)
    assert [(h.task_id, h.part) for h in hits] == [("t1", "answer")]
    assert idx.check("The answer is 11.") == []  # a short answer alone is not contamination
    assert [h.part for h in idx.check("Calculate 7 + 4. The answer is 11.")] == ["input+answer"]
    assert [h.part for h in idx.check("Calculate 7 + 4. The answer is 12.")] == ["input"]


class PlantedSuite:
    """Arithmetic tasks, plus train tasks that are verbatim copies of holdout tasks (planted contamination)."""

    name = "planted"

    def __init__(self, n: int = 60, planted: int = 5):
        self._tasks, self._gold = [], {}
        for i in range(n):
            self._add(f"q{i}", f"Calculate {i} + {i + 3}.", str(2 * i + 3))
        holdout = [t for t in self._tasks if split_of(t.id, FRACTIONS) == "holdout"][:planted]
        self.planted = []
        k = 0
        for h in holdout:  # a copy whose id hashes into train
            while split_of(f"copy{k}", FRACTIONS) != "train":
                k += 1
            self._add(f"copy{k}", h.input, self._gold[h.id])
            self.planted.append((f"copy{k}", h.id))
            k += 1

    def _add(self, tid, text, gold):
        self._tasks.append(Task(tid, text))
        self._gold[tid] = gold

    def tasks(self):
        return self._tasks

    async def score(self, task, answer):
        return Score(float((answer or "").strip() == self._gold[task.id]))

    def gold(self, task_id):
        return self._gold[task_id]

    def fingerprint(self):
        return hashlib.sha256(repr(self._gold).encode()).hexdigest()


def _example(task: Task, reply: str, epoch: int = 0) -> Example:
    prov = Provenance(run_id="r", generation=1, task_id=task.id, split="train", model="m", harness="h",
                      harness_commit=None, verifier="v", score=1.0, seed=epoch, eval_id="e", epoch=epoch, call_index=0)
    prompt = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": task.input}]
    return Example(kind=SFT, prompt=prompt, reply=reply, provenance=prov)


def test_planted_holdout_items_in_train_are_caught_dropped_and_counted():
    suite = PlantedSuite(planted=5)
    idx = index_for_suite(suite, FRACTIONS, "ratchet", n=8)
    train = [t for t in suite.tasks() if split_of(t.id, FRACTIONS) == "train"]
    planted_ids = {c for c, _h in suite.planted}
    assert planted_ids <= {t.id for t in train}
    candidates = [_example(t, f"The answer is {suite.gold(t.id)}.") for t in train]
    result = filter_examples(candidates, idx, min_chars=1, max_chars=500, near_dup_threshold=0.9, per_task_cap=4)
    dropped = {d.example.provenance.task_id: d for d in result.dropped if d.reason == "contamination"}
    assert set(dropped) == planted_ids  # every planted copy, and nothing else
    assert result.counts["contamination"] == len(planted_ids) == 5
    assert result.counts["kept"] == len(train) - 5
    for copy_id, holdout_id in suite.planted:
        first = dropped[copy_id].detail["hits"][0]
        assert (first["task_id"], first["split"], first["part"]) == (holdout_id, "holdout", "input+answer")
