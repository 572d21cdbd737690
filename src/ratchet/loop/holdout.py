"""Confirming dev decisions on a holdout that the loop may ask many times: Thresholdout.

Why a plain holdout overfits. A loop of 100+ rounds asks the holdout the same question over and over
("is this candidate really better?") and acts on every answer: a confirmed candidate becomes the new
parent, the proposer then writes changes on top of it. Each answer is a function of the holdout's
particular tasks, so over many rounds the chain of kept changes is *selected* on holdout noise, just
as a chain selected on dev would be. With a fixed holdout the false-confirmation rate of an
individual test stays alpha only for the first, non-adaptive question; after k adaptive questions
the holdout's estimates can be off by O(sqrt(k/n)) instead of O(sqrt(1/n)) (Dwork et al., "The
reusable holdout", Science 2015), and a test that looks at it each round stops meaning anything.

What this module does about it.
1. Thresholdout (Dwork et al. 2015, Algorithm "Thresholdout"): the gain the loop is told is the dev
   gain whenever the holdout agrees with dev to within a noisy threshold T + Lap(4 sigma); only when
   they disagree (dev was overfit, or the change does not transfer) is the holdout's own gain
   released, with Laplace noise Lap(sigma), and one unit of budget spent. Agreement answers reveal
   almost nothing about the holdout, so the holdout survives many rounds.
2. A confirmation also needs the holdout's real paired test to pass (one-sided, p < alpha, positive
   mean difference): without it nothing would be "confirmed on holdout". That bit is an answer the
   loop adapts to (the parent changes), so every confirmation spends a unit of budget too. As in the
   Ladder mechanism (Blum and Hardt 2015), a rejection keeps the parent and the loop's future
   unchanged, so the information that leaks grows with the number of charged answers, which the
   budget caps; rejections that agree with dev are free.
3. When the budget is spent, confirmations are refused and the reason says so: at that point the
   holdout must be refreshed (new tasks) or the run ended, not quietly reused.

What reaches a proposer: only the ``confirmed`` bit and ``noisy_diff``. ``holdout_diff``,
``p_value`` and the interval are for the ledger and the human report; never show them to a proposer.
The mechanism state (budget, threshold draw, rng) serialises to JSON so the ledger can restore it
and a resumed run draws exactly the same noise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ratchet.stats import bootstrap_ci, format_p, one_sided_paired_test, paired_differences

STATE_VERSION = 1


@dataclass
class HoldoutResult:
    confirmed: bool
    holdout_diff: float  # the real mean paired difference on holdout (ledger only)
    noisy_diff: float  # what the mechanism released (the only number a proposer may see)
    ci_low: float
    ci_high: float
    p_value: float
    budget_left: int
    reason: str
    charged: bool = False  # whether this answer spent a unit of budget

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Thresholdout:
    """The reusable-holdout mechanism with a budget of charged answers.

    budget: how many charged answers (overflows + confirmations) the holdout may give.
    threshold: how far holdout gain may differ from dev gain and still be answered by dev. Set it
        near the standard error of a mean paired difference on holdout: smaller spends budget on
        overflows that are only sampling noise, larger lets dev answers stand in for a holdout
        that disagrees.
    noise_scale: sigma, the Laplace scale of the released gain; the threshold noise is 2 sigma and
        the per-query comparison noise 4 sigma, as in the paper.
    """

    def __init__(self, budget: int, threshold: float = 0.04, noise_scale: float = 0.02, seed: int = 0) -> None:
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        if threshold < 0 or noise_scale < 0:
            raise ValueError(f"threshold and noise_scale must be >= 0, got {threshold}, {noise_scale}")
        self.budget = int(budget)
        self.budget_left = int(budget)
        self.threshold = float(threshold)
        self.noise_scale = float(noise_scale)
        self.queries = 0
        self.overflows = 0
        self._rng = np.random.default_rng(seed)
        self._threshold_hat = self._draw_threshold()

    def _laplace(self, scale: float) -> float:
        return float(self._rng.laplace(0.0, scale)) if scale > 0 else 0.0

    def _draw_threshold(self) -> float:
        return self.threshold + self._laplace(2.0 * self.noise_scale)

    @property
    def exhausted(self) -> bool:
        return self.budget_left < 1

    def query(self, dev_value: float, holdout_value: float) -> tuple[float, bool]:
        """One Thresholdout answer: (released value, whether the holdout's own value was released).

        Spends budget on an overflow; the caller must check ``exhausted`` first.
        """
        if self.exhausted:
            raise RuntimeError("Thresholdout budget exhausted; refresh the holdout before asking again")
        self.queries += 1
        if abs(holdout_value - dev_value) > self._threshold_hat + self._laplace(4.0 * self.noise_scale):
            self.overflows += 1
            self.budget_left -= 1
            self._threshold_hat = self._draw_threshold()
            return holdout_value + self._laplace(self.noise_scale), True
        return dev_value, False

    def confirm(
        self,
        dev_gain: float,
        holdout_parent: Mapping[str, Sequence[float]],
        holdout_cand: Mapping[str, Sequence[float]],
        alpha: float = 0.05,
    ) -> HoldoutResult:
        """Confirm a dev-accepted candidate on holdout through the mechanism (see module docstring)."""
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
        if not math.isfinite(dev_gain):
            raise ValueError(f"dev_gain must be a finite number, got {dev_gain}")
        if self.exhausted:
            return HoldoutResult(
                confirmed=False, holdout_diff=math.nan, noisy_diff=math.nan, ci_low=math.nan, ci_high=math.nan,
                p_value=math.nan, budget_left=0,
                reason=(
                    f"refused: holdout budget exhausted ({self.budget} charged answers used); the holdout "
                    "was not looked at. Add fresh holdout tasks or end the run."
                ),
            )
        diffs = list(paired_differences(holdout_parent, holdout_cand).values())
        holdout_diff = float(np.mean(diffs))
        p_value = one_sided_paired_test(diffs)
        ci_low, ci_high = bootstrap_ci(diffs, level=1.0 - 2.0 * alpha)
        noisy_diff, overflowed = self.query(dev_gain, holdout_diff)
        significant = holdout_diff > 0 and p_value < alpha
        confirmed = significant and noisy_diff > 0
        charged = overflowed
        if confirmed and not overflowed:
            self.budget_left -= 1  # the loop adapts to a confirmation: it costs like a released value
            charged = True
        source = "holdout disagrees with dev; noisy holdout gain" if overflowed else "holdout agrees with dev; dev gain"
        if confirmed:
            head = f"confirmed: holdout p={format_p(p_value)} < alpha={alpha:g}"
        elif not significant:
            head = f"not confirmed: holdout gain not significant (p={format_p(p_value)}, alpha={alpha:g})"
        else:
            head = "not confirmed: released gain is not positive"
        return HoldoutResult(
            confirmed=confirmed,
            holdout_diff=holdout_diff,
            noisy_diff=float(noisy_diff),
            ci_low=ci_low,
            ci_high=ci_high,
            p_value=p_value,
            budget_left=self.budget_left,
            reason=f"{head}; released {noisy_diff:+.4f} ({source}); budget left {self.budget_left}/{self.budget}",
            charged=charged,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "budget": self.budget,
            "budget_left": self.budget_left,
            "threshold": self.threshold,
            "noise_scale": self.noise_scale,
            "queries": self.queries,
            "overflows": self.overflows,
            "threshold_hat": self._threshold_hat,
            "rng_state": self._rng.bit_generator.state,
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> Thresholdout:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown Thresholdout state version {state.get('version')!r}; expected {STATE_VERSION}")
        obj = cls(budget=state["budget"], threshold=state["threshold"], noise_scale=state["noise_scale"])
        obj.budget_left = int(state["budget_left"])
        obj.queries = int(state["queries"])
        obj.overflows = int(state["overflows"])
        obj._threshold_hat = float(state["threshold_hat"])
        obj._rng.bit_generator.state = dict(state["rng_state"])
        return obj
