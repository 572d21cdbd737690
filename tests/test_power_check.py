"""`ratchet plan --check` (ratchet.power_check): a plan set beside what a run's comparisons measured.

The math against simulated paired data (a gain spread evenly over tasks keeps the plan's spread, one
concentrated on a few tasks does not, and the detectable gain at a measured spread is what the test then
rejects 80% of the time), and the command on a real short evolve run of the fake model."""

import json
import math

import numpy as np
import pytest

from ratchet.power import assumed_noise, diff_sd, noise_from_scores, plan_split
from ratchet.power_check import Comparison, check, mde_at_sd, split_checks, summary
from ratchet.stats import one_sided_paired_test

N, EPOCHS, P = 60, 2, 0.3
BASE = np.where(np.arange(N) % 10 < 3, 0.9, 0.1)  # tasks differ in difficulty, as real ones do


def _diffs(rng, gains: np.ndarray, base: np.ndarray | None = None) -> tuple[float, ...]:
    """Per-task paired differences of binary rollouts: task i goes from base[i] to base[i] + gains[i]."""
    base = np.full(len(gains), P) if base is None else base
    parent = rng.binomial(EPOCHS, base) / EPOCHS
    cand = rng.binomial(EPOCHS, np.clip(base + gains, 0, 1)) / EPOCHS
    return tuple(cand - parent)


def test_an_even_gain_keeps_the_planned_spread_and_a_concentrated_one_does_not():
    rng = np.random.default_rng(3)
    noise = noise_from_scores({f"t{i}": list(rng.binomial(1, BASE[i], size=EPOCHS) * 1.0) for i in range(N)})
    assert noise.source == "epoch pairs"
    even = [Comparison(f"even {i}", "dev", _diffs(rng, np.full(N, 0.08), BASE), EPOCHS) for i in range(30)]
    hard = np.flatnonzero(BASE < 0.5)[:9]
    few = [Comparison(f"few {i}", "dev", _diffs(rng, np.isin(np.arange(N), hard) * 0.8, BASE), EPOCHS)
           for i in range(30)]  # a larger mean gain (0.12), all of it on 9 of the 60 tasks
    ratios_even = [c.ratio for c in check(even, noise)]
    ratios_few = [c.ratio for c in check(few, noise)]
    assert 0.85 < np.median(ratios_even) < 1.15
    assert np.median(ratios_few) > 1.4
    assert "held" in summary(check(even, noise)) and "optimistic" in summary(check(few, noise))
    row = check(even[:1], noise)[0]
    assert row.predicted_sd == pytest.approx(diff_sd(noise, abs(row.delta), EPOCHS)) and row.n == N


def test_the_detectable_gain_at_a_measured_spread_is_detected_80_percent_of_the_time():
    rng = np.random.default_rng(11)
    sd, n, alpha = 0.35, 40, 0.05
    mde = mde_at_sd(n, sd, alpha)
    hits = sum(one_sided_paired_test(rng.normal(mde, sd, size=n)) < alpha for _ in range(400))
    assert abs(hits / 400 - 0.8) < 0.07, (mde, hits)
    assert mde_at_sd(4, sd, alpha) == math.inf and mde_at_sd(n, 0.0, alpha) == 0.0
    assert mde_at_sd(4 * n, sd, alpha) < mde


def test_split_checks_use_their_own_comparisons_else_devs_with_the_same_epochs():
    rng = np.random.default_rng(5)
    noise = assumed_noise(P)
    plans = [plan_split("dev", N, 2, 0.15, noise, 0.05), plan_split("holdout", 80, 2, 0.15, noise, 0.05),
             plan_split("test", 50, 1, 0.15, noise, 0.05)]
    checked = check([Comparison("round 1", "dev", _diffs(rng, np.full(N, 0.1)), 2),
                     Comparison("round 2", "dev", _diffs(rng, np.full(N, 0.0)), 2)], noise)
    dev, hold, test = split_checks(plans, checked, 0.05)
    assert dev.basis == "2 dev comparisons" and hold.basis == "2 dev comparisons"
    assert hold.measured_sd == dev.measured_sd and hold.measured < dev.measured  # more tasks, smaller gains
    assert test.measured is None and test.basis == "no comparison with 1 epochs"
    assert json.dumps([s.to_json() for s in (dev, hold, test)])


def test_plan_check_on_a_real_short_run(tmp_path):
    from typer.testing import CliRunner

    from executor_fixture import scripted_project
    from ratchet.cli import app
    from test_evolve import run_evolve

    root = scripted_project(tmp_path / "p", n_tasks=40)  # the fake model, also as a file the CLI can build
    runner = CliRunner()
    early = runner.invoke(app, ["plan", str(root), "--check"])
    assert early.exit_code != 0 and "no evolve run of this project" in early.output
    assert "seed on dev" not in early.output  # it fails before spending anything
    outcome, _ = run_evolve(root, rounds=2)
    res = runner.invoke(app, ["plan", str(root), "--check"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "measured vs planned" in out and "round 1: temperature" in out and "seed vs best (the closing seed)" in out
    assert "planned vs at the measured spread" in out
    payload = json.loads((root / ".ratchet" / "plan.json").read_text())["check"]
    assert payload["run"] == outcome.run_id
    assert {c["split"] for c in payload["comparisons"]} == {"dev", "holdout"}
    assert [s["split"] for s in payload["splits"]] == ["dev", "holdout", "test"]
