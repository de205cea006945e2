"""The SCML objective and its stochastic minimiser (Shi, Bellet & Sha, 2014).

SCML learns ``M = sum_k w_k b_k b_k^T`` (``w >= 0``) over a fixed basis
(:mod:`fastmetric._core.scml_basis`) from triplets ``(a, p, q)`` stating
``d(a, p) < d(a, q)``.  With ``dd_t = (d_k(a, p) - d_k(a, q))_k`` the
distance differences along each basis (``d_k(u, v) = (b_k . (x_u -
x_v))^2``), the objective is

    F(w) = (1 / T) sum_t [1 + w . dd_t]_+  +  beta ||w||_1,    w >= 0,

minimised by :func:`minimize_scml`: regularised dual averaging with
AdaGrad step sizes (Xiao 2010; Duchi, Hazan & Singer 2011) on minibatches,
the full objective evaluated every ``output_iter`` iterations from the
distinct pairs of the triplets (:func:`distinct_pairs`) in an embedding of
the bases of positive weight (:func:`weighted_projections`).  The hot
loops are the nogil kernels of :mod:`fastmetric.kernels.scml`;
:func:`embedding_map` turns weights into a map ``L`` with ``L^T L = M``.
"""
from dataclasses import dataclass, field

import numpy as np

from fastmetric._core.solvers import warn_interrupted
from fastmetric._core.threads import threads_for_work
from fastmetric.kernels.scml import _sgd_run, _triplet_hinge_pairs

__all__ = ["SCMLResult", "distinct_pairs", "embedding_map", "minimize_scml",
           "weighted_projections"]

# AdaGrad's guard against a division by zero (the delta of the paper).
_ADAGRAD_DELTA = 1e-3
# Multiply-adds per thread below which a kernel call uses fewer threads
# (waking a thread costs more than it saves on small calls; results do not
# depend on the thread count).
_PARALLEL_WORK = 1 << 22


def embedding_map(basis, w):
    """A map L with ``L^T L = sum_k w_k b_k b_k^T`` (rows: min(#active, d))."""
    active = np.flatnonzero(w > 0)
    d = basis.shape[1]
    if active.size == 0:
        return np.zeros((1, d))
    B = basis[active]
    if active.size < d:
        return np.sqrt(w[active])[:, None] * B
    M = (B.T * w[active]) @ B
    M = 0.5 * (M + M.T)
    try:
        return np.linalg.cholesky(M).T  # M = C C^T, L = C^T
    except np.linalg.LinAlgError:  # singular M: its PSD square-root factor
        lam, V = np.linalg.eigh(M)
        return np.sqrt(np.maximum(lam, 0.0))[:, None] * V.T


