"""The one decision rule: keep a candidate only when paired evidence says it beats its parent.

The comparison step (`loop.compare`, used by evolve, research and the flywheel) calls these functions
with plain score tables (``{task_id: [score per epoch]}``), so nothing here knows about harnesses,
models or commands.
The rule is a one-sided paired test on per-task differences (tasks are the clusters, epochs are
repeats inside them) plus a minimal effect size. ``mean_rule`` is the naive "mean went up" rule,
kept only so the benchmark can show how often it keeps noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ratchet.stats import (
    bootstrap_ci,
    format_p,
    one_sided_paired_test,
    paired_differences,
    sequential_worse,
    task_means,
)

Scores = Mapping[str, Sequence[float]]


@dataclass
class DecisionStats:
    """What was measured and why the candidate was kept or not.

    ``p_value`` belongs to the test that decided: the improvement test (H1: mean diff > min_effect)
    for ``decide_dev``, the futility test (H1: mean diff < 0) for ``decide_slice``. The interval is a
    two-sided ``ci_level`` percentile bootstrap over tasks; with ``ci_level = 1 - 2*alpha`` its lower
    end is the one-sided bound that matches the test.
    """

    n_tasks: int
    mean_parent: float
    mean_cand: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    alpha: float
    accepted: bool
    reason: str
    ci_level: float = 0.95

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DecisionStats:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _check_alpha(name: str, alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"{name} must be in (0, 0.5), got {alpha}")


def _paired_summary(parent_scores: Scores, cand_scores: Scores) -> tuple[list[float], float, float]:
    """Per-task differences and the two means over the shared tasks (means of per-task means,
    so that mean_cand - mean_parent equals the mean difference even with unequal epochs)."""
    diffs = paired_differences(parent_scores, cand_scores)
    parent_means, cand_means = task_means(parent_scores), task_means(cand_scores)
    mean_parent = float(np.mean([parent_means[t] for t in diffs]))
    mean_cand = float(np.mean([cand_means[t] for t in diffs]))
    return list(diffs.values()), mean_parent, mean_cand


def _measured(parent_scores: Scores, cand_scores: Scores, alpha: float, seed: int,
              p_value: Callable[[list[float]], float]) -> DecisionStats:
    """The statistics both rules report: means, mean difference, p of the rule's test, bootstrap interval
    at 1 - 2*alpha. `accepted` and `reason` are for the caller to fill in."""
    diffs, mean_parent, mean_cand = _paired_summary(parent_scores, cand_scores)
    ci_level = 1.0 - 2.0 * alpha
    ci_low, ci_high = bootstrap_ci(diffs, level=ci_level, seed=seed)
    return DecisionStats(n_tasks=len(diffs), mean_parent=mean_parent, mean_cand=mean_cand, mean_diff=float(np.mean(diffs)),
                         ci_low=ci_low, ci_high=ci_high, p_value=p_value(diffs), alpha=alpha, accepted=False, reason="",
                         ci_level=ci_level)


def decide_dev(
    parent_scores: Scores, cand_scores: Scores, alpha: float = 0.05, min_effect: float = 0.0, seed: int = 0
) -> DecisionStats:
    """Accept iff the one-sided paired test gives p < alpha and the mean difference exceeds min_effect."""
    _check_alpha("alpha", alpha)
    s = _measured(parent_scores, cand_scores, alpha, seed, lambda d: one_sided_paired_test(d, min_effect=min_effect))
    measured = (f"mean diff {s.mean_diff:+.4f} over {s.n_tasks} tasks, {s.ci_level:.0%} CI "
                f"[{s.ci_low:+.4f}, {s.ci_high:+.4f}]")
    if s.mean_diff <= min_effect:
        s.reason = f"rejected: {measured} is not above min_effect {min_effect:g}"
    elif s.p_value >= alpha:
        s.reason = f"rejected: {measured}, p={format_p(s.p_value)} >= alpha={alpha:g} (not significant)"
    else:
        s.accepted, s.reason = True, f"accepted: {measured}, p={format_p(s.p_value)} < alpha={alpha:g}"
    return s


def decide_slice(
    parent_scores: Scores, cand_scores: Scores, alpha_futility: float = 0.05, seed: int = 0
) -> DecisionStats | None:
    """On the first slice of dev: a rejection when the candidate is already clearly worse, else None
    (meaning: keep evaluating). Stopping early only ever rejects, so it cannot inflate false acceptances."""
    _check_alpha("alpha_futility", alpha_futility)
    diffs, _, _ = _paired_summary(parent_scores, cand_scores)
    if not sequential_worse(diffs, alpha_futility=alpha_futility):
        return None
    s = _measured(parent_scores, cand_scores, alpha_futility, seed, lambda d: one_sided_paired_test([-x for x in d]))
    s.reason = (f"stopped early: clearly worse on the first slice, mean diff {s.mean_diff:+.4f} over "
                f"{s.n_tasks} tasks, p(worse)={s.p_value:.4f} < {alpha_futility:g}")
    return s


def mean_rule(parent_scores: Scores, cand_scores: Scores) -> bool:
    """The naive rule (keep if the mean went up at all). For the contrast benchmark only; never decide with it."""
    diffs, _, _ = _paired_summary(parent_scores, cand_scores)
    return float(np.mean(diffs)) > 1e-12  # tolerance: equal tables must not "go up" by rounding
