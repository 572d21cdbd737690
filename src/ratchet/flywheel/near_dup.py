"""Near-duplicate replies within a filter group: token-bigram Jaccard at or above a threshold.

`MinHashNearDups` (the filter's default) finds candidates with datasketch's MinHash-LSH over the same
token bigrams and confirms each with the exact Jaccard, so it never reports a pair under the threshold;
it answers, like the scan, the earliest kept reply that is similar enough. Its banding is chosen so that a
pair exactly at the threshold is missed with probability <= 1e-5 (pairs above it, far less), so the kept
set is the scan's except by that chance. `ExactNearDups` is the former O(n^2) scan, kept as the reference.
Texts of fewer than two tokens have no bigram; they match only a text of the same tokens.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

import numpy as np
from datasketch import MinHash, MinHashLSH

from ratchet.flywheel.contamination import ngrams, tokens

N = 2  # shingles are token bigrams
NUM_PERM = 256
MISS_AT_THRESHOLD = 1e-5  # the most a pair with Jaccard exactly at the threshold may be missed by LSH


class NearDups(Protocol):
    """A group's kept texts: `find` the earliest one similar enough to a text, `add` a kept text."""

    def find(self, text: str) -> str | None: ...

    def add(self, text: str) -> None: ...


def jaccard(a: str, b: str, n: int = N) -> float:
    ta, tb = tokens(a), tokens(b)
    if len(ta) < n or len(tb) < n:
        return 1.0 if ta == tb else 0.0
    ga, gb = ngrams(ta, n), ngrams(tb, n)
    return len(ga & gb) / len(ga | gb)


class ExactNearDups:
    """Every kept text of the group, in order, through `jaccard`: O(n) per query, O(n^2) per group."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.texts: list[str] = []

    def find(self, text: str) -> str | None:
        return next((o for o in self.texts if jaccard(text, o) >= self.threshold), None)

    def add(self, text: str) -> None:
        self.texts.append(text)


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows): the most rows per band (fewest false candidates) whose miss chance at `threshold`,
    (1 - threshold**rows)**bands, is at most MISS_AT_THRESHOLD."""
    for rows in range(num_perm // 2, 0, -1):  # datasketch wants at least two bands
        bands = num_perm // rows
        if (1.0 - threshold**rows) ** bands <= MISS_AT_THRESHOLD:
            return bands, rows
    return num_perm, 1


@lru_cache(maxsize=4)
def _permutations(num_perm: int) -> tuple[np.ndarray, str]:
    seed = MinHash(num_perm=num_perm, seed=1)  # seeded: the same texts give the same signatures in every run
    return seed.permutations, seed.scheme


class MinHashNearDups:
    """MinHash-LSH candidates, confirmed with the exact Jaccard of cached bigram sets."""

    def __init__(self, threshold: float, num_perm: int = NUM_PERM) -> None:
        self.threshold, self.num_perm = threshold, num_perm
        self.texts: list[str] = []
        self.grams: list[set[tuple[str, ...]]] = []
        self.short: dict[tuple[str, ...], int] = {}  # fewer than N tokens -> first such text
        self.lsh = MinHashLSH(num_perm=num_perm, params=lsh_params(min(max(threshold, 0.0), 1.0), num_perm))
        self._last: tuple[str, list[str], set[tuple[str, ...]], MinHash | None] | None = None

    def _sketch(self, text: str) -> tuple[list[str], set[tuple[str, ...]], MinHash | None]:
        if self._last is not None and self._last[0] == text:
            return self._last[1:]
        toks = tokens(text)
        grams = ngrams(toks, N) if len(toks) >= N else set()
        mh = None
        if grams:
            perms, scheme = _permutations(self.num_perm)
            mh = MinHash(num_perm=self.num_perm, permutations=perms, scheme=scheme)
            mh.update_batch([" ".join(g).encode() for g in grams])  # tokens never hold a space
        self._last = (text, toks, grams, mh)
        return toks, grams, mh

    def find(self, text: str) -> str | None:
        if self.threshold <= 0.0:  # every Jaccard is >= 0: the first kept text matches all
            return self.texts[0] if self.texts else None
        toks, grams, mh = self._sketch(text)
        if mh is None:
            i = self.short.get(tuple(toks))
            return None if i is None else self.texts[i]
        hits = [i for i in self.lsh.query(mh)
                if len(grams & self.grams[i]) / len(grams | self.grams[i]) >= self.threshold]
        return self.texts[min(hits)] if hits else None

    def add(self, text: str) -> None:
        toks, grams, mh = self._sketch(text)
        i = len(self.texts)
        self.texts.append(text)
        self.grams.append(grams)
        if mh is None:
            self.short.setdefault(tuple(toks), i)
        else:
            self.lsh.insert(i, mh, check_duplication=False)
