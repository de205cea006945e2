"""The MMC objective of the core (fastmetric._core.objectives.mmc): gradients
against formulas and finite differences, the projections."""
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.optimize import check_grad

from fastmetric._core.objectives.mmc import (
    Projector,
    constraint_matrix,
    dissimilar_sum_grad,
    factored_loss_grad,
)
from fastmetric._core.sampling import sample_pairs


def pair_data():
    """Two classes in 4-D (the last feature of small scale) and 240 labelled pairs."""
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(40, 4), rng.randn(40, 4) + [3, 0, 0, 0]]
    X[:, 3] *= 0.1
    labels = np.repeat([0, 1], 40)
    idx, t = sample_pairs(labels, 120, 120, random_state=0)
    return X, labels, idx, t.astype(bool)


@pytest.fixture(scope="module")
def data():
    return pair_data()


def numpy_scatter(X, a, b, w=None):
    D = X[a] - X[b]
    w = np.ones(len(a)) if w is None else w
    return D.T @ (w[:, None] * D)


def numpy_g(X, a, b, M):
    D = X[a] - X[b]
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", D, M, D), 0)).sum()


def test_dissimilar_gradient_matches_formula_and_finite_differences(data):
    X, _, idx, sim = data
    a, b = idx[~sim, 0], idx[~sim, 1]
    rng = np.random.RandomState(1)
    L = rng.randn(4, 4)
    M = L.T @ L
    g, G = dissimilar_sum_grad(X, a, b, L)
    assert_allclose(g, numpy_g(X, a, b, M), rtol=1e-10)
    D = X[a] - X[b]
    dist = np.sqrt(np.einsum("ij,jk,ik->i", D, M, D))
    assert_allclose(G, D.T @ (D * (0.5 / dist)[:, None]), rtol=1e-10)
    # Directional derivative of g along a symmetric direction E is <G, E>.
    E = rng.randn(4, 4)
    E = E + E.T
    h = 1e-6
    fd = (numpy_g(X, a, b, M + h * E) - numpy_g(X, a, b, M - h * E)) / (2 * h)
    assert_allclose(np.sum(G * E), fd, rtol=1e-6)


def test_factored_objective_gradient(data):
    X, _, idx, sim = data
    a, b = idx[~sim, 0], idx[~sim, 1]
    W = constraint_matrix(numpy_scatter(X, idx[sim, 0], idx[sim, 1]))
    L0 = np.random.RandomState(2).randn(4, 4)

    def f(theta):
        return factored_loss_grad(X, a, b, W, theta.reshape(4, 4))[0]

    def g(theta):
        return factored_loss_grad(X, a, b, W, theta.reshape(4, 4))[1]

    assert check_grad(f, g, L0.ravel()) < 1e-6 * max(1.0, np.linalg.norm(g(L0.ravel())))
    # Scale-free: h(c L) = h(L).
    assert_allclose(f(3.0 * L0.ravel()), f(L0.ravel()), rtol=1e-12)


def test_logdet_regularised_objective_gradient(data):
    X, _, idx, sim = data
    a, b = idx[~sim, 0], idx[~sim, 1]
    W = constraint_matrix(numpy_scatter(X, idx[sim, 0], idx[sim, 1]), 1e-3)
    L0 = np.random.RandomState(4).randn(4, 4)
    mu = 0.7

    def f(theta):
        return factored_loss_grad(X, a, b, W, theta.reshape(4, 4), 1, mu)[0]

    def g(theta):
        return factored_loss_grad(X, a, b, W, theta.reshape(4, 4), 1, mu)[1]

    assert check_grad(f, g, L0.ravel()) < 1e-6 * max(1.0, np.linalg.norm(g(L0.ravel())))
    # Against the formula in numpy.
    M = L0.T @ L0
    D = X[a] - X[b]
    ref = (0.5 * np.log(np.sum(W * M)) - np.log(np.sqrt(np.einsum("ij,jk,ik->i", D, M, D)).sum())
           - mu * (np.linalg.slogdet(M)[1] / 4 - np.log(np.sum(W * M))))
    assert_allclose(f(L0.ravel()), ref, rtol=1e-10)
    assert_allclose(f(2.5 * L0.ravel()), f(L0.ravel()), rtol=1e-12)


def test_projection_is_feasible_and_psd(data):
    X, _, idx, sim = data
    W = constraint_matrix(numpy_scatter(X, idx[sim, 0], idx[sim, 1]))
    rng = np.random.RandomState(3)
    A = rng.randn(4, 4)
    A = 10 * (A + A.T)  # indefinite and far outside the constraint
    M, L, rounds = Projector(W, 10000)(A)
    assert rounds >= 1
    assert np.sum(W * M) <= 1 + 1e-12
    assert np.linalg.eigvalsh(M).min() >= -1e-12 * np.abs(M).max()
    assert_allclose(L.T @ L, M, atol=1e-12)
    # A feasible PSD matrix is its own projection.
    M2, _, _ = Projector(W, 10)(0.5 * M)
    assert_allclose(M2, 0.5 * M, atol=1e-12)
