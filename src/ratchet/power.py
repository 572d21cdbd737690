"""Power before spending: the smallest gain a split can detect, and the tasks and epochs a gain needs.

The test being planned for is the loop's: a one-sided paired test at level alpha on the per-task
differences d_i = (candidate's mean over E epochs) - (parent's mean over E epochs) of n tasks
(`stats.one_sided_paired_test`; the dev decision, the holdout confirmation and the final paired
test on test are all this test). Its power at a true mean gain delta is that of the one-sample
t-test, P(T > t[1-alpha, n-1]) with T noncentral t (n-1 degrees of freedom, noncentrality
delta * sqrt(n) / sd_d). Below `min_units(alpha)` tasks even the exact sign-flip test used for small
n cannot reach p < alpha, so the power is 0.

sd_d, the per-task spread of the paired differences, is estimated from the seed's scores alone:

    sd_d^2 = (w(p) + w(p + delta)) / E

with p the seed's mean score and w the within-task variance of one rollout's score (the part that
changes with the sampling seed). The candidate is assumed to gain about the same on every task (no
between-task spread of the gain), so "epochs needed" is a lower bound: epochs cannot replace tasks
when a gain is concentrated on a few of them. w comes from one of three sources, named in every
result (`Noise.source`):

- "epoch pairs": the seed was scored with 2 or more epochs; w is the pooled within-task variance of its
  scores (measured). For accuracy (0/1) scores it is rescaled along the effect: w(x) = h * x(1-x),
  with h = measured / (p(1-p)) <= 1 (tasks that differ in difficulty have less within-task variance).
- "binomial bound": one epoch of accuracy scores; w(x) = x(1-x), as if every task were a coin with the
  split's mean accuracy. Real tasks differ in difficulty, which only lowers w, so this bound overstates
  sd_d (too few detectable gains, never too many) unless the gain concentrates on a few tasks and
  many epochs are used.
- "variance bound": one epoch of scores that are not 0/1; w = their variance across tasks, which also
  holds the between-task spread that pairing removes: an overstatement of sd_d, so again conservative.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as sps
from scipy.optimize import brentq

POWER = 0.8  # the power every figure is for, unless a caller asks for another
DEFAULT_EFFECT = 0.15  # the gain of interest when [loop] min_effect is 0 (15 points of accuracy)
MAX_TASKS = 1_000_000
MAX_EPOCHS = 32


@dataclass(frozen=True)
class Noise:
    """What the seed's scores say about the noise of a paired difference."""

    mean: float  # the seed's mean score p
    within: float  # w(p): the within-task variance of one rollout's score
    binary: bool  # scores are 0/1 (accuracy): w moves with the mean
    source: str  # epoch pairs | binomial bound | variance bound | assumed
    n_tasks: int = 0
    epochs: int = 0

    def w(self, x: float) -> float:
        if not self.binary:
            return self.within
        x = min(1.0, max(0.0, x))
        base = self.mean * (1.0 - self.mean)
        h = min(1.0, self.within / base) if base > 0 else 1.0
        return h * x * (1.0 - x)

    def describe(self) -> str:
        what = "accuracy" if self.binary else "mean score"
        seen = f" on {self.n_tasks} tasks x {self.epochs} epochs" if self.n_tasks else ""
        return f"seed {what} {self.mean:.3f}{seen}; within-task variance {self.within:.4f} ({self.source})"


def min_units(alpha: float) -> int:
    """The fewest paired tasks (or seeds) whose exact one-sided test can reach p < alpha at all."""
    _check_alpha(alpha)
    return max(1, math.floor(math.log(alpha) / math.log(0.5)) + 1)


def noise_from_scores(scores: Mapping[str, Sequence[float]]) -> Noise:
    """The noise model of a seed's score table {task: [score per epoch]} (see the module docstring)."""
    rows = [[float(v) for v in vals] for vals in scores.values() if len(vals)]
    if not rows:
        raise ValueError("no scores: evaluate the seed on at least one task first")
    values = [v for r in rows for v in r]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("the scores contain NaN or infinite values; fix the scorer")
    mean = math.fsum(values) / len(values)
    binary = all(v in (0.0, 1.0) for v in values)
    epochs = min(len(r) for r in rows)
    repeated = [r for r in rows if len(r) >= 2]
    if repeated:
        within = math.fsum(_var(r) for r in repeated) / len(repeated)
        source = "epoch pairs"
    elif binary:
        within, source = mean * (1.0 - mean), "binomial bound"
    else:
        within, source = (_var(values) if len(values) >= 2 else 0.0), "variance bound"
    return Noise(mean, within, binary, source, n_tasks=len(rows), epochs=epochs)


