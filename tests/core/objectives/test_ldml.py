"""Tests of the LDML objective glue of the core: the objective and its
gradient against numpy, and the start-up scale and bias."""
import numpy as np
import pytest
from scipy.optimize import check_grad
from scipy.special import expit

from fastmetric._core.objectives.ldml import initial_scale_bias, ldml_objective
from fastmetric._core.objectives.pair_loss import PairLossProblem


def _numpy_objective(X, idx, t, w, L, bias, alpha, L0):
    """Plain numpy twin of LDML's objective."""
    diff = (X[idx[:, 0]] - X[idx[:, 1]]) @ L.T
    z = bias - np.sum(diff**2, axis=1)
    terms = np.logaddexp(0.0, z) - t * z
    w = np.ones_like(z) if w is None else w
    return np.dot(w, terms) / w.sum() + 0.5 * alpha * np.sum((L - L0) ** 2)


@pytest.mark.parametrize("alpha", [0.0, 0.7])
@pytest.mark.parametrize("weighted", [False, True])
def test_objective_value_and_gradient(alpha, weighted):
    rng = np.random.RandomState(0)
    X = rng.randn(25, 4)
    idx = rng.randint(0, 25, size=(60, 2))
    t = rng.rand(60)  # soft targets
    w = rng.rand(60) if weighted else None
    k, d = 3, 4
    L0 = rng.randn(k, d) * 0.5
    problem = PairLossProblem(X, idx[:, 0].copy(), idx[:, 1].copy(), t, w)
    fun = ldml_objective(problem, (k, d), np.float64, L0, alpha, 1)
    theta = np.concatenate([(L0 + 0.3 * rng.randn(k, d)).ravel(), [1.5]])
    loss, _ = fun(theta)
    expected = _numpy_objective(X, idx, t, w, theta[:-1].reshape(k, d), theta[-1], alpha, L0)
    assert loss == pytest.approx(expected, rel=1e-12)
    err = check_grad(lambda th: fun(th)[0], lambda th: fun(th)[1], theta, epsilon=1e-7)
    assert err < 1e-5 * max(1.0, np.linalg.norm(fun(theta)[1]))


def test_initial_scale_bias_degenerate():
    t = np.array([1.0, 0, 0, 1, 0])
    gamma, bias = initial_scale_bias(np.full(5, 2.0), t, None)  # no spread
    assert gamma == 1.0 and expit(bias - 2.0) == pytest.approx(0.4)
    D = np.r_[np.linspace(0, 1, 50), np.linspace(3, 4, 50)]  # separable
    gamma, bias = initial_scale_bias(D, np.r_[np.ones(50), np.zeros(50)], None)
    assert np.isfinite(gamma) and gamma > 0 and 1 < bias / gamma < 3
