"""scipy's sign-flip test and bootstrap give what the former hand-written ones gave (kept here as references)."""

import numpy as np
import pytest

from ratchet.stats import _sign_flip_p_value, bootstrap_ci


def enumerated_p(shifted: np.ndarray) -> float:
    """The former exact test: every sign pattern as bits, with an absolute tie tolerance."""
    n = shifted.size
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)
    tolerance = 1e-12 * max(1.0, float(np.abs(shifted).sum()))
    return float(np.mean(signs @ shifted >= shifted.sum() - tolerance))


def numpy_bootstrap(d: np.ndarray, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    means = d[np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def test_sign_flip_matches_enumeration_including_float_ties():
    rng = np.random.default_rng(5)
    values = [-1.0, -0.5, 0.0, 0.5, 1.0, 1 / 3, -2 / 3, 0.25]
    for _ in range(400):
        d = rng.choice(values, size=int(rng.integers(1, 13))) - rng.choice([0.0, 0.1, 0.05, 1 / 3])
        if np.ptp(d) > 0:
            assert _sign_flip_p_value(d) == pytest.approx(enumerated_p(d), abs=1e-12), d
    tie = np.array([0.9, -0.6, -0.1, 0.4, -0.6])  # sums to 0 only in exact arithmetic
    assert _sign_flip_p_value(tie) == pytest.approx(17 / 32)


def test_bootstrap_matches_the_numpy_version():
    rng = np.random.default_rng(1)
    for trial in range(100):
        d = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0, 0.25], size=int(rng.integers(2, 60)))
        level, n_boot = float(rng.choice([0.8, 0.9, 0.95])), int(rng.choice([7, 1000, 2000]))
        got = bootstrap_ci(d, level, n_boot, seed=trial)
        assert got == pytest.approx(numpy_bootstrap(d, level, n_boot, trial), abs=1e-12)
