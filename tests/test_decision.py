import json
import math

import numpy as np
import pytest

from ratchet.loop.decision import DecisionStats, decide_dev, decide_slice, mean_rule
from ratchet.loop.holdout import Thresholdout

ALPHA = 0.05
N_TASKS, EPOCHS = 40, 2


def _table(rng, probs, shift=0.0):
    """Binary scores: task i succeeds with probability probs[i] + shift, on every epoch independently."""
    p = np.clip(probs + shift, 0.0, 1.0)
    draws = rng.random((len(probs), EPOCHS)) < p[:, None]
    return {f"task{i}": draws[i].astype(float).tolist() for i in range(len(probs))}


def test_false_positive_rate_of_decide_dev_vs_mean_rule():
    rng = np.random.default_rng(2024)
    sims = 300
    accepted = naive = 0
    for _ in range(sims):
        probs = rng.uniform(0.1, 0.9, size=N_TASKS)  # tasks differ in difficulty; both sides share it
        parent, cand = _table(rng, probs), _table(rng, probs)
        accepted += decide_dev(parent, cand, alpha=ALPHA, min_effect=0.0).accepted
        naive += mean_rule(parent, cand)
    assert accepted / sims <= ALPHA + 0.035  # binomial sd at 300 sims is ~0.013
    assert 0.35 <= naive / sims <= 0.6  # the bare rule keeps about half of pure noise


def test_power_on_a_real_effect():
    rng = np.random.default_rng(11)
    sims = 100
    accepted = 0
    for _ in range(sims):
        probs = rng.uniform(0.2, 0.5, size=N_TASKS)
        accepted += decide_dev(_table(rng, probs), _table(rng, probs, shift=0.25), alpha=ALPHA).accepted
    assert accepted / sims >= 0.8


def test_decide_dev_fields_and_reasons():
    parent = {f"t{i}": [0.0, 0.0] for i in range(30)}
    cand = {f"t{i}": [1.0, 1.0] if i < 20 else [0.0, 0.0] for i in range(30)}
    d = decide_dev(parent, cand, alpha=ALPHA)
    assert d.accepted and d.reason.startswith("accepted")
    assert d.n_tasks == 30
    assert d.mean_diff == pytest.approx(2 / 3)
    assert d.mean_cand - d.mean_parent == pytest.approx(d.mean_diff)
    assert d.ci_low <= d.mean_diff <= d.ci_high
    assert d.ci_level == pytest.approx(0.9)
    assert DecisionStats.from_json(json.loads(json.dumps(d.to_json()))) == d

    too_small = decide_dev(parent, cand, alpha=ALPHA, min_effect=0.8)
    assert not too_small.accepted and "min_effect" in too_small.reason

    same = decide_dev(parent, parent, alpha=ALPHA)
    assert not same.accepted and same.p_value == 1.0


def test_decide_dev_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        decide_dev({"a": [1.0]}, {"a": [1.0]}, alpha=0.0)


def test_decide_slice_stops_clear_losers_only():
    parent = {f"t{i}": [1.0, 1.0] for i in range(16)}
    worse = {f"t{i}": [0.0, 0.0] if i < 12 else [1.0, 1.0] for i in range(16)}
    stop = decide_slice(parent, worse)
    assert stop is not None and not stop.accepted and stop.reason.startswith("stopped early")
    assert stop.mean_diff == pytest.approx(-0.75)
    slightly = {f"t{i}": [0.0, 1.0] if i < 2 else [1.0, 1.0] for i in range(16)}
    assert decide_slice(parent, slightly) is None


def test_thresholdout_budget_accounting_and_refusal():
    # noise 0 makes the mechanism deterministic: overflow iff |holdout - dev| > threshold
    th = Thresholdout(budget=2, threshold=0.05, noise_scale=0.0, seed=0)
    good = {f"t{i}": [1.0, 1.0] for i in range(30)}
    bad = {f"t{i}": [0.0, 0.0] if i < 24 else [1.0, 1.0] for i in range(30)}  # parent: gain 0.8 on holdout

    agree = th.confirm(dev_gain=0.8, holdout_parent=bad, holdout_cand=good, alpha=ALPHA)
    assert agree.confirmed and agree.charged and agree.noisy_diff == pytest.approx(0.8)
    assert agree.budget_left == 1

    rejected = th.confirm(dev_gain=0.03, holdout_parent=good, holdout_cand=good, alpha=ALPHA)  # agrees, no gain
    assert not rejected.confirmed and not rejected.charged and rejected.budget_left == 1

    overflow = th.confirm(dev_gain=0.5, holdout_parent=good, holdout_cand=bad, alpha=ALPHA)  # dev overfit
    assert not overflow.confirmed and overflow.charged and overflow.noisy_diff == pytest.approx(-0.8)
    assert th.exhausted and th.overflows == 1 and th.queries == 3

    refused = th.confirm(dev_gain=0.8, holdout_parent=bad, holdout_cand=good, alpha=ALPHA)
    assert not refused.confirmed and "exhausted" in refused.reason and math.isnan(refused.holdout_diff)


def test_thresholdout_noise_and_json_round_trip_resume_exactly():
    th = Thresholdout(budget=50, threshold=0.02, noise_scale=0.05, seed=123)
    rng = np.random.default_rng(0)
    for _ in range(5):
        th.query(dev_value=float(rng.random()), holdout_value=float(rng.random()))
    restored = Thresholdout.from_json(json.loads(json.dumps(th.to_json())))
    assert restored.to_json() == th.to_json()
    queries = [(float(rng.random()), float(rng.random())) for _ in range(20)]
    assert [th.query(*q) for q in queries] == [restored.query(*q) for q in queries]
    assert 0 < th.overflows < th.queries  # both branches were exercised with real noise


def test_thresholdout_answers_agreement_with_the_dev_value():
    th = Thresholdout(budget=10, threshold=0.05, noise_scale=0.001, seed=1)
    answer, overflowed = th.query(dev_value=0.30, holdout_value=0.29)
    assert (answer, overflowed) == (0.30, False) and th.budget_left == 10


def test_compare_scores_the_parent_on_the_first_slice_until_the_candidate_survives_it():
    import asyncio

    from ratchet.config import LoopSection
    from ratchet.loop.compare import compare_dev
    from ratchet.loop.record import CandidateStatus

    units = [f"t{i}" for i in range(20)]
    loop = LoopSection(slice_fraction=0.4, epochs=1)

    def run(candidate_score: float) -> tuple[CandidateStatus, list[tuple[str, int]]]:
        asked: list[tuple[str, int]] = []

        async def score(side, split, wanted):
            asked.append((side, len(wanted)))
            value = 1.0 if side == "parent" else candidate_score
            return {u: [value] for u in wanted}

        out = asyncio.run(compare_dev(score, units, loop, seed=0))
        return out.status, asked

    status, asked = run(0.0)  # clearly worse: stopped on the slice, the parent never scored beyond it
    assert status == CandidateStatus.REJECTED and asked == [("parent", 8), ("candidate", 8)]
    status, asked = run(1.0)  # not worse on the slice: both sides on all of dev
    assert asked == [("parent", 8), ("candidate", 8), ("parent", 20), ("candidate", 20)]
