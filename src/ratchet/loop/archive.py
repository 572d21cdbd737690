"""The archive of accepted candidates and how a parent is chosen from it."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np


@dataclass
class Member:
    candidate_id: str  # "seed" for the starting point
    commit: str
    dev_scores: dict[str, list[float]]

    @property
    def dev_mean(self) -> float:
        values = [s for v in self.dev_scores.values() for s in v]
        return float(np.mean(values)) if values else 0.0

    def task_means(self) -> dict[str, float]:
        return {t: float(np.mean(v)) for t, v in self.dev_scores.items()}


def best(archive: list[Member]) -> Member:
    """Highest dev mean; ties go to the earlier member (the incumbent), so noise cannot reorder."""
    return max(archive, key=lambda m: (round(m.dev_mean, 12), -archive.index(m)))


def pareto_front(archive: list[Member]) -> list[Member]:
    """Members not dominated on per-task mean scores: a candidate best on some tasks stays selectable."""
    tasks = set.intersection(*(set(m.dev_scores) for m in archive)) if archive else set()
    means = [m.task_means() for m in archive]

    def dominates(a: dict[str, float], b: dict[str, float]) -> bool:
        return all(a[t] >= b[t] for t in tasks) and any(a[t] > b[t] for t in tasks)

    return [m for i, m in enumerate(archive) if not any(dominates(means[j], means[i]) for j in range(len(archive)) if j != i)]


def select_parent(archive: list[Member], mode: str, rng: random.Random) -> Member:
    if mode == "best" or len(archive) == 1:
        return best(archive)
    if mode == "pareto":
        return rng.choice(pareto_front(archive))
    raise ValueError(f"unknown parent selection {mode!r}; use best or pareto")
