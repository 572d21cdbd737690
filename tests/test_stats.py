import math

import numpy as np
import pytest

from ratchet.stats import (
    bootstrap_ci,
    clustered_mean_se,
    one_sided_paired_test,
    paired_differences,
    sequential_worse,
)


def test_clustered_se_equals_plain_se_with_one_epoch():
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    mean, se = clustered_mean_se({f"t{i}": [v] for i, v in enumerate(values)})
    assert mean == pytest.approx(np.mean(values))
    assert se == pytest.approx(np.std(values, ddof=1) / math.sqrt(len(values)))


def test_clustered_se_grows_when_epochs_are_correlated():
    # identical epochs carry no new information: clustering must not count them as fresh samples
    tasks = {f"t{i}": [float(i % 2)] * 4 for i in range(20)}
    _, clustered = clustered_mean_se(tasks)
    flat = [v for vals in tasks.values() for v in vals]
    naive = np.std(flat, ddof=1) / math.sqrt(len(flat))
    assert clustered > 1.8 * naive


def test_clustered_se_single_task_is_nan():
    mean, se = clustered_mean_se({"only": [1.0, 0.0, 1.0]})
    assert mean == pytest.approx(2 / 3)
    assert math.isnan(se)


def test_bad_scores_give_clear_errors():
    with pytest.raises(ValueError, match="no tasks"):
        clustered_mean_se({})
    with pytest.raises(ValueError, match="empty"):
        clustered_mean_se({"a": []})
    with pytest.raises(ValueError, match="NaN"):
        clustered_mean_se({"a": [float("nan")]})


def test_paired_differences_uses_shared_tasks_only():
    parent = {"a": [0.0, 1.0], "b": [1.0, 1.0], "only_parent": [0.0]}
    cand = {"a": [1.0, 1.0], "b": [0.0, 1.0], "only_cand": [1.0]}
    assert paired_differences(parent, cand) == {"a": 0.5, "b": -0.5}
    with pytest.raises(ValueError, match="share no task"):
        paired_differences({"x": [1.0]}, {"y": [1.0]})


def test_paired_test_edge_cases():
    assert one_sided_paired_test([0.0] * 30) == 1.0
    assert one_sided_paired_test([0.0] * 5) == 1.0
    assert one_sided_paired_test([1.0, 1.0, 1.0]) == pytest.approx(1 / 8)  # exact: only all-plus signs
    assert one_sided_paired_test([0.5] * 20) == pytest.approx(0.5**20)
    assert one_sided_paired_test([-0.5] * 20) == 1.0
    assert one_sided_paired_test([0.3] * 20, min_effect=0.3) == 1.0


def test_exact_sign_flip_matches_hand_count():
    # diffs 1, 2, -0.5: sum 2.5; sign patterns reaching >= 2.5: (+,+,+)=2.5, (+,+,-)=3.5 -> 2/8
    assert one_sided_paired_test([1.0, 2.0, -0.5]) == pytest.approx(2 / 8)


def test_t_test_branch_for_many_tasks():
    rng = np.random.default_rng(3)
    strong = rng.normal(0.3, 0.2, size=40)
    assert one_sided_paired_test(strong) < 1e-6
    assert one_sided_paired_test(-strong) > 0.99
    assert one_sided_paired_test(strong, min_effect=1.0) > 0.99


def test_bootstrap_ci_covers_the_truth():
    rng = np.random.default_rng(7)
    truth, trials, covered = 0.1, 200, 0
    for i in range(trials):
        diffs = rng.normal(truth, 0.4, size=40)
        low, high = bootstrap_ci(diffs, level=0.95, n_boot=1000, seed=i)
        covered += low <= truth <= high
    assert 0.88 <= covered / trials <= 0.995


def test_bootstrap_ci_is_seeded_and_ordered():
    diffs = [0.0, 0.5, -0.5, 1.0, 0.5, 0.0, 0.5]
    assert bootstrap_ci(diffs, seed=1) == bootstrap_ci(diffs, seed=1)
    low, high = bootstrap_ci(diffs)
    assert low <= np.mean(diffs) <= high
    assert bootstrap_ci([0.25]) == (0.25, 0.25)


def test_sequential_worse_detects_only_clear_losses():
    assert sequential_worse([-1.0, -0.5, -1.0, -0.5, -1.0, -1.0, -0.5, 0.0, -1.0, -0.5, -1.0, -1.0, -0.5, -1.0])
    assert not sequential_worse([-0.5, 0.5, 0.0, -0.5, 0.5, 0.0, 0.0, -0.5])
    assert not sequential_worse([0.5] * 10)
