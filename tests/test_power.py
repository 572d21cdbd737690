"""The plan math (ratchet.power): units, and its predictions against simulated paired data with a known effect."""

import math

import numpy as np
import pytest

from ratchet.power import (
    Noise,
    assumed_noise,
    diff_sd,
    epochs_needed,
    min_detectable_effect,
    min_units,
    noise_from_scores,
    plan_split,
    power,
    shortfall,
    tasks_needed,
)
from ratchet.stats import one_sided_paired_test


def test_min_units_is_where_the_exact_test_can_first_reach_alpha():
    assert min_units(0.05) == 5 and 0.5**5 < 0.05 <= 0.5**4
    assert min_units(0.01) == 7
    assert power(0.5, 4, 2, assumed_noise(), 0.05) == 0.0
    assert math.isinf(min_detectable_effect(4, 2, assumed_noise(), 0.05))


def test_noise_sources():
    two = noise_from_scores({"a": [1, 0], "b": [1, 1], "c": [0, 0]})
    assert two.source == "epoch pairs" and two.binary and two.epochs == 2 and two.n_tasks == 3
    assert two.within == pytest.approx((0.5 + 0 + 0) / 3)
    one = noise_from_scores({"a": [1], "b": [0], "c": [0], "d": [0]})
    assert one.source == "binomial bound" and one.within == pytest.approx(0.25 * 0.75)
    partial = noise_from_scores({"a": [0.5], "b": [0.25], "c": [1.0]})
    assert partial.source == "variance bound" and not partial.binary
    with pytest.raises(ValueError, match="no scores"):
        noise_from_scores({})
    with pytest.raises(ValueError, match="NaN"):
        noise_from_scores({"a": [float("nan")]})


def test_figures_agree_with_each_other():
    noise = assumed_noise(0.5)
    mde = min_detectable_effect(67, 2, noise, 0.05)
    assert power(mde, 67, 2, noise, 0.05) == pytest.approx(0.8, abs=1e-3)
    assert tasks_needed(0.15, 2, noise, 0.05) == 67  # the size `ratchet init --suite reasoning_gym:...` designs for
    assert min_detectable_effect(200, 2, noise, 0.05) < mde < min_detectable_effect(20, 2, noise, 0.05)
    e = epochs_needed(0.15, 30, noise, 0.05)
    assert e is not None and power(0.15, 30, e, noise, 0.05) >= 0.8 > power(0.15, 30, e - 1, noise, 0.05)
    assert tasks_needed(0.6, 2, noise, 0.05) is None  # no accuracy above 100%
    plan = plan_split("holdout", 19, 2, 0.15, noise, 0.05)
    assert plan.mde > 0.15 and plan.tasks == 67
    line = shortfall(plan, 0.15, "[loop] min_effect")
    assert "holdout split (19 tasks x 2 epochs) cannot confirm a gain of 0.15" in line and "67 tasks" in line
    assert shortfall(plan_split("holdout", 100, 2, 0.15, noise, 0.05), 0.15, "x") is None


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="alpha"):
        power(0.1, 20, 1, assumed_noise(), 0.7)
    with pytest.raises(ValueError, match="epochs"):
        diff_sd(assumed_noise(), 0.1, 0)
    with pytest.raises(ValueError, match="power"):
        min_detectable_effect(20, 1, assumed_noise(), 0.05, target=1.5)
    with pytest.raises(ValueError, match="accuracy"):
        assumed_noise(1.5)


def _simulate(rng, p, effect, epochs):
    """Paired 0/1 scores for tasks of accuracy p (parent) and p + effect (candidate): per-task mean differences."""
    parent = rng.binomial(epochs, p) / epochs
    cand = rng.binomial(epochs, np.clip(p + effect, 0, 1)) / epochs
    return cand - parent


def _rejection_rate(rng, n, epochs, effect, alpha=0.05, reps=600):
    hits = 0
    for _ in range(reps):
        p = rng.uniform(0.1, 0.6, size=n)  # tasks differ in difficulty
        d = _simulate(rng, p, effect, epochs)
        hits += one_sided_paired_test(d) < alpha
    return hits / reps


def _seed_scores(rng, n, epochs):
    p = rng.uniform(0.1, 0.6, size=n)
    return {f"t{i}": list(rng.binomial(1, p[i], size=epochs).astype(float)) for i in range(n)}


def test_predicted_power_matches_a_simulated_known_effect():
    """Simulate paired data with a known gain: the power the plan predicts from a seed's scores (epoch pairs)
    is close to the rate at which the loop's own test rejects; the one-epoch binomial bound does not overstate it."""
    rng = np.random.default_rng(7)
    n, epochs, effect, alpha = 40, 2, 0.15, 0.05
    measured = noise_from_scores(_seed_scores(rng, 300, 2))
    assert measured.source == "epoch pairs" and measured.within < measured.mean * (1 - measured.mean)
    empirical = _rejection_rate(rng, n, epochs, effect)
    predicted = power(effect, n, epochs, measured, alpha)
    assert abs(predicted - empirical) < 0.08, (predicted, empirical)
    bound = noise_from_scores(_seed_scores(rng, 300, 1))
    assert bound.source == "binomial bound"
    assert power(effect, n, epochs, bound, alpha) <= empirical + 0.03
    # no effect: the test rejects at about alpha, which is also what the formula says at effect 0
    null = _rejection_rate(rng, n, epochs, 0.0)
    assert abs(null - alpha) < 0.035 and power(0.0, n, epochs, measured, alpha) == pytest.approx(alpha, abs=0.01)
    # and the planned size delivers: at tasks_needed(effect) the simulated power is about 80%
    planned = tasks_needed(effect, epochs, measured, alpha)
    assert abs(_rejection_rate(rng, planned, epochs, effect) - 0.8) < 0.08


def test_non_binary_scores_use_their_variance():
    noise = Noise(mean=0.4, within=0.04, binary=False, source="variance bound")
    assert diff_sd(noise, 0.3, 2) == pytest.approx(math.sqrt(0.08 / 2))
    assert min_detectable_effect(30, 1, noise, 0.05) < min_detectable_effect(10, 1, noise, 0.05)


def test_start_of_run_lines_for_evolve_flywheel_and_research():
    from ratchet.config import LoopSection, ResearchSection
    from ratchet.power import split_warnings
    from ratchet.research.report import power_lines

    noise = assumed_noise(0.5)
    lines = split_warnings(noise, {"holdout": (19, 2), "test": (200, 2)}, 0.0, 0.05)
    assert len(lines) == 1 and lines[0].startswith("the holdout split (19 tasks x 2 epochs) cannot confirm a gain of 0.15")
    assert split_warnings(noise, {"holdout": (19, 2)}, 0.0, 0.05, use_default=False) == []
    assert "gain of 0.5 ([loop] min_effect)" in split_warnings(noise, {"holdout": (6, 1)}, 0.5, 0.05)[0]
    spec = ResearchSection(command="python train.py", metric="val_bpb", seeds=5, holdout_seeds=5)
    seed_dev = {f"dev-{i}": [-(1.0 + 0.01 * i)] for i in range(5)}  # higher is better inside the loop
    strict = power_lines(spec, LoopSection(min_effect=0.001, epochs=1), seed_dev)
    assert strict and strict[0].startswith("warning: the dev split (5 seeds x 1 epochs)")
    info = power_lines(spec, LoopSection(epochs=1), seed_dev)
    assert len(info) == 1 and info[0].startswith("power: 5 holdout seeds detect a change of val_bpb of")
