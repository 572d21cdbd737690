"""Near-duplicate filtering of 20,000 replies: the former exact O(n^2) scan vs MinHash-LSH + exact confirm.

Synthetic, seeded replies: worked answers to word problems, phrased from a bank of openings, steps and
closings, over a few hundred tasks plus a few large ones; a share are planted near-duplicates (an earlier
reply of the task with a word swapped, punctuation changed or a phrase added) and exact duplicates. Both
methods run through `filter_examples` on the same candidates (the filter groups by task and prompt);
prints a table with the time of each, the ratio and the kept counts (and whether the kept sets agree).
A second row puts all replies in one group: the scan is timed on a prefix and extrapolated as n^2.

    python bench/near_dup.py [--replies 20000] [--tasks 300] [--large 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import time

from ratchet.flywheel.datasets import SFT, Example, Provenance
from ratchet.flywheel.filter import filter_examples
from ratchet.flywheel.near_dup import ExactNearDups, MinHashNearDups

OPEN = ["Let's work it out.", "We need the total.", "First, read the problem carefully.", "Okay, step by step:",
        "To solve this, we add the amounts.", "Here is how to think about it.", "Start with what we know."]
STEP = ["{who} starts with {a} {item}.", "At first there are {a} {item}.", "{who} has {a} {item} to begin with.",
        "Then {who} gets {b} more.", "After that, {b} more {item} are added.", "Adding {b} gives {a} + {b}.",
        "So we compute {a} + {b} = {c}.", "{a} plus {b} is {c}.", "Check: {c} - {b} = {a}, which is right."]
CLOSE = ["The answer is {c}.", "So {who} has {c} {item} in total.", "Final answer: {c}", "Therefore, {c}.",
         "That makes {c} {item} altogether."]
FILLER = ["Note that nothing is taken away.", "No other {item} are involved.", "We only need one addition here.",
          "The order of adding does not matter.", "This is a simple sum."]
SWAP = {"total": "sum", "first": "initially", "then": "next", "gives": "yields", "so": "thus", "more": "extra"}
NAMES, ITEMS = ["Tom", "Ana", "Li", "Sam", "Priya", "Omar"], ["apples", "books", "coins", "cards", "pens"]


def reply(rng: random.Random, task: dict) -> str:
    parts = [rng.choice(OPEN)] + rng.sample(STEP, rng.randint(3, 6)) + rng.sample(FILLER, rng.randint(0, 2))
    parts.append(rng.choice(CLOSE))
    return " ".join(p.format(**task) for p in parts)


def near_copy(rng: random.Random, text: str) -> str:
    words = text.split()
    kind = rng.randrange(4)
    if kind == 0:  # swap a word for a synonym (or drop it)
        i = rng.randrange(len(words))
        words[i] = SWAP.get(words[i].lower(), "")
    elif kind == 1:
        words.append(rng.choice(["Done.", "Hope this helps!", "(easy)", "yes"]))
    elif kind == 2:
        return text.replace(".", "!", 1).upper()
    else:
        words.insert(rng.randrange(len(words)), rng.choice(["really", "just", "so"]))
    return " ".join(w for w in words if w)


def candidates(n: int, n_tasks: int, n_large: int, seed: int, one_group: bool = False) -> list[Example]:
    rng = random.Random(seed)
    large_size = n // 20  # each large task holds 5% of the replies
    sizes = [large_size] * n_large
    rest = n - sum(sizes)
    sizes += [rest // n_tasks + (i < rest % n_tasks) for i in range(n_tasks)]
    out: list[Example] = []
    for t, size in enumerate(sizes):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        task = {"who": rng.choice(NAMES), "item": rng.choice(ITEMS), "a": a, "b": b, "c": a + b}
        tid = "t0" if one_group else f"t{t}"
        prompt = [{"role": "user", "content": "Solve." if one_group else f"{task['who']} has {a} {task['item']} ..."}]
        texts: list[str] = []
        for e in range(size):
            r = rng.random()
            text = (rng.choice(texts) if r < 0.05 else near_copy(rng, rng.choice(texts)) if r < 0.30 else
                    reply(rng, task)) if texts else reply(rng, task)
            texts.append(text)
            prov = Provenance(run_id="bench", generation=1, task_id=tid, split="train", model="m", harness="h",
                              harness_commit=None, verifier="v", score=1.0, seed=e, eval_id="e", epoch=len(out),
                              call_index=0)
            out.append(Example(kind=SFT, prompt=prompt, reply=text, provenance=prov))
    return out


def timed(cands: list[Example], near_dups, threshold: float) -> tuple[float, set[str], int]:
    t0 = time.perf_counter()
    res = filter_examples(cands, None, min_chars=1, max_chars=10**6, near_dup_threshold=threshold,
                          per_task_cap=10**9, near_dups=near_dups)
    return time.perf_counter() - t0, {e.id for e in res.kept}, res.counts["near_duplicate"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replies", type=int, default=20000)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--large", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--one-group-prefix", type=int, default=2000, help="replies the scan is timed on in one group")
    args = ap.parse_args()
    print(f"{'grouping':<34} {'replies':>7} {'exact scan s':>13} {'minhash-lsh s':>14} {'speed-up':>9} "
          f"{'kept exact':>11} {'kept lsh':>9} {'same kept set':>14}")

    cands = candidates(args.replies, args.tasks, args.large, args.seed)
    old_s, old_kept, _ = timed(cands, ExactNearDups, args.threshold)
    new_s, new_kept, _ = timed(cands, MinHashNearDups, args.threshold)
    same = "yes" if old_kept == new_kept else f"no ({len(old_kept ^ new_kept)} differ)"
    label = f"per task ({args.tasks} + {args.large} large)"
    print(f"{label:<34} {len(cands):>7} {old_s:>13.2f} {new_s:>14.2f} {old_s / new_s:>8.1f}x "
          f"{len(old_kept):>11} {len(new_kept):>9} {same:>14}")

    one = candidates(args.replies, args.tasks, args.large, args.seed, one_group=True)
    prefix = one[:args.one_group_prefix]
    pre_old_s, pre_old_kept, _ = timed(prefix, ExactNearDups, args.threshold)
    pre_new_s, pre_new_kept, _ = timed(prefix, MinHashNearDups, args.threshold)
    same = "yes" if pre_old_kept == pre_new_kept else f"no ({len(pre_old_kept ^ pre_new_kept)} differ)"
    print(f"{'one group, first ' + str(len(prefix)):<34} {len(prefix):>7} {pre_old_s:>13.2f} {pre_new_s:>14.2f} "
          f"{pre_old_s / pre_new_s:>8.1f}x {len(pre_old_kept):>11} {len(pre_new_kept):>9} {same:>14}")
    all_new_s, all_new_kept, _ = timed(one, MinHashNearDups, args.threshold)
    est = pre_old_s * (len(one) / len(prefix)) ** 2
    print(f"{'one group, all (scan: n^2 est.)':<34} {len(one):>7} {'~' + format(est, '.0f'):>13} {all_new_s:>14.2f} "
          f"{'~' + format(est / all_new_s, '.0f'):>8}x {'-':>11} {len(all_new_kept):>9} {'-':>14}")


if __name__ == "__main__":
    main()
