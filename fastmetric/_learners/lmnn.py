"""LMNN: Large Margin Nearest Neighbor (Weinberger & Saul, 2009).

Each point ``x_i`` gets ``k`` *target neighbours* ``T(i)``: its nearest
points of the same class in the initial metric, found once.  LMNN learns
``L`` so that the targets come close and points of other classes stay at
least one unit (squared) farther than every target, minimising, with
``D_ab = ||L (x_a - x_b)||^2`` and ``mu = regularization``,

    f(L) = (1 - mu) sum_i sum_{j in T(i)} D_ij
           + mu sum_i sum_{j in T(i)} sum_{l: y_l != y_i} [1 + D_ij - D_il]_+ .

A point l of another class is an *impostor* of i when ``D_il < r_i =
1 + max_{j in T(i)} D_ij``: only impostors can make a hinge term positive.
The loss and gradient come from the OpenMP kernels of
:mod:`fastmetric.kernels.lmnn`, evaluated over a set of *candidate pairs*
that is guaranteed to contain every impostor pair (see
:class:`_LMNNProblem` for the rule that keeps it valid between searches),
and are handed to scipy's L-BFGS (default) or to metric-learn's adaptive
gradient descent.
"""
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from fastmetric._core.validation import check_int_param as _check_int, check_real_param as _check_real
from fastmetric._core.base import MahalanobisMixin, initialize_components, points_from_indices
from fastmetric.kernels.lmnn import (
    _dense_loss_grad,
    _embed,
    _loss_grad,
    _search,
    _target_distances,
    _target_neighbors,
)
from fastmetric._core.solvers import IterationPrinter, SolverResult, minimize_lbfgs, warn_interrupted
from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work

__all__ = ["LMNN"]

_SOLVERS = ("lbfgs", "gd")

# Candidate pairs kept at most: each costs 8 bytes in the per-point lists,
# and up to 16 more while a search runs (its per-block buffers): ~0.8 GB.
_PAIR_BUDGET = 1 << 25

# Multiply-adds per thread below which a kernel call uses fewer threads.
_PARALLEL_WORK = 1 << 20

# Initial relative enlargement of the margin radius used by the search, and
# its bounds (see _LMNNProblem._adapt_slack).
_SLACK_INIT = 0.1
_SLACK_MIN = 1.0 / 64
_SLACK_MAX = 1.0




def _incoming_targets(targets, n_targets):
    """CSR index of the target pairs (i, s) pointing at each point u.

    Returns offsets (n + 1,), and for each entry the source i and slot s,
    ordered by u, then i, then s.
    """
    n, K = targets.shape
    rows, slots = np.nonzero(np.arange(K)[None, :] < n_targets[:, None])
    dest = targets[rows, slots]
    order = np.argsort(dest, kind="stable")  # stable: keeps (i, s) order
    offsets = np.zeros(n + 1, dtype=np.intp)
    np.cumsum(np.bincount(dest, minlength=n), out=offsets[1:])
    return (offsets, np.ascontiguousarray(rows[order], dtype=np.intc),
            np.ascontiguousarray(slots[order], dtype=np.intc))


