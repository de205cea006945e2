"""The LDML objective on pairs: :class:`PairLossProblem` (prepared once,
evaluated many times by the learners and the solvers) and the validated
public :func:`ldml_loss`.

The math, the cost and the pair index are described in
:mod:`fastmetric.kernels.pair_loss`, whose kernels do the computing; this
module validates, allocates the index and the work arrays, and picks the
thread counts.
"""
import numpy as np

from fastmetric._core.rows import distinct_indices
from fastmetric._core.threads import (
    effective_n_threads,
    multiply_adds,
    single_threaded_blas,
    threads_for_work,
)
from fastmetric._core.validation import (
    check_chunk_size,
    check_components,
    check_finite_result,
    check_index_pairs,
    check_pair_vector,
    check_points,
    check_scalar_finite,
    check_weights,
    raise_nonfinite,
)
from fastmetric._core.workspace import empty_aligned
from fastmetric.kernels.pair_loss import (
    DEF_POINT_CHUNK,
    PAIR_VALUES,
    LossWork,
    PairIndex,
    all_binary_targets,
    build_index,
    ldml_evaluate,
)

__all__ = ["PairLossProblem", "ldml_loss"]


def _build_index(ua, ub, targets, weights, has_weights, n_points, n_threads):
    """The pair index (see fastmetric/kernels/pair_loss.pxd): offsets, keys and
    values (empty when the targets are 0/1 and the pairs unweighted)."""
    # One part per thread, each with at least 2^16 pairs (the cursor array
    # costs n_points entries per part).
    n_parts = max(1, min(n_threads, 8, ua.shape[0] // 65536))
    packed = not has_weights and all_binary_targets(targets)
    offsets = np.empty(n_points + 1, dtype=np.intp)
    # Filled at random positions by every thread: huge pages spare the
    # threads most of their page faults (see fastmetric._core.workspace).
    keys = empty_aligned(2 * ua.shape[0], np.intp)
    values = empty_aligned(0 if packed else 2 * ua.shape[0], PAIR_VALUES)
    cursor = np.zeros((n_parts, n_points), dtype=np.intp)
    build_index(ua, ub, targets, weights, has_weights, offsets, keys, values, cursor)
    return offsets, keys, values


# Below a few thousand pairs (and points) per thread, starting a team of
# threads costs more than it saves.
PAIRS_PER_THREAD = 4096

class PairLossProblem:
    """The LDML objective on a fixed set of pairs, prepared for many evaluations.

    The per-point index of incident pairs (and, when few points take part,
    the compact relabelling of the points) is built once here; each call of
    :meth:`loss_grad` then costs O(n k d + P (k + d)).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        Validated data; it is referenced, not copied.
    a, b : ndarray of shape (n_pairs,), intp
        Validated row indices of the pairs' ends.
    targets : ndarray of shape (n_pairs,), float64
        Targets in [0, 1] (1: similar).
    sample_weight : ndarray of shape (n_pairs,), float64, default=None
        Non-negative pair weights with a positive sum; ``None`` weighs every
        pair 1.
    chunk_size : int, default=None
        Points per work unit (default 256).
    n_threads : int, default=1
        Threads used to build the index (the index does not depend on it).

    Notes
    -----
    The work arrays of :meth:`loss_grad` are kept between calls, so one
    problem must not be evaluated from two Python threads at once.
    """

    def __init__(self, X, a, b, targets, sample_weight=None, chunk_size=None, n_threads=1):
        self.X = X
        self.n_pairs = a.shape[0]
        self.targets = np.ascontiguousarray(targets, dtype=np.float64)
        if sample_weight is None:
            self.weights = np.empty(0, dtype=np.float64)
            self.has_weights = False
            self.total_weight = float(self.n_pairs)
        else:
            self.weights = np.ascontiguousarray(sample_weight, dtype=np.float64)
            self.has_weights = True
            self.total_weight = float(self.weights.sum())
        if not self.total_weight > 0:
            raise ValueError(
                f"The pair weights sum to {self.total_weight}; at least one pair "
                "needs a positive weight."
            )
        n = X.shape[0]
        # Few pairs relative to the rows (a minibatch): work on the rows that
        # occur only, relabelled 0..U-1, so the cost does not grow with n.
        if 4 * self.n_pairs < n:
            rows, inverse = distinct_indices(np.concatenate([a, b]), n)
            self.point_rows = rows.astype(np.intp)
            self.identity_rows = False
            self.ua = np.ascontiguousarray(inverse[: self.n_pairs], dtype=np.intp)
            self.ub = np.ascontiguousarray(inverse[self.n_pairs:], dtype=np.intp)
        else:
            self.point_rows = np.empty(0, dtype=np.intp)
            self.identity_rows = True
            self.ua = np.ascontiguousarray(a, dtype=np.intp)
            self.ub = np.ascontiguousarray(b, dtype=np.intp)
        self.n_points = n if self.identity_rows else self.point_rows.shape[0]
        self.point_chunk = chunk_size or DEF_POINT_CHUNK
        self.offsets, self.keys, self.values = _build_index(
            self.ua, self.ub, self.targets, self.weights, self.has_weights,
            self.n_points, int(n_threads)
        )
        self.index = PairIndex(self.offsets, self.keys, self.values, self.point_rows,
                               self.identity_rows, self.total_weight, self.point_chunk)
        # Work arrays of loss_grad, kept between calls (see LossWork).
        self._work = None
        # Threads of fm_team.h's team for the main pass (0: OpenMP's); a fit
        # sets it when other processes keep cores busy.
        self.team_threads = 0

    def loss_grad(self, L, bias, n_threads=1, compute_gradient=True, check_finite=False,
                  team_threads=None):
        """Loss, gradient in L and gradient in the bias.

        Parameters
        ----------
        L : ndarray of shape (n_components, n_features), C-contiguous, X's dtype
        bias : float
        n_threads : int, default=1
        compute_gradient : bool, default=True
            When False, the gradient in L is not computed (returned as None).
        check_finite : bool, default=False
            Check X for NaN and infinity while mapping it (for an X that was
            not checked before); a bad value raises ValueError.
        team_threads : int, optional
            Run the main pass on fm_team.h's team of this many threads (for
            a machine that other processes keep busy); default: the
            problem's ``team_threads`` attribute (0: OpenMP's threads).  The
            result is the same either way.

        Returns
        -------
        loss : float
        grad_L : ndarray of shape (n_components, n_features) or None
        grad_bias : float
        """
        n_threads = threads_for_work(n_threads, self.n_pairs + self.n_points,
                                     PAIRS_PER_THREAD)
        k, d = L.shape
        key = (L.dtype.str, k)
        if self._work is None or self._work.key != key:
            u_shape, partials_shape, chunks_shape, _ = self.index.work_shapes(k, d)
            # U is read at random by rows: aligned rows on huge pages (see
            # fastmetric._core.workspace); the partials are written by all threads.
            self._work = LossWork(
                key,
                empty_aligned(u_shape, L.dtype),
                empty_aligned(partials_shape, L.dtype),
                np.empty(chunks_shape, dtype=np.float64),
                np.empty(chunks_shape, dtype=np.float64),
            )
        if check_finite and not self.identity_rows:
            # Only some rows are mapped: check all of X here.
            check_points(self.X, "X")
        with single_threaded_blas():
            result = ldml_evaluate(
                self.X, L, self.index, self._work, float(bias), compute_gradient,
                check_finite and self.identity_rows, n_threads,
                self.team_threads if team_threads is None else team_threads,
            )
        if result is None:
            raise_nonfinite(self.X, "X")
        return result


def ldml_loss(X, pairs, y, components, bias, *, sample_weight=None,
              return_gradient=True, chunk_size=None, n_jobs=None):
    """LDML's weighted mean log-loss over pairs, and its gradient.

    For each pair ``(a, b)`` the model gives the probability of similarity
    ``p = sigmoid(bias - ||L (x_a - x_b)||^2)``; the loss is

    ``sum_p w_p [-y_p log p_p - (1 - y_p) log(1 - p_p)] / sum_p w_p``.

    It is computed stably for any distance (no overflow, no log(0)).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        float32 stays float32 (accumulations are in float64).
    pairs : array-like of int, shape (n_pairs, 2)
        Row indices into X.
    y : array-like of shape (n_pairs,)
        Targets in [0, 1]: 1 similar, 0 dissimilar, or soft values.
    components : array-like of shape (n_components, n_features)
        The linear map L (``n_components <= n_features`` or more).
    bias : float
        The threshold beta on the squared distance.
    sample_weight : array-like of shape (n_pairs,), default=None
        Non-negative pair weights (at least one positive).
    return_gradient : bool, default=True
        Also return the gradients.
    chunk_size : int, default=None
        Points per work unit (default 256).
    n_jobs : int, default=None
        Number of OpenMP threads: ``None`` as many as OpenMP and threadpoolctl
        allow, ``-1`` all CPUs, ``k > 0`` exactly k.  The result is the same
        for any number of threads.

    Returns
    -------
    loss : float
    grad_components : ndarray of shape (n_components, n_features)
        Only when ``return_gradient``; in X's dtype.
    grad_bias : float
        Only when ``return_gradient``.

    Notes
    -----
    The gradient in L, ``-(2/W) L sum_p g_p d_p d_p^T`` with
    ``g_p = w_p (p_p - y_p)`` and ``d_p = x_a - x_b``, is formed as
    ``-(2/W) (Lap X L^T)^T X`` with Lap the g-weighted Laplacian of the pair
    graph: O(n k d + P k) work instead of O(P k d).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.pairwise import ldml_loss
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    >>> loss, grad_L, grad_bias = ldml_loss(X, [[0, 1], [0, 2]], [1, 0], np.eye(2), 4.0)
    >>> round(loss, 4)
    0.0243
    >>> grad_L.shape
    (2, 2)
    """
    # X's values are checked while the kernel maps them (check_finite below).
    X = check_points(X, "X", allow_nan=True)
    a, b = check_index_pairs(pairs, X.shape[0], "pairs", n_threads=effective_n_threads(n_jobs))
    targets = check_pair_vector(y, a.shape[0], "y", np.float64, lo=0.0, hi=1.0)
    weights = None if sample_weight is None else check_weights(sample_weight, a.shape[0])
    if components is None:
        raise ValueError("components (the linear map L) is required.")
    L = check_components(components, X.shape[1], X.dtype)
    bias = check_scalar_finite(bias, "bias")
    chunk_size = check_chunk_size(chunk_size)
    # One evaluation maps the points (n k d) and takes the pairs' mapped
    # differences (P k): the work that sets the default thread count under load.
    n_threads = effective_n_threads(n_jobs, work=multiply_adds(
        (X.shape[0], L.shape[0], X.shape[1]), (a.shape[0], L.shape[0])))
    problem = PairLossProblem(X, a, b, targets, weights, chunk_size, n_threads)
    loss, grad, grad_bias = problem.loss_grad(L, bias, n_threads, return_gradient,
                                              check_finite=True)
    check_finite_result((loss, grad, grad_bias), X,
                        what="the loss or its gradient (from squared distances)",
                        components=L, bias=bias)
    if return_gradient:
        return loss, grad, grad_bias
    return loss
