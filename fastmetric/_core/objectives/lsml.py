"""The LSML objective (Liu et al., 2012) and its solver on the positive definite cone.

LSML learns ``M`` from quadruplets ``(a, b, c, d)`` stating that the pair
``(a, b)`` is more similar than ``(c, d)``, minimising the weighted squared
residuals of the violated statements plus the LogDet divergence to a prior
``M0``: ``f(M) = sum_q w_q [D_ab > D_cd] (sqrt(D_ab) - sqrt(D_cd))^2 + tr(M
M0^{-1}) - log det M`` (up to a constant; see :class:`fastmetric.LSML`
for the gradient and the solver).  :class:`LSMLProblem` evaluates it
through the kernels; :func:`lsml_start` whitens the problem by the best
multiple of the prior;
:func:`minimize_lsml` runs L-BFGS on M with a natural-gradient initial
Hessian and an Armijo search that backtracks out of the indefinite
matrices.  The learners :class:`fastmetric.LSML` and
:class:`fastmetric.LSML_Supervised` check the parameters, resolve the prior
and call them.
"""
import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri

from fastmetric._core.solvers import warn_interrupted
from fastmetric._core.threads import threads_for_work
from fastmetric.kernels.lsml import quadratic_forms, residual_loss, residual_loss_coefficients

__all__ = ["LSMLProblem", "lsml_start", "minimize_lsml", "pair_quadratic_forms"]

# Armijo sufficient-decrease constant and the largest number of halvings of
# a step before the line search gives up (f cannot decrease any more).
_ARMIJO = 1e-4
_MAX_HALVINGS = 60


def pair_quadratic_forms(X, S, a, b, out, n_threads=1):
    """``out[p] = (x_a - x_b)^T S (x_a - x_b)`` for valid indices (unchecked),
    by :func:`fastmetric.kernels.lsml.quadratic_forms` (same parameters) on
    at most ``n_threads`` threads: fewer when the work is too small to share.
    """
    n, d = X.shape
    # GEMM work ~ n d^2, pair work ~ n_pairs d: ~2^20 multiply-adds per thread
    # (as the pair scatter); the cap never changes the result.
    n_threads = threads_for_work(n_threads, n * d * d + a.shape[0] * d, 1 << 20)
    return quadratic_forms(X, S, a, b, out, n_threads)


class LSMLProblem:
    """The LSML objective on index quadruplets into the points X (float64).

    ``f(M) = data(M) + tr(M P) - log det M`` with ``P = prior_inv``: the
    data term (weights ``weights``, summing to 1) comes from the kernels of
    :mod:`fastmetric.kernels.lsml` through the quadratic forms ``D_ab =
    (x_a - x_b)^T M (x_a - x_b)`` of every quadruplet's two pairs, which
    are linear in M; its gradient is a weighted scatter of the pairs of the
    violated quadruplets (:func:`fastmetric.kernels.pair_scatter.pair_scatter`).
    """

    def __init__(self, X, quads, weights, prior_inv, n_threads):
        from fastmetric.kernels.pair_scatter import pair_scatter

        self._scatter = pair_scatter
        self.X = X
        self.n_q = quads.shape[0]
        self.a = np.ascontiguousarray(np.concatenate([quads[:, 0], quads[:, 2]]))
        self.b = np.ascontiguousarray(np.concatenate([quads[:, 1], quads[:, 3]]))
        self.w = weights
        self.P = prior_inv
        self.n_threads = n_threads
        self._coef = np.empty(2 * self.n_q)

    def quadratic_forms(self, S):
        """``(D_ab, D_cd)`` of every quadruplet for the symmetric matrix S."""
        out = np.empty(2 * self.n_q)
        pair_quadratic_forms(self.X, S, self.a, self.b, out, self.n_threads)
        return out[: self.n_q], out[self.n_q:]

    def data_loss(self, dab, dcd):
        return residual_loss(dab, dcd, self.w)[0]

    def data_loss_grad(self, dab, dcd):
        """Data term, its gradient (d, d) and the number of violated quadruplets."""
        n_q = self.n_q
        coef = self._coef
        loss, n_viol = residual_loss_coefficients(dab, dcd, self.w, coef[:n_q], coef[n_q:])
        d = self.X.shape[1]
        grad = np.zeros((d, d))
        if n_viol:
            nz = np.flatnonzero(coef)
            # The same thread cap as weighted_pair_scatter (~2^20 multiply-adds
            # per thread); it never changes the result.
            n_threads = threads_for_work(self.n_threads, nz.shape[0] * d * min(d, 64), 1 << 20)
            self._scatter(self.X, self.a[nz], self.b[nz], coef[nz], grad, n_threads)
        return loss, grad, n_viol