class _LMNNProblem:
    """The LMNN objective on class-sorted points, prepared for many evaluations.

    Parameters
    ----------
    X : ndarray (n, d), float32/float64, C-contiguous
        Points sorted by class.
    class_ptr : ndarray (n_classes + 1,), intp
        Rows of class c are ``class_ptr[c]:class_ptr[c + 1]``.
    targets : ndarray (n, K), int32
        Target neighbours (row indices); ``n_targets[i]`` of them are used.
    n_targets : ndarray (n,), int32
    mu : float
        Weight of the push (hinge) term; the pull term has ``1 - mu``.
    n_threads : int

    pair_budget : int
        Most candidate pairs stored; beyond it the dense kernel is used.
    slack : float
        Initial relative enlargement of the search radius.

    Notes
    -----
    **Candidate pairs.**  A search at the map ``L_s`` (embedding ``Z_s``)
    stores every pair {a, b} of different classes with ``||z_a - z_b|| <
    max(rho_a, rho_b)``, ``rho_u = (1 + alpha) sqrt(r_u)``: u's margin
    radius enlarged by a relative slack ``alpha``.  Any superset of the
    impostor pairs gives the same objective and gradient, bit for bit
    (inactive pairs add nothing; active ones are summed in the order of
    the other end's index).

    **When to search again.**  The points are centred (x_u below is x_u
    minus the mean).  At a later map ``L_t = L_s + E``, for any pair
    ``v = x_a - x_b``, ``||L_t v|| >= ||L_s v|| - ||E v||``, and a pair
    missing from the set has ``||L_s v|| >= rho_a``.  It therefore cannot
    be an impostor pair of a (``D_ab < r_a``) at ``L_t`` if
    ``rho_a - ||E v|| >= sqrt(r_a(L_t))``.  Two bounds on ``||E v||``:

    1. ``||E v|| <= m_a + m_b`` with the movements ``m_u = ||E x_u|| =
       ||z_t,u - z_s,u||`` (exact, O(n k) from the two embeddings), so
       the set stays valid while, for every point a with targets,

           rho_a - m_a - max_{u not in class(a)} m_u >= sqrt(r_a(L_t)).   (*)

    2. With ``L_s = U S V^T`` and ``P_r`` the projection on the top r right
       singular vectors: ``||E P_r v|| <= delta_r ||L_s v||`` with
       ``delta_r = ||E V_r S_r^{-1}||`` (a relative change: large common
       moves of all points cost nothing) and ``||E (I - P_r) v|| <= c_r
       (res_a + res_b)``, ``c_r = ||E (I - P_r)||``, ``res_u = ||(I - P_r)
       x_u||``; the set stays valid while ``(1 - delta_r) rho_a - c_r
       (res_a + max_{u not in class(a)} res_u) >= sqrt(r_a(L_t))`` for
       every a.  Tried for r = the number of singular values above 1e-3,
       1e-2 and 1e-1 times the largest (r = rank needs no residual term).

    Each evaluation checks these in O(n k) plus O(k d r) (see
    :meth:`_set_is_valid`); when none holds, the search runs again at
    ``L_t``.  The set therefore always holds every impostor pair and the
    objective is exact.  ``alpha`` adapts by the observed cost of each set
    (:meth:`_adapt_slack`).  If a search finds more than ``pair_budget``
    pairs it is redone with a smaller slack, down to 0 (the impostor pairs
    only); beyond that the evaluation uses the dense kernel (O(n^2 k) time,
    O(n) memory) and the next one searches again.
    """

    def __init__(self, X, class_ptr, targets, n_targets, mu, n_threads,
                 pair_budget=_PAIR_BUDGET, slack=_SLACK_INIT):
        # Distances, and the gradient 2 (Lap Z)^T X (the columns of Lap Z sum
        # to zero), do not change when X is translated: work on centred
        # points, which keeps float32 and the GEMM expansion accurate and
        # makes the movement of rule (*) ||E x_u||.
        self.dtype = X.dtype
        self.X = np.ascontiguousarray(X - X.mean(axis=0, dtype=np.float64), dtype=X.dtype)
        n = X.shape[0]
        self.n = n
        self.class_ptr = np.asarray(class_ptr, dtype=np.intp)
        sizes = np.diff(self.class_ptr)
        self.row_class = np.repeat(np.arange(sizes.shape[0]), sizes)
        self.class_start = np.ascontiguousarray(self.class_ptr[:-1][self.row_class],
                                                dtype=np.intp)
        self.class_end = np.ascontiguousarray(self.class_ptr[1:][self.row_class],
                                              dtype=np.intp)
        self.targets = np.ascontiguousarray(targets, dtype=np.intc)
        self.n_targets = np.ascontiguousarray(n_targets, dtype=np.intc)
        self.has_targets = self.n_targets > 0
        self.tin = _incoming_targets(self.targets, self.n_targets)
        self.mu = float(mu)
        self.n_threads = int(n_threads)
        self.pair_budget = int(pair_budget)
        K = self.targets.shape[1]
        self.Dt = np.empty((n, K), dtype=np.float64)
        self.x_sq = np.einsum("ij,ij->i", self.X, self.X, dtype=np.float64)
        self.rule_tol = 1e-6 if self.dtype == np.float64 else 1e-3
        self.radius = np.empty(n, dtype=np.float64)
        # Search state.
        self.slack = float(slack)
        self.L_s = None
        self.Z_s = None
        self.rho = None
        self.inc_offsets = self.inc_other = None
        self.evals_since_search = 0
        self.P_last = None
        self.last_cost = None
        self.direction = 1
        sizes_sq = float(np.sum(np.diff(self.class_ptr).astype(np.float64) ** 2))
        self.n_cross = max((float(n) ** 2 - sizes_sq) / 2.0, 1.0)
        self.n_searches = 0
        self.n_evaluations = 0
        self.n_dense = 0
        self.search_sizes = []
        self.last_rule = None  # which bound last kept the set (diagnostics)

    # -- pieces ----------------------------------------------------------
    def _threads(self, work):
        """Threads for a kernel call of about ``work`` multiply-adds.

        Below ~1 million per thread (a quarter of a millisecond) a thread saves
        less than it costs to wake it, and on a loaded machine waiting for
        it can cost a whole scheduler time slice.  The results do not
        depend on the number of threads.
        """
        return threads_for_work(self.n_threads, work, _PARALLEL_WORK)


    def embed(self, L):
        """Z = X L^T, target distances and margin radii at L."""
        L = np.ascontiguousarray(L, dtype=self.dtype)
        Z = np.empty((self.n, L.shape[0]), dtype=self.dtype)
        threads = self._threads(self.n * L.shape[0] * (self.X.shape[1] + self.targets.shape[1]))
        _embed(self.X, L, Z, 256, threads)
        _target_distances(Z, self.targets, self.n_targets, self.Dt, self.radius, threads)
        return Z

    def _set_is_valid(self, L, Z):
        """Rule (*) of the class docstring, with a small safety margin.

        First with the exact movements ``m_u = ||E x_u||`` (O(n k), from the
        two embeddings).  When that fails for a minority of the points, the
        splits of L_s's row space are tried (see :meth:`_prepare_rule`):
        the norms ``delta_r = ||E V_r S_r^{-1}||`` and ``c_r = ||E (I -
        P_r)||`` are bounded by Frobenius norms, all r at once from the
        column norms of ``E V`` (``||E (I - P_r)||_F^2 = ||E||_F^2 - ||E
        V_r||_F^2``); exact spectral norms are computed only for a split
        that these bounds fail and the lower bounds (Frobenius / sqrt(rank))
        do not already rule out.  (When the exact movements fail for most
        points, a split rescues the set in about one case in thirty on
        digits: the splits are then not tried, which only costs a search.)
        """
        if self.L_s is None or self.L_s.shape != L.shape:
            return False
        keep = self.has_targets
        rho = self.rho_keep
        need = np.sqrt(np.maximum(self.radius[keep], 0.0))
        need = need * (1 + self.rule_tol) + self.rule_tol
        move = Z - self.Z_s
        m = np.sqrt(np.einsum("ij,ij->i", move, move, dtype=np.float64))
        failing = rho - m[keep] - self._max_other(m)[keep] < need
        n_failing = int(np.count_nonzero(failing))
        if n_failing == 0:
            self.last_rule = "movement"
            return True
        if 2 * n_failing > failing.shape[0]:
            return False
        if self.rule_splits is None:
            self._prepare_rule(self.L_s)
        E = L - self.L_s
        r_max = max((r for r, _, _ in self.rule_splits), default=0)
        EV = E @ self.Vt[:r_max].T
        col_sq = np.einsum("ij,ij->j", EV, EV)
        delta_sq = np.cumsum(col_sq / self.S[:r_max] ** 2)
        c_sq = np.maximum(float(np.einsum("ij,ij->", E, E)) - np.cumsum(col_sq), 0.0)
        k, d = E.shape
        for r, res, res_other in self.rule_splits:
            def holds(delta, c):
                if delta >= 1.0:
                    return False
                if res is None:
                    return bool(np.all((1.0 - delta) * rho >= need))
                return bool(np.all((1.0 - delta) * rho - c * (res + res_other) >= need))

            delta = np.sqrt(delta_sq[r - 1])
            c = 0.0 if res is None else np.sqrt(c_sq[r - 1])
            if holds(delta, c):
                self.last_rule = f"split r={r}"
                return True
            low_c = 0.0 if res is None else c / np.sqrt(min(k, d - r))
            if not holds(delta / np.sqrt(min(k, r)), low_c):
                continue  # even the smallest possible spectral norms fail
            delta = float(np.linalg.norm(EV[:, :r] / self.S[:r], 2))
            if res is not None:
                c = float(np.linalg.norm(E - EV[:, :r] @ self.Vt[:r], 2))
            if holds(delta, c):
                self.last_rule = f"split r={r} (spectral)"
                return True
        return False

    def _max_other(self, m):
        """For each point, the largest m over the points of the other classes."""
        class_max = np.maximum.reduceat(m, self.class_ptr[:-1])
        top = int(np.argmax(class_max))
        first = class_max[top]
        class_max[top] = -np.inf
        per_class = np.full(class_max.shape, first)
        if class_max.shape[0] > 1:
            per_class[top] = class_max.max()
        return per_class[self.row_class]

    def _prepare_rule(self, L):
        """Per-search quantities of rule (*).

        With ``L_s = U S V^T`` and ``P_r`` the projection on the top r right
        singular vectors, any ``v = x_a - x_b`` splits as ``P_r v + (I - P_r)
        v``; ``||E P_r v|| <= ||E V_r S_r^{-1}|| ||L_s v||`` (so that part
        shrinks distances by a factor ``1 - delta``) and ``||E (I - P_r) v||
        <= ||E (I - P_r)|| (||(I - P_r) x_a|| + ||(I - P_r) x_b||)``.  The
        residual norms ``||(I - P_r) x_u||`` and their maxima over the other
        classes are computed here, once per set (when first needed), for r =
        the number of singular values above 1e-3, 1e-2, 1e-1 times the
        largest.
        """
        _, S, Vt = np.linalg.svd(L, full_matrices=False)
        self.S, self.Vt = S, Vt
        d = self.X.shape[1]
        splits = set()
        if S.shape[0] and S[0] > 0:
            for rel in (1e-3, 1e-2, 1e-1):
                splits.add(int(np.sum(S >= rel * S[0])))
        splits.discard(0)
        C = None
        rule = []
        for r in sorted(splits, reverse=True):
            if r == d:
                rule.append((r, None, None))
                continue
            if C is None:
                C = np.cumsum((self.X @ Vt.T.astype(self.dtype)).astype(np.float64) ** 2,
                              axis=1)
            res = np.sqrt(np.maximum(self.x_sq - C[:, r - 1], 0.0))
            rule.append((r, res[self.has_targets], self._max_other(res)[self.has_targets]))
        self.rule_splits = rule

    def _adapt_slack(self):
        """Tune the slack by the observed cost of the set that just expired.

        A search costs about one GEMM-expanded distance per pair of points
        of different classes (``n_cross`` units); an evaluation about ``6 P``
        units for ``P`` candidate pairs (two exact distances per pair end,
        the hinge terms, the Laplacian, over rows read at random).  A set
        that served ``life`` evaluations therefore cost ``n_cross / life +
        6 P`` per evaluation.  The slack moves by factors of 2 in one
        direction while that cost decreases and turns back when it does not
        (a hill climb: a larger slack buys a longer life only while steps
        are small enough for the movement bound).  The first move follows
        the cost balance: grow when searches dominate, shrink when pairs
        do.  Only counts enter, so the sequence of slacks (and searches) is
        the same on every run.
        """
        if self.n_searches == 0 or self.P_last is None:
            return
        life = max(self.evals_since_search, 1)
        search_cost = self.n_cross / life
        pair_cost = 6.0 * self.P_last
        cost = search_cost + pair_cost
        if self.last_cost is None:
            self.direction = 1 if search_cost > pair_cost else -1
        elif cost >= self.last_cost:
            self.direction = -self.direction
        self.last_cost = cost
        factor = 2.0 if self.direction > 0 else 0.5
        self.slack = min(max(self.slack * factor, _SLACK_MIN), _SLACK_MAX)

    def search(self, L, Z):
        """Candidate pairs at L (embedding Z) with the current slack.

        Returns False when even the exact impostor pairs exceed the budget
        (the caller then evaluates with the dense kernel).
        """
        self._adapt_slack()
        self.inc_offsets = self.inc_other = None  # free first
        self.n_searches += 1
        self.evals_since_search = 0
        slack = self.slack
        sqrt_r = np.sqrt(np.maximum(self.radius, 0.0))
        # Distances do not change under translation: centring keeps the
        # GEMM expansion (and float32 rounding) error small.
        Zc = Z - Z.mean(axis=0, dtype=np.float64)
        Z32 = np.ascontiguousarray(Zc, dtype=np.float32)
        del Zc
        while True:
            rho = np.where(self.has_targets, (1.0 + slack) * sqrt_r, -1.0)
            rho_sq = np.where(self.has_targets, rho * rho, -1.0)
            offsets, other, status = _search(Z32, self.class_end,
                                             np.ascontiguousarray(rho_sq),
                                             self.pair_budget,
                                             self._threads(self.n_cross * Z.shape[1]))
            if status == 0:
                break
            if status == 2:
                raise MemoryError("LMNN: out of memory during the impostor search.")
            if slack == 0.0:
                # Too many impostor pairs to store: this evaluation goes
                # through the dense kernel, and the next one searches again.
                self.L_s = None
                self.P_last = None
                self.search_sizes.append(-1)
                return False
            # Over the budget: retry with a quarter of the slack (0 at last),
            # and start the next search from there.
            slack = slack / 4.0 if slack / 4.0 >= _SLACK_MIN else 0.0
            self.slack = max(slack, _SLACK_MIN)
        self.inc_offsets, self.inc_other = offsets, other
        self.rho = rho
        self.L_s = np.array(L, dtype=np.float64)
        self.Z_s = np.array(Z, dtype=np.float64)
        self.rho_keep = rho[self.has_targets]
        self.rule_splits = None  # prepared when first needed
        self.P_last = int(self.inc_other.shape[0] // 2)
        self.search_sizes.append(self.P_last)
        return True

    # -- the objective ---------------------------------------------------
    def loss_grad(self, L, compute_gradient=True):
        """Objective, gradient (k, d) float64 and number of active triplets."""
        L = np.asarray(L, dtype=np.float64)
        with single_threaded_blas():
            Z = self.embed(L)
            sparse = self._set_is_valid(L, Z) or self.search(L, Z)
            self.evals_since_search += 1
            self.n_evaluations += 1
            if sparse:
                loss, n_active, grad = _loss_grad(
                    self.X, Z, self.targets, self.n_targets, self.Dt, self.radius,
                    *self.tin, self.inc_offsets, self.inc_other,
                    self.mu, compute_gradient,
                    self._threads(Z.shape[1] * (self.inc_other.shape[0] + self.n * (
                        2 * self.targets.shape[1] + self.X.shape[1]))),
                )
            else:
                self.n_dense += 1
                loss, n_active, grad = _dense_loss_grad(
                    self.X, Z, self.class_start, self.class_end, self.targets,
                    self.n_targets, self.Dt, self.radius, *self.tin, self.mu,
                    compute_gradient, self.n_threads,
                )
        self.n_active = n_active
        return loss, grad, n_active


def _preconditioner(problem, ridge=0.1):
    """Change of variables ``L = W Q`` that makes L-BFGS converge faster.

    The pull term is ``(1 - mu) tr(L A L^T)`` with ``A = sum_{i, j in T(i)}
    (x_i - x_j)(x_i - x_j)^T``: its Hessian in L is ``2 (1 - mu) A`` on
    each row, as ill-conditioned as the spread of the target differences
    across directions.  With ``Q = (A + lambda I)^{-1/2}`` the pull term is
    ``tr(W (A + lambda I)^{-1/2} A (A + lambda I)^{-1/2} W^T)``, close to
    isotropic in W, and L-BFGS (whose initial Hessian guess is a multiple
    of the identity) needs fewer iterations (on digits, 2 to 3 times fewer
    to reach the same objective).  ``lambda = ridge * mean
    eigenvalue of A`` keeps Q bounded when A is singular (constant
    features, coinciding targets).  The objective is unchanged: only the
    solver's coordinates are.

    Returns ``(Q, Q^{-1})``, or ``(None, None)`` when A is zero.
    """
    X, targets, n_t = problem.X, problem.targets, problem.n_targets
    n, d = X.shape
    A = np.zeros((d, d))
    step = max(1, 2**20 // max(d * max(targets.shape[1], 1), 1))
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        T = targets[rows]
        valid = np.arange(T.shape[1])[None, :] < n_t[rows, None]
        diff = (X[rows, None, :].astype(np.float64)
                - X[np.where(valid, T, 0)].astype(np.float64))
        diff = diff[valid]
        A += diff.T @ diff
    w, V = np.linalg.eigh(A)
    w = np.maximum(w, 0.0)
    mean = float(w.mean())
    if not mean > 0 or not np.isfinite(mean):
        return None, None
    w = w + ridge * mean
    Q = (V / np.sqrt(w)) @ V.T
    Q_inv = (V * np.sqrt(w)) @ V.T
    return Q, Q_inv


def _sort_by_class(y_enc, n_classes):
    order = np.argsort(y_enc, kind="stable")
    class_ptr = np.zeros(n_classes + 1, dtype=np.intp)
    np.cumsum(np.bincount(y_enc, minlength=n_classes), out=class_ptr[1:])
    return order, class_ptr


def find_target_neighbors(X, y, n_neighbors, components=None, n_jobs=None):
    """Target neighbours of LMNN: the nearest same-class points of each point.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    y : array-like of shape (n_samples,)
        Class labels.
    n_neighbors : int
        Neighbours per point; a class of m points gives its points
        ``min(n_neighbors, m - 1)``.
    components : ndarray of shape (n_components, n_features), optional
        The metric ``||L (x - x')||`` (default: Euclidean).
    n_jobs : int, optional

    Returns
    -------
    targets : ndarray of shape (n_samples, n_neighbors), int
        Row indices into X, nearest first (ties: smaller index first);
        -1 in unused slots.
    n_targets : ndarray of shape (n_samples,), int
    """
    X = np.ascontiguousarray(X)
    classes, y_enc = np.unique(np.asarray(y), return_inverse=True)
    y_enc = y_enc.reshape(-1)
    order, class_ptr = _sort_by_class(y_enc, classes.shape[0])
    L = np.eye(X.shape[1]) if components is None else np.asarray(components)
    n_threads = effective_n_threads(n_jobs)
    Xs = np.ascontiguousarray(X[order])
    counts = np.diff(class_ptr)
    n_t = np.minimum(n_neighbors, counts - 1)[y_enc[order]].astype(np.intc)
    with single_threaded_blas():
        Z = np.empty((X.shape[0], L.shape[0]), dtype=X.dtype)
        _embed(Xs, np.ascontiguousarray(L, dtype=X.dtype), Z, 256, n_threads)
        t_sorted, _ = _target_neighbors(Z, class_ptr, n_t, int(n_neighbors), n_threads)
    targets = np.full((X.shape[0], n_neighbors), -1, dtype=np.intp)
    valid = t_sorted >= 0
    mapped = np.where(valid, order[np.maximum(t_sorted, 0)], -1)
    targets[order] = mapped
    n_targets = np.empty(X.shape[0], dtype=np.intp)
    n_targets[order] = n_t
    return targets, n_targets


class LMNN(MahalanobisMixin):
    """Large Margin Nearest Neighbor metric learning.

    Learns a linear map ``L`` (``components_``) under which each point's
    ``n_neighbors`` target neighbours (its nearest same-class points in the
    initial metric) are close, and points of other classes are kept outside
    a unit margin, as in Weinberger & Saul (2009).  The objective, with
    ``D_ab = ||L (x_a - x_b)||^2`` and ``mu = regularization``, is

    ``(1 - mu) sum_{i, j in T(i)} D_ij + mu sum_{i, j in T(i), l: y_l != y_i}
    [1 + D_ij - D_il]_+``.

    The impostor search and the gradient run in OpenMP kernels over a
    candidate set of pairs that is re-searched only when the points may
    have moved enough to let a new impostor in (see Notes); nothing of
    size n x n is ever stored.

    Parameters
    ----------
    init : {'auto', 'identity', 'pca', 'lda', 'covariance', 'random'}, array \
            or fitted learner, default='auto'
        Initial ``L``; see :func:`fastmetric._core.base.initialize_components`
        (``'auto'`` gives ``'lda'`` when ``n_components < n_classes``, else
        ``'pca'`` when ``n_components < n_features``, else the identity).
    n_neighbors : int, default=3
        Target neighbours per point (not counting the point).  A class with
        ``m <= n_neighbors`` points gives its points ``m - 1`` targets, with
        a warning.
    min_iter : int, default=50
        Iterations before the tolerance may stop the solver.
    max_iter : int, default=1000
        Maximum number of iterations (L-BFGS iterations, or accepted
        gradient steps for ``solver='gd'``).
    learn_rate : float, default=1e-7
        Initial step size of ``solver='gd'`` (unused by L-BFGS).
    regularization : float in [0, 1], default=0.5
        ``mu``: the weight of the push (hinge) term; the pull term has
        ``1 - mu``.  (metric-learn 0.7's code puts its ``regularization``
        on the pull term instead: its ``r`` is our ``1 - r``; both default
        to 0.5, where they agree.)
    convergence_tol : float, default=0.001
        Stop (after ``min_iter`` iterations) when an iteration decreases the
        objective by less than ``convergence_tol * max(|f|, 1)``.
    n_components : int, optional
        Rows of ``L`` (the embedding dimension); default ``n_features``.
    solver : {'lbfgs', 'gd'}, default='lbfgs'
        scipy's L-BFGS-B, or metric-learn's gradient descent (the step is
        halved until the objective decreases, then grown by 1% per step).
    verbose : bool or int, default=False
        Print the objective at each iteration.
    preprocessor : array-like of shape (n_samples, n_features) or callable, optional
        When set, ``X`` in ``fit`` and ``transform`` may be a 1-D array of
        row indices into it (or passed to it, if callable), as in
        metric-learn.
    random_state : int, RandomState instance or None
        For ``init='random'`` and randomised PCA.
    n_jobs : int, optional
        OpenMP threads (None: what OpenMP allows, -1: all CPUs).  The result
        does not depend on it.
    callback : callable, optional
        ``callback(estimator, iteration, loss)`` after each iteration, with
        ``components_`` set to the current iterate; returning True stops.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned map ``L``.
    n_iter_ : int
        Iterations done.
    loss_ : float
        Final objective.
    loss_curve_ : list of float
        Objective after each iteration.
    n_active_ : int
        Active triplets (positive hinge terms) at the end.
    n_searches_ : int
        Full impostor searches done.
    n_evaluations_ : int
        Objective evaluations done.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When X has feature names.

    Notes
    -----
    *Targets* are found once, per class, by a chunked k-NN in the initial
    metric (for the default init at full rank the Euclidean one, as in the
    original and metric-learn), ties broken by the smaller index.

    *Impostor search*: every pair of different classes closer than an
    enlarged margin radius, by float32 GEMM-expanded distances over blocks
    of rows of the centred embedding (O(n^2 k) time, O(block) memory), with
    a tolerance that covers the rounding.  The search is not repeated at
    every evaluation: the candidate set stays valid while no point can have
    moved enough, relative to the others, to let a pair it excludes inside
    a margin -- e.g. while ``rho_a - m_a - max_{u not in class(a)} m_u >=
    sqrt(r_a)`` for every point a, with ``rho_a`` a's enlarged radius at
    the search, ``r_a`` its current squared margin radius and ``m_u =
    ||(L - L_s) x_u||`` how far u has moved since the search (x centred).
    A second, relative bound handles large common moves (see
    ``_LMNNProblem``).  The objective is therefore always exact.  Each
    evaluation costs O(n k d + P k) for P candidate pairs; when the
    impostor pairs are too many to store (over 2^25) a dense kernel
    evaluates without storing them (O(n^2 k)).

    *Solver*: scipy's L-BFGS-B on ``W = L Q^{-1}`` with ``Q = (A + lambda
    I)^{-1/2}``, A the scatter of the target differences: a change of
    variables that makes the pull term isotropic and cuts the iterations
    2 to 3 times on digits.  The hinge makes the objective non-smooth;
    L-BFGS still reaches lower objectives than metric-learn's gradient
    descent in far fewer evaluations (digits: about 55 evaluations against
    about 760 gradient steps, and a test accuracy at least as good), so it
    is the default; ``solver='gd'`` runs metric-learn's scheme.
    ``min_iter`` applies to both solvers: the tolerance cannot stop them
    before it.

    Results are the same, bit for bit, for any ``n_jobs``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastmetric import LMNN
    >>> X, y = load_iris(return_X_y=True)
    >>> lmnn = LMNN(n_neighbors=3, random_state=0).fit(X, y)
    >>> lmnn.transform(X).shape
    (150, 4)
    """

    def __init__(self, init="auto", n_neighbors=3, min_iter=50, max_iter=1000,
                 learn_rate=1e-7, regularization=0.5, convergence_tol=0.001,
                 n_components=None, solver="lbfgs", verbose=False, preprocessor=None,
                 random_state=None, n_jobs=None, callback=None):
        self.init = init
        self.n_neighbors = n_neighbors
        self.min_iter = min_iter
        self.max_iter = max_iter
        self.learn_rate = learn_rate
        self.regularization = regularization
        self.convergence_tol = convergence_tol
        self.n_components = n_components
        self.solver = solver
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.callback = callback

    def _validate_params(self):
        self._k = _check_int(self.n_neighbors, "n_neighbors", 1)
        self._min_iter = _check_int(self.min_iter, "min_iter", 0)
        self._max_iter = _check_int(self.max_iter, "max_iter", 1)
        self._learn_rate = _check_real(self.learn_rate, "learn_rate", 0.0, low_inclusive=False)
        self._mu = _check_real(self.regularization, "regularization", 0.0, 1.0)
        self._tol = _check_real(self.convergence_tol, "convergence_tol", 0.0)
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver={self.solver!r} is not one of {_SOLVERS}.")
        if not isinstance(self.verbose, (bool, np.bool_)):
            _check_int(self.verbose, "verbose", 0)
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be None or callable; got {self.callback!r}.")

    def fit(self, X, y):
        """Learn the metric from points and their class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels: at least 2 classes, and some class with 2 points.

        Returns
        -------
        self
        """
        self._validate_params()
        X = points_from_indices(self.preprocessor, X)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C")
        check_classification_targets(y)
        classes, y_enc, counts = np.unique(y, return_inverse=True, return_counts=True)
        y_enc = y_enc.reshape(-1)
        if classes.shape[0] < 2:
            raise ValueError(
                f"LMNN needs at least 2 classes in y (impostors are points of another "
                f"class); y has 1 class ({classes[0]!r})."
            )
        if X.shape[0] >= np.iinfo(np.intc).max:
            raise ValueError(
                f"LMNN indexes points with 32-bit integers; X has {X.shape[0]} rows, more "
                f"than {np.iinfo(np.intc).max - 1}."
            )
        K = self._k
        per_class = np.minimum(K, counts - 1)
        if per_class.max() < 1:
            raise ValueError(
                "LMNN needs a class with at least 2 samples: every class of y has a single "
                "sample, so no point has a target neighbour."
            )
        if per_class.min() < K:
            small = classes[per_class < K]
            shown = ", ".join(repr(c) for c in small[:5]) + (" ..." if small.shape[0] > 5 else "")
            warnings.warn(
                f"LMNN: {small.shape[0]} class(es) ({shown}) have at most n_neighbors={K} "
                "samples; their points get (class size - 1) target neighbours instead.",
                UserWarning,
                stacklevel=2,
            )
        rng = check_random_state(self.random_state)
        n_threads = effective_n_threads(self.n_jobs)
        dtype = X.dtype

        with single_threaded_blas():
            L0 = initialize_components(self.init, X, y=y_enc, n_components=self.n_components,
                                       random_state=rng)
            k, d = L0.shape
            order, class_ptr = _sort_by_class(y_enc, classes.shape[0])
            Xs = np.ascontiguousarray(X[order])
            n_t = per_class[y_enc[order]].astype(np.intc)
            Z0 = np.empty((Xs.shape[0], k), dtype=dtype)
            _embed(Xs, np.ascontiguousarray(L0, dtype=dtype), Z0, 256, n_threads)
            # No point has more targets than per_class.max() (<= K): the target
            # table needs no wider rows, whatever n_neighbors asks for.
            targets, _ = _target_neighbors(Z0, class_ptr, n_t, int(per_class.max()), n_threads)
            del Z0
            problem = _LMNNProblem(Xs, class_ptr, targets, n_t, self._mu, n_threads)
            del Xs
            result = self._solve(problem, L0)
            # Active triplets at the returned map (the solver's last
            # evaluation may have been a rejected trial point).
            _, _, n_active = problem.loss_grad(result.x.reshape(k, d), compute_gradient=False)

        self.components_ = np.ascontiguousarray(result.x.reshape(k, d))
        self.n_iter_ = int(result.n_iter)
        self.loss_ = float(result.fun)
        self.loss_curve_ = list(result.loss_curve)
        self.n_active_ = int(n_active)
        self.n_searches_ = int(problem.n_searches)
        self.n_evaluations_ = int(problem.n_evaluations)
        return self

    # -- solvers -----------------------------------------------------------
    def _solve(self, problem, L0):
        k, d = L0.shape
        printer = IterationPrinter(type(self).__name__)
        tol, min_iter = self._tol, self._min_iter
        state = {"prev": None, "converged": False}
        # L-BFGS works on W with L = W Q (see _preconditioner); plain
        # gradient descent on L itself, as metric-learn's.
        Q, Q_inv = (_preconditioner(problem) if self.solver == "lbfgs" else (None, None))

        def to_L(theta):
            W = theta.reshape(k, d)
            return W if Q is None else W @ Q

        def on_iteration(iteration, x, loss):
            if self.verbose:
                printer(iteration, loss)
            prev = state["prev"]
            state["prev"] = loss
            if self.callback is not None:
                self.components_ = np.ascontiguousarray(to_L(x))
                if self.callback(self, iteration, loss):
                    return True
            if (iteration >= max(min_iter, 1) and prev is not None
                    and prev - loss <= tol * max(abs(loss), 1.0)):
                state["converged"] = True
                return True
            return False

        def fun(theta):
            loss, grad, _ = problem.loss_grad(to_L(theta))
            if Q is not None:
                grad = grad @ Q  # d f / d W = (d f / d L) Q^T, Q symmetric
            return loss, grad.ravel()

        if self.solver == "lbfgs":
            theta0 = (L0 if Q is None else L0 @ Q_inv).ravel()
            with warnings.catch_warnings():
                # minimize_lbfgs warns at max_iter; we warn ourselves below.
                warnings.simplefilter("ignore", ConvergenceWarning)
                result = minimize_lbfgs(fun, theta0, max_iter=self._max_iter, tol=0.0,
                                        on_iteration=on_iteration)
            result.x = to_L(result.x).ravel()
            if not np.all(np.isfinite(result.x)):
                raise ValueError("LMNN: the solver produced a non-finite map.")
        else:
            result = self._gradient_descent(fun, L0.ravel(), on_iteration)
        if state["converged"]:
            result.converged = True
            result.message = "relative decrease below convergence_tol"
        elif result.n_iter >= self._max_iter and "callback" not in result.message:
            warnings.warn(
                f"LMNN did not converge in max_iter={self._max_iter} iterations; increase "
                "max_iter or convergence_tol.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return result

    def _gradient_descent(self, fun, x0, on_iteration):
        """metric-learn's scheme: a step is halved until the objective does
        not increase, accepted, and the next one starts 1% longer."""
        x = np.array(x0, dtype=np.float64)
        f, g = fun(x)
        lr = self._learn_rate
        curve = []
        it = 0
        # Ctrl-C keeps the last accepted step.
        try:
            for it in range(1, self._max_iter + 1):
                while True:
                    x_new = x - lr * g
                    f_new, g_new = fun(x_new)
                    if np.isfinite(f_new) and f_new <= f:
                        break
                    lr /= 2.0
                    if lr * np.abs(g).max() <= 1e-15 * max(np.abs(x).max(), 1.0):
                        # No step decreases f: a (numerically) stationary point.
                        return SolverResult(x, f, it - 1, curve, True, "step size underflow")
                x, f, g = x_new, f_new, g_new
                lr *= 1.01
                curve.append(float(f))
                if on_iteration(it, x, float(f)):
                    return SolverResult(x, f, it, curve, False, "stopped by the callback")
        except KeyboardInterrupt:
            warn_interrupted(f"after {len(curve)} iteration(s)")
            return SolverResult(x, f, len(curve), curve, False, "interrupted")
        return SolverResult(x, f, it, curve, False, "max_iter reached")
