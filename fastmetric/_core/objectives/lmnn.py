"""The LMNN objective (Weinberger & Saul, 2009), prepared for many evaluations.

Each point ``x_i`` gets ``k`` *target neighbours* ``T(i)``: its nearest
points of the same class in the initial metric, found once
(:func:`find_target_neighbors`, or :func:`lmnn_problem` on class-sorted
points).  With ``D_ab = ||L (x_a - x_b)||^2`` and ``mu`` the weight of the
push term, the objective is

    f(L) = (1 - mu) sum_i sum_{j in T(i)} D_ij
           + mu sum_i sum_{j in T(i)} sum_{l: y_l != y_i} [1 + D_ij - D_il]_+ .

A point l of another class is an *impostor* of i when ``D_il < r_i =
1 + max_{j in T(i)} D_ij``: only impostors can make a hinge term positive.
:class:`LMNNProblem` evaluates the loss and gradient through the OpenMP
kernels of :mod:`fastmetric.kernels.lmnn` over a set of *candidate pairs*
that is guaranteed to contain every impostor pair (its docstring gives the
rule that keeps the set valid between impostor searches);
:func:`preconditioner` gives the change of variables under which L-BFGS
converges faster.  The learner :class:`fastmetric.LMNN` only checks its
parameters, builds the problem here and hands it to a solver.
"""
import numpy as np

from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work
from fastmetric.kernels.lmnn import (
    _dense_loss_grad,
    _embed,
    _loss_grad,
    _search,
    _target_distances,
    _target_neighbors,
)

__all__ = ["LMNNProblem", "find_target_neighbors", "lmnn_problem", "preconditioner",
           "sort_by_class"]

# Candidate pairs kept at most: each costs 8 bytes in the per-point lists,
# and up to 16 more while a search runs (its per-block buffers): ~0.8 GB.
_PAIR_BUDGET = 1 << 25

# Multiply-adds per thread below which a kernel call uses fewer threads.
_PARALLEL_WORK = 1 << 20

# Multiply-adds of an impostor search (n_cross k) from which it runs on the
# team under load.  The team's helpers sleep between searches, and waking
# them costs tens of microseconds: beside one busy process on 2 cores, the
# 53 searches of an LMNN fit on breast cancer (2.4e6 each, 0.25 ms) took
# 15.1 ms on the team against 13.0 ms on one thread, and the fit 44 ms
# against 40 ms; on digits (9.3e7, ~4 ms a search) the team is faster.
_TEAM_SEARCH_WORK = 10_000_000

# Initial relative enlargement of the margin radius used by the search, and
# its bounds (see LMNNProblem._adapt_slack).
_SLACK_INIT = 0.1
_SLACK_MIN = 1.0 / 64
# Embeddings whose largest centred entry lies outside [2^-40, 2^40] are
# rescaled by a power of two before the float32 impostor search.
_SEARCH_SCALE_LO = 2.0 ** -40
_SEARCH_SCALE_HI = 2.0 ** 40
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


class LMNNProblem:
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
        # Threads of fm_team.h's team for the impostor search (0: OpenMP's);
        # a fit sets it from the machine's load.  The same result.
        self.team_threads = 0
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
            def holds(delta, c, res=res, res_other=res_other):
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
        # The search is in float32, whose squares overflow beyond 1.8e19 and
        # underflow below 1e-19: an embedding of extreme scale (features of
        # 1e25 or 1e-25) is brought near 1 by a power of two, exact in
        # both precisions, and the radii with it (squared: by its square).
        top = float(np.max(np.abs(Zc))) if Zc.size else 0.0
        shift = 0
        if top > 0 and not _SEARCH_SCALE_LO <= top <= _SEARCH_SCALE_HI:
            shift = -int(np.frexp(top)[1])
            Zc = np.ldexp(Zc, shift)
        Z32 = np.ascontiguousarray(Zc, dtype=np.float32)
        del Zc
        while True:
            rho = np.where(self.has_targets, (1.0 + slack) * sqrt_r, -1.0)
            rho_sq = np.where(self.has_targets, np.ldexp(rho * rho, 2 * shift), -1.0)
            work = self.n_cross * Z.shape[1]
            offsets, other, status = _search(Z32, self.class_end,
                                             np.ascontiguousarray(rho_sq),
                                             self.pair_budget, self._threads(work),
                                             self.team_threads
                                             if work >= _TEAM_SEARCH_WORK else 0)
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