def _cholesky_logdet(M):
    """``(lower Cholesky factor, log det M)``, or ``(None, inf)`` if M is not PD."""
    c, info = dpotrf(M, lower=1, clean=1)
    if info != 0:
        return None, np.inf
    diag = np.diag(c)
    if not np.all(diag > 0) or not np.isfinite(diag).all():
        return None, np.inf
    return c, 2.0 * float(np.sum(np.log(diag)))


def _inverse_from_cholesky(c):
    inv, info = dpotri(c, lower=1)
    if info != 0:  # pragma: no cover - c is a valid factor
        raise np.linalg.LinAlgError("inverse of the metric failed")
    return np.tril(inv) + np.tril(inv, -1).T


def _lbfgs_direction(G, M, s_hist, y_hist, rho_hist):
    """``-H G`` by the L-BFGS two-loop recursion over the stored pairs.

    The initial inverse Hessian is ``V -> M V M``, the inverse Hessian of
    ``-log det`` at the current M (the affine-invariant metric of the PD
    cone): with no stored pairs the direction is the natural gradient
    ``-M G M``, the Newton step of the regulariser.  It halves the
    iterations of the usual scaled identity on LSML.
    """
    q = G.copy()
    alphas = []
    for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist)):
        alpha = rho * float(np.sum(s * q))
        q -= alpha * y
        alphas.append(alpha)
    q = M @ q @ M
    q = 0.5 * (q + q.T)
    for (s, y, rho), alpha in zip(zip(s_hist, y_hist, rho_hist), reversed(alphas)):
        beta = rho * float(np.sum(y * q))
        q += (alpha - beta) * s
    return -q


def minimize_lsml(problem, M0, *, tol, max_iter, memory=10, on_iteration=None,
                   forms0=None):
    """L-BFGS on M (two-loop recursion, natural-gradient initial Hessian)
    with a backtracking Armijo search.

    Trials outside the positive definite cone count as ``f = +inf`` and are
    backtracked.  ``forms0``: the quadratic forms ``(D_ab, D_cd)`` at M0 when
    the caller has them.  Returns ``(M, chol, loss, n_iter, converged,
    loss_curve)``.
    """
    P = problem.P
    M = M0
    chol, logdet = _cholesky_logdet(M)
    if chol is None:  # pragma: no cover - priors are checked definite
        raise ValueError("the initial metric is not positive definite.")
    dab, dcd = problem.quadratic_forms(M) if forms0 is None else forms0
    data, grad_data, _ = problem.data_loss_grad(dab, dcd)
    tr_MP = float(np.sum(M * P))
    f = data + tr_MP - logdet
    G = grad_data + P - _inverse_from_cholesky(chol)
    gnorm = float(np.sqrt(np.sum(G * G)))
    s_hist, y_hist, rho_hist = [], [], []
    loss_curve = []
    converged = False
    it = 0
    # Ctrl-C keeps the last accepted iterate: (M, chol, f) change together,
    # once a step is accepted.
    try:
        for it in range(1, max_iter + 1):
            if gnorm <= tol:  # (n_iter_ counts this last check, as metric-learn)
                converged = True
                break
            direction = _lbfgs_direction(G, M, s_hist, y_hist, rho_hist)
            slope = float(np.sum(G * direction))
            if not slope < 0:  # not a descent direction: restart, natural gradient
                s_hist, y_hist, rho_hist = [], [], []
                direction = _lbfgs_direction(G, M, s_hist, y_hist, rho_hist)
                slope = float(np.sum(G * direction))
                if not slope < 0:  # pragma: no cover - M G M is a descent direction
                    converged = True
                    break
            step = 1.0
            qab, qcd = problem.quadratic_forms(direction)
            tr_DP = float(np.sum(direction * P))
            accepted = False
            for _ in range(_MAX_HALVINGS):
                M_t = M + step * direction
                chol_t, logdet_t = _cholesky_logdet(M_t)
                if chol_t is not None:
                    dab_t = dab + step * qab
                    dcd_t = dcd + step * qcd
                    f_t = problem.data_loss(dab_t, dcd_t) + (tr_MP + step * tr_DP) - logdet_t
                    if f_t <= f + _ARMIJO * step * slope:
                        accepted = True
                        break
                step *= 0.5
            if not accepted:
                if s_hist:  # retry once along the natural gradient, fresh memory
                    s_hist, y_hist, rho_hist = [], [], []
                    continue
                # No step decreases f at machine precision: M is optimal.
                converged = True
                break
            data, grad_data, _ = problem.data_loss_grad(dab_t, dcd_t)
            tr_MP = float(np.sum(M_t * P))
            f_t = data + tr_MP - logdet_t
            G_t = grad_data + P - _inverse_from_cholesky(chol_t)
            s = M_t - M
            y = G_t - G
            sy = float(np.sum(s * y))
            if sy > 1e-12 * float(np.sum(y * y)):  # curvature condition (convex f)
                s_hist.append(s)
                y_hist.append(y)
                rho_hist.append(1.0 / sy)
                if len(s_hist) > memory:
                    del s_hist[0], y_hist[0], rho_hist[0]
            M, chol, dab, dcd, f, G = M_t, chol_t, dab_t, dcd_t, f_t, G_t
            gnorm = float(np.sqrt(np.sum(G * G)))
            loss_curve.append(f)
            if on_iteration is not None and on_iteration(it, M, chol, f):
                break
        else:
            converged = gnorm <= tol
    except KeyboardInterrupt:
        warn_interrupted(f"after {len(loss_curve)} iteration(s)")
        it, converged = len(loss_curve), False
    return M, chol, f, it, converged, loss_curve


