"""The automatic pass@k curve (a held-out-chosen blend): known curves, the pilot's own points, intervals, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import betaln

from ttscale.curves.passk_blend import DEFAULT_SOLVED_WEIGHTS, DEFAULT_UNSOLVED_SPLIT, DEFAULT_WEIGHTS, BlendedPassAtK
from ttscale.errors import ConfigError, EstimationError
from ttscale.estimate.exact import pass_at_k


def beta_counts(a: float, b: float, problems: int = 600, n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.full(problems, n), rng.binomial(n, rng.beta(a, b, size=problems))


@pytest.mark.parametrize(("a", "b"), [(0.6, 1.2), (0.3, 3.0), (1.5, 4.0)])
def test_blend_recovers_a_known_beta_binomial_curve(a: float, b: float) -> None:
    n, c = beta_counts(a, b)
    model = BlendedPassAtK().fit(n, c)
    ks = np.array([64, 128, 256])
    truth = 1 - np.exp(betaln(a, b + ks) - betaln(a, b))
    assert np.max(np.abs(model.predict(ks) - truth)) < 0.05
    lo, hi = model.predict_interval(ks)
    assert np.all(lo <= model.predict(ks) + 1e-12) and np.all(model.predict(ks) <= hi + 1e-12)
    assert np.mean((lo <= truth) & (truth <= hi)) >= 2 / 3


def test_inside_the_pilot_the_curve_is_the_exact_pass_at_k_and_it_never_falls() -> None:
    n, c = beta_counts(0.6, 1.2)
    model = BlendedPassAtK().fit(n, c)
    ks = np.arange(1, 33)
    np.testing.assert_allclose(model.predict(ks), pass_at_k(n, c, ks).mean(axis=0), atol=1e-12)
    grid = np.unique(np.geomspace(1, 10_000, 60).round())
    assert np.all(np.diff(model.predict(grid)) >= -1e-9)
    assert abs(sum(model.weights_.values()) - 1) < 1e-9


def test_never_solved_problems_widen_the_interval_and_bound_support() -> None:
    n, c = beta_counts(0.3, 3.0, problems=300)
    model = BlendedPassAtK().fit(n, c)
    assert model.zero_share_ > 0.02 and np.isfinite(model.max_supported_k_)
    assert model.max_supported_k_ == pytest.approx(0.02 * 300 * 32 / 3)
    for k in (100, 10_000):
        _, hi = model.predict_interval([k])
        assert hi[0] >= min(1.0, model.predict(k) + model.unseen_mass([k])[0]) - 1e-12


def test_degenerate_and_bad_input() -> None:
    zeros = BlendedPassAtK().fit(np.full(50, 16), np.zeros(50, dtype=int))
    assert zeros.predict(1000) == 0.0 and zeros.predict_interval(1000)[1] > 0  # unsolved, not unsolvable
    ones = BlendedPassAtK().fit(np.full(50, 16), np.full(50, 16))
    assert ones.predict(1000) == pytest.approx(1.0, abs=1e-12) and not np.isnan(ones.predict_interval(1000)[0])
    with pytest.raises(EstimationError, match="at least 2 problems"):
        BlendedPassAtK().fit([16], [3])
    with pytest.raises(EstimationError, match="at least 2 samples"):
        BlendedPassAtK().fit([1, 1, 1], [0, 1, 0])
    with pytest.raises(ConfigError, match="weights"):
        BlendedPassAtK(weights=(("bb", 0.5),)).fit([8, 8], [1, 2])
    with pytest.raises(ConfigError, match="weights"):
        BlendedPassAtK(weights=(("magic", 1.0),)).fit([8, 8], [1, 2])
    with pytest.raises(ConfigError, match="shape_prior"):
        BlendedPassAtK(shape_prior=(0, 1)).fit([8, 8], [1, 2])
    with pytest.raises(EstimationError, match="not fitted"):
        BlendedPassAtK().predict(10)


def test_the_weights_follow_the_share_of_problems_the_pilot_never_solved() -> None:
    n, c = beta_counts(1.5, 4.0)  # nearly every problem solved in 32 samples
    solved = BlendedPassAtK().fit(n, c)
    assert solved.zero_share_ < DEFAULT_UNSOLVED_SPLIT and solved.regime_ == "mostly solved"
    assert solved.weights_ == pytest.approx({k: v for k, v in DEFAULT_SOLVED_WEIGHTS if v > 0})
    n, c = beta_counts(0.05, 20.0)  # most problems never solved
    unsolved = BlendedPassAtK().fit(n, c)
    assert unsolved.zero_share_ >= DEFAULT_UNSOLVED_SPLIT and unsolved.regime_ == "often unsolved"
    assert set(unsolved.weights_) <= {k for k, v in DEFAULT_WEIGHTS if v > 0} and len(unsolved.weights_) > 1
    # The split is a parameter: 0 always uses ``weights``, 1 always ``solved_weights``.
    assert BlendedPassAtK(unsolved_split=0.0).fit(*beta_counts(1.5, 4.0)).regime_ == "often unsolved"
    assert BlendedPassAtK(unsolved_split=1.0).fit(n, c).regime_ == "mostly solved"


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"unsolved_split": 1.5}, "unsolved_split"), ({"unsolved_split": float("nan")}, "unsolved_split"),
    ({"unsolved_split": "half"}, "unsolved_split"), ({"solved_weights": (("bb", 0.5),)}, "solved_weights"),
    ({"solved_weights": (("magic", 1.0),)}, "solved_weights"),
])
def test_bad_gate_settings_name_their_parameter(kwargs: dict, param: str) -> None:
    with pytest.raises(ConfigError) as info:
        BlendedPassAtK(**kwargs).fit([8, 8], [1, 2])
    assert info.value.parameter == param
