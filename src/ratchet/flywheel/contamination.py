"""Contamination: does a training example contain an item of dev, holdout or test (its input or its gold answer)?

A training example that holds an evaluation item lets a model learn the test, and every later "gain"
on that split is then partly memorisation. The check runs on the example's full text (prompt and reply).

How the check stays meaningful for short, templated items (arithmetic: "Calculate 6 + 2.", gold "8"):
- Text is split into lowercase word/number tokens and single punctuation marks.
- An eval input of at least `n` tokens is represented by its *distinctive* n-grams: n-grams that occur in
  more than `boilerplate_df` of the suite's inputs are template text ("what is the answer to") and would
  make every example look contaminated, so they are ignored. An example hits the item when it contains at
  least `threshold` of the item's distinctive n-grams.
- An eval input shorter than `n` tokens (or one made only of template) is matched whole: the example hits
  it when the item's complete token sequence occurs contiguously in the example ("calculate 6 + 2 ."
  inside "... Calculate 6 + 2. The answer is 8"). For such items this is an exact-question match.
- A gold answer of at least `n` tokens (a reference solution, an essay) is indexed like an input, so a
  training reply that reproduces it is caught even when the question is phrased differently.
- A gold answer shorter than `n` tokens ("8") is never matched on its own: it occurs in almost every text
  and would flag everything. It only labels a hit on its question as "input+answer" when the example
  also contains it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ratchet.suites import tasks_for_split
from ratchet.types import Task

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngrams(toks: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


@dataclass(frozen=True)
class EvalItem:
    """One thing that must not leak: a task input or a long gold answer of an eval split."""

    task_id: str
    split: str
    part: str  # input | answer
    text: str


@dataclass(frozen=True)
class Hit:
    task_id: str
    split: str
    part: str  # input | answer | input+answer
    overlap: float  # share of the item's distinctive n-grams found (1.0 for a whole-sequence match)

    def to_json(self) -> dict:
        return {"task_id": self.task_id, "split": self.split, "part": self.part, "overlap": round(self.overlap, 3)}


@dataclass
class ContaminationIndex:
    """Built once per run from the eval splits; `check(text)` is then cheap."""

    n: int = 8
    threshold: float = 0.5
    boilerplate_df: float = 0.2
    _gram_items: dict[tuple[str, ...], list[int]] = field(default_factory=lambda: defaultdict(list))
    _gram_counts: list[int] = field(default_factory=list)  # distinctive n-grams per item
    _whole: dict[int, dict[tuple[str, ...], list[int]]] = field(default_factory=lambda: defaultdict(dict))
    _items: list[EvalItem] = field(default_factory=list)
    _short_gold: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        items: Iterable[EvalItem],
        all_inputs: Sequence[str],
        n: int = 8,
        threshold: float = 0.5,
        boilerplate_df: float = 0.2,
    ) -> ContaminationIndex:
        """`items`: what must not leak; `all_inputs`: every input of the suite, to learn which n-grams are template."""
        index = cls(n=n, threshold=threshold, boilerplate_df=boilerplate_df)
        template = _template_ngrams(all_inputs, n, boilerplate_df)
        for item in items:
            toks = tokens(item.text)
            if not toks:
                continue
            if item.part == "answer" and len(toks) < n:
                index._short_gold[item.task_id] = tuple(toks)
                continue
            grams = ngrams(toks, n) - template
            pos = len(index._items)
            index._items.append(item)
            if grams:
                index._gram_counts.append(len(grams))
                for g in grams:
                    index._gram_items[g].append(pos)
            else:  # too short, or nothing but template: match the whole sequence
                index._gram_counts.append(0)
                index._whole[len(toks)].setdefault(tuple(toks), []).append(pos)
        return index

    @property
    def size(self) -> int:
        return len(self._items)

    def check(self, text: str) -> list[Hit]:
        """Every eval item the text contains, strongest first."""
        toks = tokens(text)
        found: dict[int, float] = {}
        counts: dict[int, int] = defaultdict(int)
        for g in ngrams(toks, self.n):
            for pos in self._gram_items.get(g, ()):
                counts[pos] += 1
        for pos, c in counts.items():
            share = c / self._gram_counts[pos]
            if share >= self.threshold:
                found[pos] = share
        for length, table in self._whole.items():
            for g in ngrams(toks, length):
                for pos in table.get(g, ()):
                    found[pos] = 1.0
        hits = []
        for pos, share in found.items():
            item = self._items[pos]
            part = item.part
            gold = self._short_gold.get(item.task_id)
            if part == "input" and gold and _contains(toks, gold):
                part = "input+answer"
            hits.append(Hit(item.task_id, item.split, part, share))
        return sorted(hits, key=lambda h: (-h.overlap, h.task_id, h.part))


def _contains(toks: Sequence[str], needle: tuple[str, ...]) -> bool:
    return needle in ngrams(toks, len(needle)) if len(needle) <= len(toks) else False


def _template_ngrams(inputs: Sequence[str], n: int, max_df: float) -> set[tuple[str, ...]]:
    """n-grams that occur in more than `max_df` of the inputs (at least 2 of them): template text."""
    if len(inputs) < 2:
        return set()
    df: dict[tuple[str, ...], int] = defaultdict(int)
    for text in inputs:
        for g in ngrams(tokens(text), n):
            df[g] += 1
    limit = max(1, int(max_df * len(inputs)))
    return {g for g, c in df.items() if c > limit}


def eval_items(tasks_by_split: dict[str, Sequence[Task]], gold: Callable[[str], str]) -> list[EvalItem]:
    """Inputs and gold answers of the eval splits (dev, holdout, test) as items to index."""
    items: list[EvalItem] = []
    for split, tasks in tasks_by_split.items():
        if split == "train":
            raise ValueError("the train split is what gets checked; do not index it as an eval split")
        for t in tasks:
            items.append(EvalItem(t.id, split, "input", t.input))
            answer = gold(t.id)
            if answer:
                items.append(EvalItem(t.id, split, "answer", str(answer)))
    return items


EVAL_SPLITS = ("dev", "holdout", "test")


def index_for_suite(suite: Any, fractions: dict[str, float], salt: str, n: int = 8, threshold: float = 0.5,
                    boilerplate_df: float = 0.2) -> ContaminationIndex:
    """The index of everything in the suite's dev, holdout and test splits (inputs and gold answers).

    Test inputs are read here but never scored, so building the index is not an unseal.
    """
    items = eval_items({s: tasks_for_split(suite, s, fractions, salt) for s in EVAL_SPLITS}, suite.gold)
    return ContaminationIndex.build(items, [t.input for t in suite.tasks()], n=n, threshold=threshold,
                                    boilerplate_df=boilerplate_df)
