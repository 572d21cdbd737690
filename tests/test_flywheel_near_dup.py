"""MinHash-LSH near-duplicate detection keeps the same set as the former exact O(n^2) scan."""

import random

import pytest

from ratchet.flywheel.datasets import SFT, Example, Provenance
from ratchet.flywheel.filter import filter_examples
from ratchet.flywheel.near_dup import ExactNearDups, MinHashNearDups, jaccard, lsh_params

WORDS = ("we add the two numbers and get so the answer is total first then check carefully sum of apples "
         "books coins each more than twice").split()


def example(task: str, epoch: int, reply: str) -> Example:
    prov = Provenance(run_id="r", generation=1, task_id=task, split="train", model="m", harness="h",
                      harness_commit=None, verifier="v", score=1.0, seed=epoch, eval_id="e", epoch=epoch, call_index=0)
    return Example(kind=SFT, prompt=[{"role": "user", "content": task}], reply=reply, provenance=prov)


def small_case(seed: int = 0, tasks: int = 8, per_task: int = 50) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for t in range(tasks):
        texts: list[str] = []
        for e in range(per_task):
            r = rng.random()
            if texts and r < 0.1:  # the same tokens, other spacing: Jaccard 1 but not an exact duplicate
                text = rng.choice(texts).replace(" + ", "+", 1).replace(" = ", " =", 1)
            elif texts and r < 0.4:  # a planted near-duplicate: one word changed, added or dropped
                words = rng.choice(texts).split()
                i = rng.randrange(len(words))
                words[i:i + 1] = rng.choice([[], [rng.choice(WORDS)], [words[i], rng.choice(WORDS)]])
                text = " ".join(words) or "x"
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 2, 5, 20, 40, 60])))
                text += f" {rng.randint(0, 9)} + {rng.randint(0, 9)} = {rng.randint(0, 18)}"
            texts.append(text)
            out.append(example(f"t{t}", e, text))
    return out


def run(cands, near_dups, threshold):
    res = filter_examples(cands, None, min_chars=1, max_chars=10_000, near_dup_threshold=threshold,
                          per_task_cap=1000, near_dups=near_dups)
    return [e.id for e in res.kept], [(d.example.id, d.reason, d.detail) for d in res.dropped]


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9, 1.0])
def test_same_kept_set_and_reasons_as_the_exact_scan(threshold):
    cands = small_case()
    exact, lsh = run(cands, ExactNearDups, threshold), run(cands, MinHashNearDups, threshold)
    assert lsh == exact  # kept ids, and every drop with its reason and the reply it was similar to
    assert sum(reason == "near_duplicate" for _, reason, _ in exact[1]) >= 30


def test_short_texts_match_only_the_same_tokens():
    index = MinHashNearDups(0.9)
    for text in ("4", "5", "the answer is 4"):
        assert index.find(text) is None
        index.add(text)
    assert index.find("4 ") == "4" and index.find("6") is None and index.find("the answer is 4 !") is None
    assert jaccard("4", "4") == 1.0 and jaccard("4", "the answer is 4") == 0.0


def test_banding_misses_a_pair_at_the_threshold_rarely():
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95, 1.0):
        bands, rows = lsh_params(threshold)
        assert bands * rows <= 256 and (1 - threshold**rows) ** bands <= 1e-5