def distinct_pairs(triplets):
    """The distinct pairs (a, p) and (a, q) of the triplets, and where each is.

    Returns ``pairs`` (P, 2) and, per triplet, the rows of its first and
    second pair.
    """
    n = int(triplets.max()) + 1
    keys = np.concatenate([triplets[:, 0] * n + triplets[:, 1],
                           triplets[:, 0] * n + triplets[:, 2]])
    uniq, inverse = np.unique(keys, return_inverse=True)
    pairs = np.ascontiguousarray(np.column_stack((uniq // n, uniq % n)), dtype=np.intp)
    inverse = inverse.reshape(-1).astype(np.intp)
    n_t = triplets.shape[0]
    return pairs, np.ascontiguousarray(inverse[:n_t]), np.ascontiguousarray(inverse[n_t:])


def weighted_projections(Z, basis, w, X):
    """An embedding E with ``||e_u - e_v||^2 = sum_k w_k (b_k . (x_u - x_v))^2``.

    With few bases of positive weight (at most 2 n_features) E is the
    columns ``sqrt(w_k) z_k`` of the projections Z = X B^T (no new
    product); otherwise ``X L^T`` with a factor L of M (n_features
    columns, fewer than the bases).
    """
    active = np.flatnonzero(w > 0)
    d = basis.shape[1]
    if active.size == 0:
        return np.zeros((Z.shape[0], 1), dtype=Z.dtype)
    if active.size <= 2 * d:
        return np.ascontiguousarray(Z[:, active] * np.sqrt(w[active]).astype(Z.dtype))
    L = embedding_map(basis, w)
    return np.ascontiguousarray(X @ L.T.astype(X.dtype))


@dataclass
class SCMLResult:
    """What :func:`minimize_scml` returns.

    Attributes
    ----------
    weights : ndarray of shape (n_basis,)
        The best evaluated weights.
    loss : float
        Their objective.
    n_iter : int
        Iterations done.
    loss_curve : list of float
        The objective at each evaluation.
    """

    weights: np.ndarray
    loss: float
    n_iter: int
    loss_curve: list = field(default_factory=list)


def minimize_scml(X, triplets, basis, *, beta, gamma, max_iter, output_iter, batch_size, rng,
                  n_threads, on_evaluation=None):
    """Regularised dual averaging with AdaGrad steps on the SCML objective.

    Each iteration, with ``g`` the mean hinge subgradient of a minibatch of
    ``batch_size`` triplets drawn uniformly with replacement, ``G`` the sum
    of the g so far and ``A`` the sum of their squares, sets ``w =
    max(-(G + beta t), 0) / (gamma (delta + sqrt(A)))`` (t the iteration
    count, delta = 1e-3).  The projections ``X B^T`` are computed once; an
    update reads three of their rows per triplet.

    Parameters
    ----------
    X : ndarray of shape (n_points, n_features), float32 or float64
    triplets : ndarray of shape (n_triplets, 3), intp
        Row indices into X.
    basis : ndarray of shape (n_basis, n_features)
    beta, gamma : float
        The l1 weight and the step-size parameter.
    max_iter, output_iter, batch_size : int
        Iterations; the objective is evaluated every ``output_iter`` of
        them and at the last one.
    rng : RandomState
        Draws the minibatches (``rng.randint(0, n_triplets, (seg,
        batch_size))`` between evaluations, as metric-learn 0.7 draws them).
    n_threads : int
        Threads of the objective evaluations (the result does not depend
        on them).
    on_evaluation : callable, optional
        ``on_evaluation(iteration, objective, w, n_active) -> bool`` after
        each evaluation (``n_active``: triplets with a positive hinge);
        True stops.

    Returns
    -------
    SCMLResult
    """
    n_t = triplets.shape[0]
    K = basis.shape[0]
    Z = np.ascontiguousarray(X @ basis.T.astype(X.dtype))
    w = np.zeros(K)
    grad_sum = np.zeros(K)
    grad_sq = np.zeros(K)
    best_w, best_obj = w.copy(), np.inf
    # The objective is evaluated from the distinct pairs of the triplets.
    pairs, first, second = distinct_pairs(triplets)
    pair_dist = np.empty(pairs.shape[0])
    curve = []
    stopped = False
    t = 0
    # Ctrl-C keeps the best weights evaluated so far (the model that a
    # finished fit would also keep).
    try:
        while t < max_iter and not stopped:
            # Evaluate at every multiple of output_iter and at the last iteration.
            seg = min(output_iter - t % output_iter, max_iter - t)
            batches = rng.randint(0, n_t, size=(seg, batch_size)).astype(np.intp)
            _sgd_run(Z, triplets, batches, w, grad_sum, grad_sq, t, beta, gamma, _ADAGRAD_DELTA)
            t += seg
            E = weighted_projections(Z, basis, w, X)
            hinge, n_active = _triplet_hinge_pairs(
                E, pairs, first, second, pair_dist,
                threads_for_work(n_threads, pairs.shape[0] * E.shape[1], _PARALLEL_WORK))
            obj = beta * float(w.sum()) + hinge / n_t
            curve.append(obj)
            if obj < best_obj:
                best_obj, best_w = obj, w.copy()
            if on_evaluation is not None and on_evaluation(t, obj, w, n_active):
                stopped = True
    except KeyboardInterrupt:
        warn_interrupted(f"after {t} iteration(s)")
    return SCMLResult(best_w, float(best_obj), t, curve)
