"""The LSML objective of the core (fastmetric._core.objectives.lsml) against
numpy references of its defining formulas."""
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.optimize import check_grad

from fastmetric._core.objectives.lsml import LSMLProblem


# --------------------------------------------------------------------------
# numpy references of the defining formulas
# --------------------------------------------------------------------------
def ref_objective(M, X, quads, w, prior_inv):
    """sum_q w_q [D_ab > D_cd] (sqrt D_ab - sqrt D_cd)^2 + tr(M P) - log det M."""
    w = w / w.sum()
    vab = X[quads[:, 0]] - X[quads[:, 1]]
    vcd = X[quads[:, 2]] - X[quads[:, 3]]
    dab = np.einsum("ij,jk,ik->i", vab, M, vab)
    dcd = np.einsum("ij,jk,ik->i", vcd, M, vcd)
    viol = dab > dcd
    data = np.sum(w[viol] * (np.sqrt(dab[viol]) - np.sqrt(dcd[viol])) ** 2)
    return data + np.sum(M * prior_inv) - np.linalg.slogdet(M)[1]


def ref_gradient(M, X, quads, w, prior_inv):
    w = w / w.sum()
    G = prior_inv - np.linalg.inv(M)
    for q, (a, b, c, d) in enumerate(quads):
        vab, vcd = X[a] - X[b], X[c] - X[d]
        dab, dcd = vab @ M @ vab, vcd @ M @ vcd
        if dab > dcd:
            G += w[q] * (1 - np.sqrt(dcd / dab)) * np.outer(vab, vab)
            G += w[q] * (1 - np.sqrt(dab / dcd)) * np.outer(vcd, vcd)
    return G


def random_quads(rng, n, n_q):
    quads = rng.randint(0, n, size=(n_q, 4))
    return quads[(quads[:, 0] != quads[:, 1]) & (quads[:, 2] != quads[:, 3])]


def spd(rng, d, scale=1.0):
    A = rng.randn(d, d)
    return scale * (A @ A.T / d + np.eye(d))


# --------------------------------------------------------------------------
# Objective and gradient
# --------------------------------------------------------------------------
def _problem_fun_grad(problem):
    d = problem.X.shape[1]

    def fun(m):
        M = m.reshape(d, d)
        M = 0.5 * (M + M.T)
        dab, dcd = problem.quadratic_forms(M)
        return problem.data_loss(dab, dcd) + np.sum(M * problem.P) - np.linalg.slogdet(M)[1]

    def grad(m):
        M = m.reshape(d, d)
        M = 0.5 * (M + M.T)
        dab, dcd = problem.quadratic_forms(M)
        _, g, _ = problem.data_loss_grad(dab, dcd)
        return (g + problem.P - np.linalg.inv(M)).ravel()

    return fun, grad


def test_objective_and_gradient_against_numpy():
    rng = np.random.RandomState(0)
    X = rng.randn(40, 5)
    quads = random_quads(rng, 40, 120)
    w = rng.rand(len(quads))
    P = spd(rng, 5)
    problem = LSMLProblem(X, quads, w / w.sum(), P, 1)
    fun, grad = _problem_fun_grad(problem)
    for _ in range(3):
        M = spd(rng, 5)
        assert fun(M.ravel()) == pytest.approx(ref_objective(M, X, quads, w, P), rel=1e-12)
        assert_allclose(grad(M.ravel()).reshape(5, 5), ref_gradient(M, X, quads, w, P),
                        rtol=1e-10, atol=1e-12)
        # Finite differences (the objective is C^1: the squared hinge).
        err = check_grad(fun, grad, M.ravel(), epsilon=1e-7)
        assert err < 1e-5 * max(1.0, np.linalg.norm(grad(M.ravel())))