def preconditioner(problem, ridge=0.1):
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


def sort_by_class(y_enc, n_classes):
    """Stable order of the points by class, and where each class starts.

    Returns ``order`` (points of class 0 first, each class in index order)
    and ``class_ptr`` (n_classes + 1,): rows ``class_ptr[c]:class_ptr[c + 1]``
    of ``X[order]`` are class c.
    """
    order = np.argsort(y_enc, kind="stable")
    class_ptr = np.zeros(n_classes + 1, dtype=np.intp)
    np.cumsum(np.bincount(y_enc, minlength=n_classes), out=class_ptr[1:])
    return order, class_ptr


def _sorted_targets(Xs, class_ptr, n_targets, L, n_neighbors, n_threads):
    """Target neighbours (rows of ``Xs``) of class-sorted points in the metric of L."""
    Z = np.empty((Xs.shape[0], L.shape[0]), dtype=Xs.dtype)
    _embed(Xs, np.ascontiguousarray(L, dtype=Xs.dtype), Z, 256, n_threads)
    # No point has more targets than n_targets.max() (<= n_neighbors): the
    # table needs no wider rows, whatever n_neighbors asks for (10**12 would
    # overflow the kernel's C int).
    width = int(min(n_neighbors, n_targets.max())) if n_targets.size else 0
    targets, _ = _target_neighbors(Z, class_ptr, n_targets, width, n_threads)
    return targets


def lmnn_problem(X, y_enc, n_classes, n_targets_per_class, n_neighbors, L0, mu, n_threads):
    """The :class:`LMNNProblem` of labelled points, targets found in the metric of L0.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    y_enc : ndarray of shape (n_samples,), int
        Classes encoded 0 .. n_classes - 1.
    n_classes : int
    n_targets_per_class : ndarray of shape (n_classes,), int
        Targets of each point of a class (at most its size - 1).
    n_neighbors : int
        Target slots per point (the largest of n_targets_per_class or more).
    L0 : ndarray of shape (n_components, n_features)
        The initial map: targets are nearest in its metric.
    mu : float
        Weight of the push (hinge) term.
    n_threads : int

    Returns
    -------
    LMNNProblem
        On the points sorted by class (a copy; X is not kept).
    """
    order, class_ptr = sort_by_class(y_enc, n_classes)
    Xs = np.ascontiguousarray(X[order])
    n_t = n_targets_per_class[y_enc[order]].astype(np.intc)
    targets = _sorted_targets(Xs, class_ptr, n_t, L0, n_neighbors, n_threads)
    return LMNNProblem(Xs, class_ptr, targets, n_t, mu, n_threads)


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
    order, class_ptr = sort_by_class(y_enc, classes.shape[0])
    L = np.eye(X.shape[1]) if components is None else np.asarray(components)
    n_threads = effective_n_threads(n_jobs)
    Xs = np.ascontiguousarray(X[order])
    counts = np.diff(class_ptr)
    n_t = np.minimum(n_neighbors, counts - 1)[y_enc[order]].astype(np.intc)
    with single_threaded_blas():
        t_sorted = _sorted_targets(Xs, class_ptr, n_t, L, n_neighbors, n_threads)
    targets = np.full((X.shape[0], n_neighbors), -1, dtype=np.intp)
    valid = t_sorted >= 0
    mapped = np.where(valid, order[np.maximum(t_sorted, 0)], -1)
    targets[order, :mapped.shape[1]] = mapped
    n_targets = np.empty(X.shape[0], dtype=np.intp)
    n_targets[order] = n_t
    return targets, n_targets
