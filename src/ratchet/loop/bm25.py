"""BM25 over a few hundred short texts (a project's lessons), in memory, in pure Python.

Okapi BM25 (k1 = 1.2, b = 0.75) with Lucene's idf, ln(1 + (N - n + 0.5) / (n + 0.5)), which stays above
zero. SQLite FTS5's bm25() and the `rank-bm25` package use the classic idf, ln((N - n + 0.5) / (n + 0.5)),
which is zero for a word in half of the documents and negative above: with the two or three lessons a
project starts with, every shared word scores nothing, exactly when recall matters most.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")  # keeps failure labels such as wrong_answer whole
# words that say nothing about a failure or a change; kept short on purpose
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in into is it its not of on or that the this to was were will with"
    .split()
)


def tokenize(text: str) -> list[str]:
    """Lower-case words, without stopwords and bare numbers: a task's numbers say which task failed, not how."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and not w.isdigit()]


def bm25_scores(docs: Sequence[Sequence[str]], query: Sequence[str], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """One score per document (higher: more relevant; 0: shares no query word)."""
    n_docs = len(docs)
    if not n_docs or not query:
        return [0.0] * n_docs
    lengths = [len(d) for d in docs]
    avg = (sum(lengths) / n_docs) or 1.0
    counts = [Counter(d) for d in docs]
    terms = set(query)
    df = {t: sum(1 for c in counts if t in c) for t in terms}
    idf = {t: math.log(1.0 + (n_docs - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}
    scores = []
    for c, length in zip(counts, lengths):
        norm = k1 * (1.0 - b + b * length / avg)
        scores.append(sum(idf[t] * c[t] * (k1 + 1.0) / (c[t] + norm) for t in terms if c[t]))
    return scores
