"""Paired statistics for deciding whether a candidate beats its parent.

Scores arrive as ``{task_id: [score of epoch 0, score of epoch 1, ...]}``. The task is the unit of
independence: epochs of one task share the task's difficulty, so they are within-cluster repeats, not
fresh samples. Every function here therefore works on one number per task (a per-task mean, or a
per-task paired difference) or clusters by task. Pure functions, no I/O.

The exact sign-flip test and the bootstrap are scipy's (`permutation_test`, `bootstrap`). The bootstrap
draws the same resamples from the seeded generator as the former hand-written one, so intervals agree to
the last bit or two. The sign-flip statistic is the sum of the positive differences, (sum(d) + sum(|d|)) / 2:
|d| does not change with the signs, so it orders sign patterns as their sum does (the same test), but it
adds non-negative terms, whose rounding error (< n*eps relative) stays inside scipy's tie tolerance
(100*eps relative to the observed value). With the plain sum that tolerance is ~0 when the observed sum is
~0, and patterns tying it in exact arithmetic were lost to rounding (d = [0.9, -0.6, -0.1, 0.4, -0.6]:
p 0.5, not the exact 17/32). Cost: scipy enumerates the 4096 patterns of 12 tasks in ~14 ms, where the
hand-written matrix product took ~0.13 ms; there are a few such calls a round.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

# Up to this many tasks the sign-flip permutation test is enumerated exactly (2**12 = 4096 patterns);
# below it the t-test's normal approximation is poor for the lumpy differences binary scores give.
EXACT_PERMUTATION_MAX_N = 12


def _finite_array(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of numbers")
    if arr.size == 0:
        raise ValueError(f"{what} is empty; evaluate at least one task before testing")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values; fix the scorer or drop those rollouts")
    return arr


def _task_scores(scores: Mapping[str, Sequence[float]], what: str) -> dict[str, np.ndarray]:
    if not scores:
        raise ValueError(f"{what} holds no tasks; evaluate at least one task")
    return {task: _finite_array(vals, f"{what}[{task!r}]") for task, vals in scores.items()}


def score_table(rollouts: Iterable[Any]) -> dict[str, list[float]]:
    """{task id: [score per epoch, in epoch order]} of scored rollouts (anything with task_id, epoch, score),
    the table every statistic here takes; tasks in sorted order."""
    table: dict[str, list[float]] = {}
    for r in sorted(rollouts, key=lambda r: (r.task_id, r.epoch)):
        table.setdefault(r.task_id, []).append(r.score)
    return table


def task_means(scores: Mapping[str, Sequence[float]], what: str = "scores") -> dict[str, float]:
    """One number per task: the mean over its epochs (plain Python: tables are small and many)."""
    if not scores:
        raise ValueError(f"{what} holds no tasks; evaluate at least one task")
    means = {}
    for task, vals in scores.items():
        vals = [float(v) for v in vals]
        if not vals:
            raise ValueError(f"{what}[{task!r}] is empty; evaluate at least one epoch of it or drop the task")
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"{what}[{task!r}] contains NaN or infinite values; fix the scorer or drop those rollouts")
        means[task] = math.fsum(vals) / len(vals)
    return means


def clustered_mean_se(scores: Mapping[str, Sequence[float]]) -> tuple[float, float]:
    """Mean over all rollouts and its standard error clustered by task.

    The SE is the cluster-robust (CR1) estimate: sum over tasks of the squared sum of residuals,
    scaled by G/(G-1) for G tasks. With one epoch per task it equals the ordinary SE s/sqrt(n).
    With a single task there is no between-task variation to estimate, so the SE is ``nan``
    (not 0: zero would claim certainty we do not have).
    """
    per_task = _task_scores(scores, "scores")
    all_values = np.concatenate(list(per_task.values()))
    n = all_values.size
    mean = float(all_values.mean())
    n_clusters = len(per_task)
    if n_clusters < 2:
        return mean, math.nan
    cluster_sums = np.array([(vals - mean).sum() for vals in per_task.values()])
    variance = (cluster_sums**2).sum() / n**2 * n_clusters / (n_clusters - 1)
    return mean, float(math.sqrt(variance))


def paired_differences(
    parent: Mapping[str, Sequence[float]], cand: Mapping[str, Sequence[float]]
) -> dict[str, float]:
    """Per-task ``mean(cand) - mean(parent)`` over the tasks both were evaluated on.

    Pairing on the same tasks (and, by the evaluator's contract, the same seeds) removes task
    difficulty from the comparison, which is what makes small effects visible.
    """
    parent_tasks = task_means(parent, "parent scores")
    cand_tasks = task_means(cand, "candidate scores")
    shared = [task for task in cand_tasks if task in parent_tasks]
    if not shared:
        raise ValueError(
            "parent and candidate share no task ids; evaluate both on the same tasks (and seeds) "
            f"(parent has e.g. {sorted(parent_tasks)[:3]}, candidate has e.g. {sorted(cand_tasks)[:3]})"
        )
    return {task: cand_tasks[task] - parent_tasks[task] for task in sorted(shared)}


def _positive_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum(np.maximum(x, 0.0), axis=axis)


def _sign_flip_p_value(shifted: np.ndarray) -> float:
    """Exact one-sided p of sum(shifted) under random signs (H0: symmetric about 0): all 2**n patterns."""
    res = sps.permutation_test((shifted,), _positive_sum, permutation_type="samples", alternative="greater",
                               n_resamples=np.inf, vectorized=True, axis=-1)
    return float(res.pvalue)


def one_sided_paired_test(diffs: Sequence[float], min_effect: float = 0.0) -> float:
    """p-value for H1: the mean per-task difference exceeds ``min_effect``.

    One-sample t-test on the per-task differences. When there are few tasks (<= 12) or every
    difference is the same (the t statistic is undefined), an exact sign-flip permutation test is
    used instead; it assumes only that the differences are symmetric about ``min_effect`` under H0.
    Differences all equal to ``min_effect`` (e.g. all zero) give p = 1: no evidence at all.
    """
    d = _finite_array(diffs, "diffs")
    shifted = d - min_effect
    spread = float(np.ptp(shifted))
    if spread == 0.0:
        # all equal to c: only the all-plus pattern reaches sum n*c when c > 0; every pattern does when c <= 0
        return float(0.5**d.size) if shifted[0] > 0 else 1.0
    if d.size <= EXACT_PERMUTATION_MAX_N:
        return _sign_flip_p_value(shifted)
    # the one-sample t-test, written out: scipy's ttest_1samp wrapper costs more than the test itself
    t_stat = shifted.mean() / (shifted.std(ddof=1) / math.sqrt(d.size))
    return float(sps.t.sf(t_stat, df=d.size - 1))


def bootstrap_ci(
    diffs: Sequence[float], level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean difference, resampling tasks (seeded)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    d = _finite_array(diffs, "diffs")
    if d.size == 1:  # scipy needs two observations; every resample of one task is that task
        return float(d[0]), float(d[0])
    res = sps.bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                        rng=np.random.default_rng(seed), vectorized=True, axis=-1)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def sequential_worse(diffs: Sequence[float], alpha_futility: float = 0.05) -> bool:
    """True when a first slice already shows the candidate worse (one-sided test, H1: mean < 0).

    Stopping for futility can only turn would-be acceptances into rejections, so it never raises
    the false-acceptance rate of the final test; its only cost is losing a candidate that is
    better but looks significantly worse on the slice, which happens with probability < alpha_futility.
    """
    if not 0.0 < alpha_futility < 1.0:
        raise ValueError(f"alpha_futility must be in (0, 1), got {alpha_futility}")
    d = _finite_array(diffs, "diffs")
    return one_sided_paired_test(-d) < alpha_futility


def format_p(p: float) -> str:
    """A p-value for people: 4 decimals, or 2 significant digits when that would print 0.0000."""
    return f"{p:.2g}" if 0 < p < 1e-3 else f"{p:.4f}"