def lsml_start(X, quads, weights, M0, n_threads):
    """The problem LSML's solver runs on, whitened by the best multiple of the prior.

    The data term is 1-homogeneous in M, so ``f(alpha M0) = alpha (data0 +
    d) - d log(alpha) + const`` is minimal at ``alpha = d / (data0 + d)``:
    starting there absorbs the scale of the data (pixels in the hundreds,
    say).  With ``R^T R = alpha M0`` and ``M = R^T A R``, distances are
    those of A on the points ``R x`` and the regulariser is ``alpha tr(A) -
    log det A - log det(alpha M0)``, so the solver starts from ``A = I``,
    well conditioned whatever M0 and the scale.

    Parameters
    ----------
    X : ndarray of shape (n_points, n_features), float64
    quads : ndarray of shape (n_quadruplets, 4), intp
        Row indices into X.
    weights : ndarray of shape (n_quadruplets,)
        Quadruplet weights, summing to 1.
    M0 : ndarray of shape (n_features, n_features)
        The prior (symmetric positive definite).
    n_threads : int

    Returns
    -------
    problem : LSMLProblem
        On the whitened points, with ``P = alpha I``.
    R : ndarray of shape (n_features, n_features)
        Upper triangular, ``M = R^T A R``.
    offset : float
        ``log det(alpha M0)``: LSML's objective is the problem's minus it.
    forms0 : tuple of ndarray
        The quadratic forms at ``A = I`` (for :func:`minimize_lsml`).
    """
    d = X.shape[1]
    R0 = np.triu(dpotrf(M0, lower=0, clean=1)[0])  # M0 = R0^T R0
    X0 = X if np.array_equal(M0, np.eye(d)) else np.ascontiguousarray(X @ R0.T)
    problem = LSMLProblem(X0, quads, weights, np.eye(d), n_threads)
    dab0, dcd0 = problem.quadratic_forms(np.eye(d))
    data0 = problem.data_loss(dab0, dcd0)
    if not (np.isfinite(data0) and np.isfinite(dab0).all() and np.isfinite(dcd0).all()):
        raise ValueError(
            "the squared distances of the quadruplets overflow float64 (the data "
            f"reach {np.abs(X).max():.3g}); rescale the data."
        )
    alpha = d / (data0 + d)
    R = np.sqrt(alpha) * R0
    Xw = np.ascontiguousarray(np.sqrt(alpha) * X0)
    offset = 2.0 * float(np.sum(np.log(np.diag(R))))  # log det(alpha M0)
    problem = LSMLProblem(Xw, quads, weights, alpha * np.eye(d), n_threads)
    return problem, R, offset, (alpha * dab0, alpha * dcd0)
