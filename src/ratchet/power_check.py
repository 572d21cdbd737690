"""Checking a plan against the run it was made for: the spread of the paired differences each comparison of
the run showed, beside the spread `ratchet.power` predicted for a gain of that size, and the smallest gain
each split detects at the spread that was measured (`ratchet plan --check`).

Why a run can detect less than its plan said: the plan takes the seed's epoch-to-epoch noise as the noise
of every comparison and assumes a gain is about the same on every task. Most real changes help some tasks
and hurt others, so their per-task differences spread more than the plan's model says, and a split then
detects only larger gains. Each comparison's measured spread says by how much; the split figures use the
median over the run's comparisons (a typical change of this run), not the widest one.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.optimize import brentq

from ratchet.power import POWER, Noise, SplitPlan, diff_sd, min_units, power_at_sd


@dataclass(frozen=True)
class Comparison:
    """One paired comparison a run made: candidate minus parent per task (each a mean over `epochs`)."""

    label: str  # "round 3: temperature 0.7 -> 0", "seed vs best (the closing seed)"
    split: str
    diffs: tuple[float, ...]
    epochs: int


@dataclass(frozen=True)
class Checked:
    """A comparison's measured spread beside the plan's prediction for a gain of the size it measured."""

    label: str
    split: str
    n: int
    epochs: int
    delta: float  # the mean paired difference
    sd: float  # the per-task standard deviation of the paired differences, measured
    predicted_sd: float  # what the plan's noise model gives for a gain of |delta| with these epochs

    @property
    def ratio(self) -> float:
        return self.sd / self.predicted_sd if self.predicted_sd > 0 else math.inf

    def to_json(self) -> dict:
        return {"label": self.label, "split": self.split, "n": self.n, "epochs": self.epochs,
                "delta": round(self.delta, 4), "sd": round(self.sd, 4), "predicted_sd": round(self.predicted_sd, 4)}


@dataclass(frozen=True)
class SplitCheck:
    """A split's planned detectable gain, and the one at the spread the run measured (None: not measured)."""

    split: str
    n: int
    epochs: int
    planned: float  # the plan's smallest gain detected with 80% power (inf: none)
    measured_sd: float | None  # the median spread of the comparisons this figure rests on
    measured: float | None  # the smallest gain detected with 80% power at that spread
    basis: str  # which comparisons: "12 dev comparisons", "none with these epochs"

    def to_json(self) -> dict:
        def num(x: float | None) -> float | None:
            return None if x is None or math.isinf(x) else round(x, 4)
        return {"split": self.split, "n": self.n, "epochs": self.epochs, "planned_mde": num(self.planned),
                "measured_sd": num(self.measured_sd), "measured_mde": num(self.measured), "basis": self.basis}


def check(comparisons: Sequence[Comparison], noise: Noise) -> list[Checked]:
    """Each comparison with at least 2 tasks, measured against the plan's noise model."""
    out = []
    for c in comparisons:
        if len(c.diffs) < 2:
            continue
        delta = statistics.fmean(c.diffs)
        out.append(Checked(c.label, c.split, len(c.diffs), c.epochs, delta, statistics.stdev(c.diffs),
                           diff_sd(noise, abs(delta), c.epochs)))
    return out


def mde_at_sd(n: int, sd: float, alpha: float, target: float = POWER) -> float:
    """The smallest gain the one-sided paired test on n tasks detects with probability `target` when the
    per-task differences have standard deviation `sd` whatever the gain (inf below `min_units`)."""
    if n < min_units(alpha):
        return math.inf
    if sd <= 0:
        return 0.0
    return float(brentq(lambda d: power_at_sd(d, n, sd, alpha) - target, 1e-12, 100.0 * sd, xtol=1e-7))


def split_checks(plans: Sequence[SplitPlan], checked: Sequence[Checked], alpha: float) -> list[SplitCheck]:
    """Per planned split: the spread of that split's own comparisons when the run made some, else of the dev
    comparisons with the same epochs (the test split is often scored with other epochs than the loop's)."""
    out = []
    for p in plans:
        own = [c.sd for c in checked if c.split == p.split and c.epochs == p.epochs]
        dev = [c.sd for c in checked if c.split == "dev" and c.epochs == p.epochs]
        sds, where = (own, p.split) if own else (dev, "dev")
        if not sds:
            out.append(SplitCheck(p.split, p.n, p.epochs, p.mde, None, None, f"no comparison with {p.epochs} epochs"))
            continue
        sd = statistics.median(sds)
        noun = "comparison" if len(sds) == 1 else "comparisons"
        out.append(SplitCheck(p.split, p.n, p.epochs, p.mde, sd, mde_at_sd(p.n, sd, alpha),
                              f"{len(sds)} {where} {noun}"))
    return out


def summary(checked: Sequence[Checked]) -> str | None:
    """One sentence: how the measured spreads compare with the predicted ones (None without comparisons)."""
    ratios = [c.ratio for c in checked if math.isfinite(c.ratio)]
    if not ratios:
        return None
    mid = statistics.median(ratios)
    verdict = ("the plan's noise model held" if 0.8 <= mid <= 1.25 else
               "the plan was optimistic: changes spread their effect unevenly over tasks" if mid > 1.25 else
               "the plan was conservative")
    return (f"measured spread / predicted spread: median {mid:.2f} over {len(ratios)} comparisons "
            f"(range {min(ratios):.2f}-{max(ratios):.2f}); {verdict}")