def assumed_noise(accuracy: float = 0.5) -> Noise:
    """The binomial bound at an assumed accuracy (0.5: the worst case), for plans made before any evaluation."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy}")
    return Noise(accuracy, accuracy * (1.0 - accuracy), True, f"binomial bound at an assumed accuracy {accuracy:g}")


def diff_sd(noise: Noise, effect: float, epochs: int) -> float:
    """sd_d: the per-task standard deviation of a paired difference with `epochs` epochs per side."""
    _check_epochs(epochs)
    return math.sqrt(max(0.0, noise.w(noise.mean) + noise.w(noise.mean + effect)) / epochs)


def power(effect: float, n: int, epochs: int, noise: Noise, alpha: float) -> float:
    """The probability that the paired test on n tasks x epochs rejects at alpha when the true gain is `effect`."""
    _check_alpha(alpha)
    if noise.binary and noise.mean + effect > 1.0 + 1e-12:
        return 0.0  # no accuracy above 100%
    return power_at_sd(effect, n, diff_sd(noise, effect, epochs), alpha)


def power_at_sd(effect: float, n: int, sd: float, alpha: float) -> float:
    """The one-sided paired t-test's power on n tasks whose differences have standard deviation `sd` (0 below
    `min_units`): P(T > t[1-alpha, n-1]), T noncentral t with noncentrality effect * sqrt(n) / sd."""
    if n < min_units(alpha):
        return 0.0
    if sd == 0.0:
        return 1.0 if effect > 0 else 0.0
    df = n - 1
    return float(sps.nct.sf(sps.t.ppf(1.0 - alpha, df), df, effect * math.sqrt(n) / sd))


def min_detectable_effect(n: int, epochs: int, noise: Noise, alpha: float, target: float = POWER) -> float:
    """The smallest gain detected with probability `target`; inf when none is (too few tasks, no headroom)."""
    _check_target(target)
    if n < min_units(alpha):
        return math.inf
    top = 1.0 - noise.mean if noise.binary else 50.0 * math.sqrt(max(noise.within, 1e-12))
    if top <= 0 or power(top, n, epochs, noise, alpha) < target:
        return math.inf
    if diff_sd(noise, 0.0, epochs) == 0.0 and not noise.binary:
        return 0.0
    return float(brentq(lambda d: power(d, n, epochs, noise, alpha) - target, 1e-9, top, xtol=1e-6))


def tasks_needed(effect: float, epochs: int, noise: Noise, alpha: float, target: float = POWER) -> int | None:
    """The fewest tasks that detect `effect` with probability `target`; None when no number of tasks does."""
    _check_target(target)
    if effect <= 0 or power(effect, MAX_TASKS, epochs, noise, alpha) < target:
        return None
    lo, hi = min_units(alpha), MAX_TASKS
    while lo < hi:
        mid = (lo + hi) // 2
        if power(effect, mid, epochs, noise, alpha) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def epochs_needed(effect: float, n: int, noise: Noise, alpha: float, target: float = POWER,
                  max_epochs: int = MAX_EPOCHS) -> int | None:
    """The fewest epochs with which n tasks detect `effect` with probability `target`; None within max_epochs."""
    _check_target(target)
    for e in range(1, max_epochs + 1):
        if power(effect, n, e, noise, alpha) >= target:
            return e
    return None


@dataclass(frozen=True)
class SplitPlan:
    split: str
    n: int
    epochs: int
    mde: float  # the smallest gain detected with 80% power
    power: float  # the power at the effect of interest
    tasks: int | None  # tasks needed for the effect, at these epochs
    epochs_for_effect: int | None  # epochs needed for the effect, with these tasks

    def to_json(self) -> dict:
        return {"split": self.split, "n": self.n, "epochs": self.epochs,
                "mde": None if math.isinf(self.mde) else round(self.mde, 4), "power": round(self.power, 4),
                "tasks_needed": self.tasks, "epochs_needed": self.epochs_for_effect}


def plan_split(split: str, n: int, epochs: int, effect: float, noise: Noise, alpha: float,
               target: float = POWER) -> SplitPlan:
    return SplitPlan(split, n, epochs, min_detectable_effect(n, epochs, noise, alpha, target),
                     power(effect, n, epochs, noise, alpha), tasks_needed(effect, epochs, noise, alpha, target),
                     epochs_needed(effect, n, noise, alpha, target))


def shortfall(plan: SplitPlan, effect: float, what: str, unit: str = "tasks") -> str | None:
    """A warning sentence when the split cannot detect `effect` with 80% power; None when it can."""
    if plan.mde <= effect:
        return None
    detects = "no gain at all" if math.isinf(plan.mde) else f"only gains of {plan.mde:.3f} or more"
    fixes = []
    if plan.tasks is not None:
        fixes.append(f"{plan.tasks} {unit} at {plan.epochs} epochs")
    if plan.epochs_for_effect is not None:
        fixes.append(f"{plan.epochs_for_effect} epochs with these {plan.n} {unit}")
    fix = f"; it would need {' or '.join(fixes)}" if fixes else ""
    return (f"the {plan.split} split ({plan.n} {unit} x {plan.epochs} epochs) cannot confirm a gain of {effect:g} "
            f"({what}): with {POWER:.0%} power it detects {detects} (power {plan.power:.0%} at {effect:g}){fix}")


def effect_of_interest(min_effect: float) -> tuple[float, str]:
    """The gain a plan is for: [loop] min_effect when it is set, else DEFAULT_EFFECT; and how to name it."""
    if min_effect > 0:
        return min_effect, "[loop] min_effect"
    return DEFAULT_EFFECT, "the default effect of interest; [loop] min_effect sets another"


def split_warnings(noise: Noise, sizes: Mapping[str, tuple[int, int]], min_effect: float, alpha: float,
                   unit: str = "tasks", use_default: bool = True) -> list[str]:
    """The start-of-run warnings: one line per split in `sizes` ({split: (units, epochs)}) that cannot confirm
    [loop] min_effect with 80% power (DEFAULT_EFFECT when it is 0, unless not `use_default`: then none)."""
    if min_effect <= 0 and not use_default:
        return []
    effect, what = effect_of_interest(min_effect)
    lines = []
    for split, (n, epochs) in sizes.items():
        line = shortfall(plan_split(split, n, epochs, effect, noise, alpha), effect, what, unit)
        if line is not None:
            lines.append(f"{line} (noise: {noise.describe()}; `ratchet plan` has the figures)")
    return lines


def _var(values: Sequence[float]) -> float:
    m = math.fsum(values) / len(values)
    return math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")


def _check_target(target: float) -> None:
    if not 0.0 < target < 1.0:
        raise ValueError(f"power must be in (0, 1), got {target}")


def _check_epochs(epochs: int) -> None:
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
