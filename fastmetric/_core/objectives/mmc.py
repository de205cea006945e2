"""The MMC objective (Xing, Ng, Jordan & Russell, 2002) and its projections.

MMC maximises ``g(M) = sum_{p in D} sqrt(d_p^T M d_p)`` over the dissimilar
pairs D subject to ``<W, M> <= 1`` (W the scatter of the similar pairs,
plus a ridge: :func:`constraint_matrix`) and ``M`` PSD.  This module holds
the pieces the learners :class:`fastmetric.MMC` and
:class:`fastmetric.MMC_Supervised` hand to their solvers: the weighted pair
scatter (:func:`pair_scatter_matrix`) and paired distances
(:func:`pair_distances`) through the OpenMP kernels, the scale-free
objective in a factor L of M for L-BFGS (:func:`factored_loss_grad`), g
and its gradient in M for the projected gradient ascent
(:func:`dissimilar_sum_grad`), and the alternating projections onto the
constraint and the PSD cone (:class:`Projector`).  See
:class:`fastmetric.MMC` for the solvers.
"""
import numpy as np

from fastmetric._core.distances import paired_mahalanobis_distances
from fastmetric._core.threads import threads_for_work
from fastmetric.kernels.pair_scatter import pair_scatter

__all__ = ["RIDGE", "RIDGE_LOGDET", "Projector", "constraint_matrix", "dissimilar_sum_grad",
           "factored_loss_grad", "pair_distances", "pair_scatter_matrix"]

# Relative ridge added to the similar-pair scatter (see constraint_matrix).
RIDGE = 1e-9
# With the log-det term the ridge also bounds the (useless) growth of M in
# directions where no pair varies, which log det M would otherwise reward.
RIDGE_LOGDET = 1e-3
# The alternating projections stop when <W, M> <= 1 + _PROJ_EPS.
_PROJ_EPS = 1e-2


def pair_scatter_matrix(X, a, b, w, n_threads):
    """``sum_p w_p (x_a - x_b)(x_a - x_b)^T`` (d, d) float64; ``w=None``: unit weights."""
    out = np.empty((X.shape[1], X.shape[1]), dtype=np.float64)
    if w is None:
        w = np.ones(a.shape[0], dtype=np.float64)
    n_threads = threads_for_work(n_threads, a.shape[0] * X.shape[1] * min(X.shape[1], 64),
                                 1 << 20)
    return pair_scatter(X, a, b, np.ascontiguousarray(w, dtype=np.float64), out, n_threads)


def constraint_matrix(W, ridge=RIDGE, scales=None):
    """W plus the documented ridge; the identity when W is zero.

    With per-feature ``scales`` (features in different units) the ridge is
    that of the coordinates ``X / scales``: there the scatter is ``S W S``
    (``S = diag(1 / scales)``) and the ridge ``ridge * trace(S W S) / d``
    times the identity, which is ``diag(scales^2)`` in the coordinates of X.
    A ridge relative to the raw trace would weigh on the small features'
    entries of M millions of times more than on the large ones'.
    """
    d = W.shape[0]
    if scales is None:
        trace = float(np.trace(W))
        if not trace > 0:
            return np.eye(d)
        return W + (ridge * trace / d) * np.eye(d)
    squares = scales * scales
    trace = float(np.sum(np.diag(W) / squares))
    if not trace > 0:
        return np.diag(squares)
    return W + np.diag((ridge * trace / d) * squares)


class Projector:
    """Alternating projections onto {<W, M> <= 1} and the PSD cone."""

    def __init__(self, W, max_proj):
        self.W = W
        self.w_norm2 = float(np.sum(W * W))
        self.max_proj = max_proj

    def __call__(self, M):
        """Return (M, L, n_rounds): M feasible PSD, M = L^T L (L = sqrt(l) V^T)."""
        W = self.W
        n_rounds = 0
        for n_rounds in range(1, self.max_proj + 1):  # noqa: B007 (read after the loop)
            f = float(np.sum(W * M))
            if f > 1.0:
                M = M - ((f - 1.0) / self.w_norm2) * W
            lam, V = np.linalg.eigh(0.5 * (M + M.T))
            lam = np.maximum(lam, 0.0)
            M = (V * lam) @ V.T
            f = float(np.sum(W * M))
            if f <= 1.0 + _PROJ_EPS:
                break
        if f > 1.0:  # exact feasibility by rescaling (stays PSD)
            lam = lam / f
            M = M / f
        L = np.sqrt(lam)[:, None] * V.T
        return M, L, n_rounds


def pair_distances(X, a, b, L, n_threads):
    """``||L (x_a - x_b)||`` of every pair, float64."""
    sq = paired_mahalanobis_distances(
        X, np.column_stack((a, b)), components=L.astype(X.dtype), squared=True,
        n_jobs=n_threads,
    )
    return np.sqrt(np.maximum(sq.astype(np.float64), 0.0))


def factored_loss_grad(X, aD, bD, W, L, n_threads=1, logdet_reg=0.0):
    """MMC's scale-free objective in L and its gradient.

    ``h(L) = 0.5 log f(L) - log g(L)`` with ``g = sum_D ||L d_p||`` and
    ``f = <W, L^T L>``; minimising h is maximising g on ``f = 1``.
    ``dh/dL = L W / f - L G / g`` with ``G = sum_D d_p d_p^T / ||L d_p||``
    (one weighted pair scatter).  With ``logdet_reg = mu > 0`` the
    scale-free term ``-mu ((1/d) log det M - log f)`` is added
    (``log det M = 2 log |det L|``, gradient ``-mu (2/d) L^{-T} + 2 mu L W / f``).
    """
    dist = pair_distances(X, aD, bD, L, n_threads)
    g = float(dist.sum())
    LW = L @ W
    f = float(np.sum(LW * L))
    if not (g > 0 and f > 0):
        return np.inf, np.zeros(L.size)
    floor = 1e-12 * float(dist.max())
    G = pair_scatter_matrix(X, aD, bD, 1.0 / np.maximum(dist, floor), n_threads)
    grad = LW / f - (L @ G) / g
    value = 0.5 * np.log(f) - np.log(g)
    if logdet_reg > 0:
        d = L.shape[0]
        sign, logabsdet = np.linalg.slogdet(L)
        if sign == 0 or not np.isfinite(logabsdet):
            return np.inf, np.zeros(L.size)
        value -= logdet_reg * (2.0 * logabsdet / d - np.log(f))
        grad = grad - logdet_reg * (2.0 / d) * np.linalg.inv(L).T + (2.0 * logdet_reg / f) * LW
    return value, grad.ravel()


def dissimilar_sum_grad(X, aD, bD, L, n_threads=1):
    """``g(M) = sum_D sqrt(d_p^T M d_p)`` (M = L^T L) and its gradient in M,
    ``sum_D d_p d_p^T / (2 sqrt(d_p^T M d_p))`` (distances floored at 1e-12
    times the largest)."""
    dist = pair_distances(X, aD, bD, L, n_threads)
    floor = 1e-12 * max(float(dist.max()), 1e-300)
    return float(dist.sum()), pair_scatter_matrix(X, aD, bD, 0.5 / np.maximum(dist, floor), n_threads)
