"""MMC: Mahalanobis Metric for Clustering (Xing, Ng, Jordan & Russell, 2002).

With similar pairs S and dissimilar pairs D, and ``d_p = x_a - x_b``, MMC
solves the convex problem

    maximise    g(M) = sum_{p in D} sqrt(d_p^T M d_p)
    subject to  f(M) = sum_{p in S} d_p^T M d_p = <W, M> <= 1,   M PSD,

with ``W = sum_{p in S} d_p d_p^T`` the scatter of the similar pairs.

Full matrix, ``solver='lbfgs'`` (default).  g is homogeneous of degree 1/2
in M and f of degree 1, so the problem is that of maximising the
scale-free ratio ``g(M) / sqrt(f(M))`` over PSD matrices and rescaling the
maximiser onto ``f(M) = 1``.  Writing ``M = L^T L`` (any square L gives a
PSD M, so the cone constraint disappears), L-BFGS minimises
``h(L) = 0.5 log f(L) - log g(L)``, whose gradient
``L W / f - L G / g`` with ``G = sum_D d_p d_p^T / ||L d_p||`` is one
weighted pair scatter (the OpenMP kernel
:func:`fastmetric.kernels.pair_scatter.pair_scatter`) per evaluation, and the
result is rescaled so that ``sum_S d^T M d = 1`` exactly.  The problem is
convex in M, and the factored form with a full square L has the same
maxima; no eigendecomposition is needed during the fit.

Full matrix, ``solver='projection'``: the paper's projected gradient
ascent.  The gradient ``G = sum_{p in D} d_p d_p^T / (2 sqrt(d_p^T M d_p))``
is a weighted pair scatter (one call of the OpenMP kernel
:func:`fastmetric.kernels.pair_scatter.pair_scatter`, per-pair weights
``1 / (2 dist_p)``), taken along the plane ``<W, M> = const`` (its component
along W removed) and normalised.  A step ``M + alpha ||M||_F G / ||G||_F``
is followed by alternating projections onto the half-space ``<W, M> <= 1``
and the PSD cone (one symmetric eigendecomposition each), until the
constraint is met to 1% (at most ``max_proj`` rounds); a last rescaling
``M / <W, M>`` (which keeps M PSD) then makes the constraint hold exactly.
The step is accepted when it increases g (and ``alpha`` grows by 5%), else
``alpha`` is halved; the fit stops when the relative change of M is below
``tol`` or after ``max_iter`` steps.  The distances in g come from the
paired-distance kernel with ``L = diag(sqrt(l)) V^T`` from the projection's
eigendecomposition: nothing costs O(P d^2).

Diagonal (``diagonal=True``), as in the paper: Newton's method on the
unconstrained form ``F(w) = s^T w - c log sum_{p in D} sqrt(q_p^T w)``,
``w >= 0`` (``M = diag(w)``, ``s = diag(W)``, ``q_p = d_p * d_p``,
``c = diagonal_c``), with a backtracking line search along the projected
path ``max(0, w - lambda step)``.

Rules for degenerate input (documented in the class notes): the constraint
matrix is ``W + 1e-9 (trace(W) / d) I`` so that directions in which no
similar pair varies cannot grow without bound; when every similar pair is
a point with itself (W = 0) the constraint is ``trace(M) <= 1``.  Distances
are floored at ``1e-12`` times the largest one in the gradient weights.
"""
import warnings
from typing import ClassVar

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import feature_scales, initialize_components, prior_matrix
from fastmetric._core.objectives import mmc as objective
from fastmetric._core.pairs import PairsClassifierMixin, PairsFromLabelsMixin
from fastmetric._core.params import (
    fit_context,
    integers,
    options_or_array,
    reals,
    renamed_value,
    shared,
    store_params,
)
from fastmetric._core.solvers import IterationPrinter, minimize_lbfgs, warn_interrupted
from fastmetric._core.threads import effective_n_threads

__all__ = ["MMC", "MMC_Supervised"]

_INITS = ("identity", "covariance", "random")
# logdet_reg of the full-matrix L-BFGS solver when logdet_reg='auto'.
_AUTO_LOGDET_REG = 1.0
_SOLVERS = ("lbfgs", "projection")


class _BaseMMC(MahalanobisMixin):
    """Parameter checks and the two MMC solvers, on index pairs into X."""

    _parameter_constraints: ClassVar[dict] = {
        **shared("max_iter", "tol", "verbose", "random_state", "n_jobs", "callback",
                 "convergence_threshold"),
        "max_proj": [integers(1)],
        "init": options_or_array(*_INITS, learner=True),
        "diagonal": ["boolean"],
        "diagonal_c": [reals(0, closed="neither")],
        "solver": [StrOptions(set(_SOLVERS))],
        "logdet_reg": [StrOptions({"auto"}), reals(0)],
        "feature_scaling": [StrOptions({"auto", "range"}), None],
    }

    def _resolve_logdet_reg(self):
        """The log-det weight: 'auto' resolved, and only where a solver supports it."""
        full_lbfgs = not self.diagonal and self.solver == "lbfgs"
        if isinstance(self.logdet_reg, str):  # 'auto'
            return _AUTO_LOGDET_REG if full_lbfgs else 0.0
        logdet_reg = float(self.logdet_reg)
        if logdet_reg > 0 and not full_lbfgs:
            raise ValueError(
                "logdet_reg > 0 is only supported by the full-matrix L-BFGS solver "
                f"(diagonal=False, solver='lbfgs'); got logdet_reg={self.logdet_reg!r}, "
                f"diagonal={self.diagonal!r} and solver={self.solver!r}."
            )
        return logdet_reg

    def _initial_metric(self, X, rng, scales=None):
        """M0 = L0^T L0 from ``init`` (L0 has n_features rows); a named init
        on ``X / scales`` where per-feature ``scales`` are given (features in
        different units)."""
        d = X.shape[1]
        init = self.init
        if not isinstance(init, str):
            if hasattr(init, "components_"):
                L0 = initialize_components(init, X)
                return L0.T @ L0
            M0 = np.asarray(init)
            if M0.ndim == 2 and M0.shape == (d, d):
                # metric-learn passes a matrix M here; a square array is read as
                # M, checked as every learner's prior (symmetric; MMC projects
                # it onto the PSD cone itself).
                return prior_matrix(M0, d, "MMC", _INITS, what="init", definite=False)
            L0 = initialize_components(init, X)
            return L0.T @ L0
        if scales is not None:
            # powers of two: X / scales and L / scales are exact
            L0 = initialize_components(init, X / scales, n_components=d,
                                       random_state=rng) / scales
        else:
            L0 = initialize_components(init, X, n_components=d, random_state=rng)
        return L0.T @ L0

    def _fit_pairs(self, X, a, b, similar):
        """Fit on index pairs (a, b) into X; ``similar`` is a boolean mask."""
        self._logdet_reg = self._resolve_logdet_reg()
        self._tol = float(renamed_value(self, "convergence_threshold", "tol"))
        n_sim, n_dis = int(similar.sum()), int((~similar).sum())
        if n_sim == 0 or n_dis == 0:
            raise ValueError(
                f"{type(self).__name__} needs both similar and dissimilar pairs; got "
                f"{n_sim} similar and {n_dis} dissimilar pair(s)."
            )
        rng = check_random_state(self.random_state)
        n_threads = effective_n_threads(self.n_jobs)
        aS, bS = np.ascontiguousarray(a[similar]), np.ascontiguousarray(b[similar])
        aD, bD = np.ascontiguousarray(a[~similar]), np.ascontiguousarray(b[~similar])
        # Features in different units: the full-matrix L-BFGS solver starts
        # and searches in coordinates where each spans about one unit.
        scales = (feature_scales(X, self.feature_scaling)
                  if not self.diagonal and self.solver == "lbfgs" else None)
        self.feature_scales_ = scales
        # Data in one unit at an extreme scale (one power of two for every
        # feature): the fit runs on the points divided by it (exact), where
        # MMC's sums of squares (the pair scatter, the start's metric) stay
        # in float64's range (at about 1e+-200 they overflowed), and its map
        # is divided by it: the fit at a range of one, bit for bit.
        self._points_scale = 1.0
        if scales is not None and np.all(scales == scales[0]):
            self._points_scale = float(scales[0])
            X, scales = X / X.dtype.type(self._points_scale), None
            M0 = self._initial_metric(X, rng, None)
            if not isinstance(self.init, str):  # a metric of the points as given
                M0 = M0 * (self._points_scale * self._points_scale)
        else:
            M0 = self._initial_metric(X, rng, scales)
        W = objective.pair_scatter_matrix(X, aS, bS, None, n_threads)
        if self.diagonal:
            w = self._fit_diag(X, aD, bD, np.diag(W).copy(), np.diag(M0).copy(),
                               n_threads)
            L = np.diag(np.sqrt(w))
        elif not objective.pair_distances(X, aD, bD, np.eye(X.shape[1]), n_threads).sum() > 0:
            L = self._keep_start(M0)
        else:
            ridge = objective.RIDGE_LOGDET if self._logdet_reg > 0 else objective.RIDGE
            W = objective.constraint_matrix(W, ridge, scales)
            if self.solver == "lbfgs":
                L = self._fit_factored(X, aD, bD, W, M0, n_threads, scales)
            else:
                L = self._fit_full(X, aD, bD, W, M0, n_threads)
        self.components_ = np.ascontiguousarray(L / self._points_scale, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        return self

    def _keep_start(self, M0):
        """The start's factor, when every dissimilar pair joins two identical
        points: no metric moves them apart (MMC's objective is then 0 for
        every M), so there is nothing to learn and the start is kept."""
        warnings.warn(
            f"{type(self).__name__}: every dissimilar pair joins two identical points "
            "(their distance is 0 in any metric), so no metric separates them; the "
            "initial metric is kept.", UserWarning, stacklevel=4,
        )
        lam, V = np.linalg.eigh(0.5 * (M0 + M0.T))
        L = np.sqrt(np.maximum(lam, 0.0))[:, None] * V.T
        if not np.any(L):
            L = np.eye(M0.shape[0])
        self.n_iter_ = 0
        self.converged_ = True
        self.objective_ = 0.0
        return L

    def _report(self, printer, iteration, objective, L):
        stop = False
        if self.verbose:
            printer(iteration, objective)
        if self.callback is not None:
            self.components_ = np.ascontiguousarray(
                L / getattr(self, "_points_scale", 1.0), dtype=np.float64)
            stop = bool(self.callback(self, iteration, objective))
        return stop

    # -- full matrix: L-BFGS on the factored, scale-free form -----------------
    def _fit_factored(self, X, aD, bD, W, M0, n_threads, scales=None):
        """L-BFGS over ``L`` (or, with per-feature ``scales``, over ``L *
        scales`` column by column: the same objective, searched where each
        feature spans about one unit)."""
        d = W.shape[0]
        # the identity of the search's coordinates, as a map of X
        unit = np.eye(d) if scales is None else np.diag(1.0 / scales)
        if scales is None:
            lam, V = np.linalg.eigh(0.5 * (M0 + M0.T))
            L0 = np.sqrt(np.maximum(lam, 0.0))[:, None] * V.T
        else:
            # the factor of M0 in the scaled coordinates (well conditioned there)
            M0_scaled = M0 * scales[:, None] * scales[None, :]
            lam, V = np.linalg.eigh(0.5 * (M0_scaled + M0_scaled.T))
            L0 = (np.sqrt(np.maximum(lam, 0.0))[:, None] * V.T) / scales
        f0 = float(np.sum((L0 @ W) * L0))
        if not f0 > 0 or not objective.pair_distances(X, aD, bD, L0, n_threads).sum() > 0:
            L0 = unit  # M0 sees no pair spread: start from the identity
            f0 = float(np.trace(W)) if scales is None else float(np.sum((L0 @ W) * L0))
        L0 = L0 / np.sqrt(f0)
        if self._logdet_reg > 0 and np.linalg.matrix_rank(L0) < d:
            # log det needs a full-rank start: blend in the rescaled identity.
            size = np.linalg.norm(L0 if scales is None else L0 * scales)
            L0 = L0 + unit * (size / np.sqrt(d) * 1e-3 + 1e-12)
        # theta = vec(L * scales): d f / d theta = (d f / d L) / scales
        full = None if scales is None else np.tile(scales, d)
        # The log-det term is that of the search's coordinates: log |det L|
        # = log |det (L * scales)| - sum log scales.  Taken on L, the loss
        # would carry a constant 2 mu sum(log scales) / d, and on data at
        # 2^-30 L-BFGS's relative test stopped after one step (12 at 1).
        shift = (0.0 if full is None or not self._logdet_reg > 0
                 else self._logdet_reg * 2.0 / d * float(np.sum(np.log(scales))))

        def components(theta):
            return (theta if full is None else theta / full).reshape(d, d)

        def fun(theta):
            loss, grad = objective.factored_loss_grad(X, aD, bD, W, components(theta),
                                                      n_threads, self._logdet_reg)
            return (loss, grad) if full is None else (loss - shift, grad / full)

        printer = IterationPrinter(type(self).__name__)

        def on_iteration(iteration, theta, loss):
            L = components(theta)
            return self._report(printer, iteration, loss, L / np.sqrt(
                float(np.sum((L @ W) * L))))

        theta0 = L0.ravel() if full is None else L0.ravel() * full
        result = minimize_lbfgs(fun, theta0, max_iter=self.max_iter, tol=self._tol,
                                on_iteration=on_iteration)
        L = components(result.x)
        # Rescale onto the constraint: sum_S d^T M d = <W, L^T L> = 1.
        L = L / np.sqrt(float(np.sum((L @ W) * L)))
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        self.objective_ = float(objective.pair_distances(X, aD, bD, L, n_threads).sum())
        return L

    # -- full matrix: projected gradient ascent --------------------------------
    def _fit_full(self, X, aD, bD, W, M0, n_threads):
        project = objective.Projector(W, self.max_proj)
        printer = IterationPrinter(type(self).__name__)
        w_unit = W / np.sqrt(project.w_norm2)

        def objective_and_direction(L, with_direction):
            if not with_direction:
                return float(objective.pair_distances(X, aD, bD, L, n_threads).sum()), None
            g, G = objective.dissimilar_sum_grad(X, aD, bD, L, n_threads)
            G -= np.sum(G * w_unit) * w_unit  # stay on the plane <W, M> = const
            norm = np.linalg.norm(G)
            return g, (G / norm if norm > 0 else None)

        f0 = float(np.sum(W * M0))
        if not f0 > 0:  # M0 sees no similar pair spread: start from the identity
            M0 = np.eye(W.shape[0])
            f0 = float(np.sum(W * M0))
        M, L, _ = project(M0 / f0)
        g, direction = objective_and_direction(L, True)
        alpha = 0.1
        self.converged_ = False
        self.n_iter_ = 0
        # Ctrl-C keeps the last accepted iterate.
        interrupted = False
        try:
            for cycle in range(1, self.max_iter + 1):
                self.n_iter_ = cycle
                if direction is None:  # no ascent direction: a stationary point
                    self.converged_ = True
                    break
                m_norm = np.linalg.norm(M)
                M_try, L_try, _ = project(M + (alpha * m_norm) * direction)
                g_try, _ = objective_and_direction(L_try, False)
                if g_try > g:
                    delta = np.linalg.norm(M_try - M) / m_norm
                    M, L, g = M_try, L_try, g_try
                    alpha *= 1.05
                    _, direction = objective_and_direction(L, True)
                else:
                    alpha *= 0.5
                    delta = alpha
                if self._report(printer, cycle, -g, L):
                    break
                if delta < self._tol:
                    self.converged_ = True
                    break
        except KeyboardInterrupt:
            warn_interrupted(f"after {self.n_iter_} iteration(s)")
            interrupted = True
        if not (self.converged_ or interrupted) and self.callback is None:
            warnings.warn(
                f"{type(self).__name__} did not converge in max_iter={self.max_iter} "
                "iterations; increase max_iter or tol.", ConvergenceWarning, stacklevel=5,
            )
        self.objective_ = g
        return L

    # -- diagonal: Newton ------------------------------------------------------
    def _fit_diag(self, X, aD, bD, s, w0, n_threads):
        c = float(self.diagonal_c)
        Xd = X.astype(np.float64, copy=False)
        Q = (Xd[aD] - Xd[bD]) ** 2  # (n_dissimilar, d): O(P d) memory, no d^2 per pair
        d = X.shape[1]
        printer = IterationPrinter(type(self).__name__)

        def F(w):
            dist = np.sqrt(np.maximum(Q @ w, 0.0))
            total = dist.sum()
            if not total > 0:
                return np.inf, dist, total
            return float(s @ w - c * np.log(total)), dist, total

        w = np.maximum(np.asarray(w0, dtype=np.float64), 0.0)
        if not F(w)[2] > 0:
            w = np.ones(d)
        f, dist, total = F(w)
        self.converged_ = False
        self.n_iter_ = 0
        # Ctrl-C keeps the last accepted iterate.
        try:
            for it in range(1, self.max_iter + 1):
                self.n_iter_ = it
                floor = 1e-12 * max(float(dist.max()), 1e-300)
                dd = np.maximum(dist, floor)
                d1 = Q.T @ (0.5 / dd)                  # gradient of the sum of distances
                grad = s - c * d1 / total
                # Hessian of -c log(total): c (-Hess(total)/total + d1 d1^T / total^2), PSD.
                H = c * ((Q.T * (0.25 / dd**3)) @ Q / total + np.outer(d1, d1) / total**2)
                H += 1e-6 * max(np.trace(H) / d, 1e-300) * np.eye(d)
                # Projected Newton (Bertsekas, 1982): coordinates at the bound
                # w = 0 whose gradient pushes them further out are held by a
                # scaled gradient step; Newton's step on the others.
                at_bound = (w <= 1e-12 * max(float(w.max()), 1e-300)) & (grad > 0)
                free = ~at_bound
                step = grad / np.maximum(np.diag(H), 1e-300)
                if free.any():
                    try:
                        step[free] = np.linalg.solve(H[np.ix_(free, free)], grad[free])
                    except np.linalg.LinAlgError:
                        pass
                lam, accepted = 1.0, False
                while lam > 1e-12:
                    w_try = np.maximum(w - lam * step, 0.0)
                    f_try, dist_try, total_try = F(w_try)
                    # Armijo condition along the projected path.
                    if f_try <= f - 1e-4 * float(grad @ (w - w_try)) and f_try < f:
                        accepted = True
                        break
                    lam *= 0.5
                if not accepted:
                    self.converged_ = True
                    break
                rel = (f - f_try) / max(abs(f), 1e-300)
                w, f, dist, total = w_try, f_try, dist_try, total_try
                if self._report(printer, it, f, np.diag(np.sqrt(w))):
                    break
                if rel < self._tol:
                    self.converged_ = True
                    break
        except KeyboardInterrupt:
            warn_interrupted(f"after {self.n_iter_} Newton step(s)")
        self.objective_ = f
        return w


@shared_docs
class MMC(PairsClassifierMixin, _BaseMMC):
    """Mahalanobis Metric for Clustering, from labelled pairs.

    Maximises the sum of the distances of dissimilar pairs subject to the
    sum of the squared distances of similar pairs being at most 1 (Xing et
    al., 2002); see the module notes for the algorithms.

    Parameters
    ----------
    max_iter : int, default=100
        Maximum number of L-BFGS iterations, gradient steps ('projection')
        or Newton steps (diagonal).
    max_proj : int, default=10000
        Maximum rounds of the alternating projections per step
        (``solver='projection'``).
    tol : float, default=1e-3
        L-BFGS: relative decrease of the objective and largest gradient
        entry; 'projection': relative change of M; diagonal: relative
        decrease of the objective.
    init : {'identity', 'covariance', 'random'}, array or fitted learner, \
            default='identity'
        Initial metric: a named strategy (see
        :func:`fastmetric._core.init.initialize_components`), a symmetric PSD
        matrix M of shape (n_features, n_features) (metric-learn's
        convention), or a fitted learner.  It is rescaled to meet the
        constraint.
    diagonal : bool, default=False
        Learn a diagonal metric (Newton's method).
    diagonal_c : float, default=1.0
        Weight of the dissimilarity term of the diagonal objective.
    verbose : int, default=False
        Print the objective (minus the sum of dissimilar distances for the
        full metric) at each iteration.
    {preprocessor_pairs}
    random_state : int, RandomState instance or None
        Seeds ``init='random'``.
    solver : {'lbfgs', 'projection'}, default='lbfgs'
        Full-matrix algorithm: L-BFGS on the factored scale-free form (fast)
        or the paper's gradient ascent with alternating projections onto the
        constraint and the PSD cone (one eigendecomposition per projection
        round).  Both solve the same convex problem.  ``max_proj`` only
        applies to 'projection'.
    logdet_reg : float >= 0 or 'auto', default='auto'
        Not in metric-learn: adds ``logdet_reg * ((1/d) log det M - log
        sum_S d^T M d)`` (a scale-free log-determinant barrier) to the
        maximised objective, which keeps M full rank: the MMC optimum is
        often of low rank, and then a poor metric for neighbours.  'auto'
        is 1.0 for the full-matrix L-BFGS solver and 0 for the diagonal
        and projection solvers; **0 is MMC exactly** (metric-learn's
        objective).  A positive value needs the L-BFGS solver; with it the
        ridge of the constraint matrix is ``1e-3`` (relative) instead of
        ``1e-9``.  On standardised digits the 3-NN accuracy is 0.84 with 0
        (as metric-learn's MMC), 0.970 with 0.5 and 0.978 with 1.0.
    {n_jobs_kernels}
    callback : callable, default=None
        ``callback(estimator, iteration, objective)`` after each iteration;
        returning True stops the fit.
    {feature_scaling}
        MMC: the full-matrix L-BFGS solver only (the diagonal Newton
        solver does not depend on the features' scales; 'projection' is
        the paper's algorithm, as given).
    {convergence_threshold}

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        ``L`` with ``M = L^T L``.
    {pair_decision}
    n_iter_ : int
    converged_ : bool
    objective_ : float
        Final sum of dissimilar distances (full) or ``F(w)`` (diagonal).
    {n_features_in}

    Notes
    -----
    On data where the classes are not separated by one low-dimensional
    projection the MMC optimum is often of low rank (about the number of
    classes minus one), which can hurt nearest-neighbour accuracy: on
    standardised digits the 3-NN accuracy at the optimum is about 0.84
    (metric-learn reaches the same).

    Degenerate input: the constraint uses ``W + 1e-9 trace(W)/d I`` (W the
    similar-pair scatter) so that no direction is unbounded, and
    ``trace(M) <= 1`` when W = 0.  The metric is always finite and PSD.
    Its scale is fixed by the constraint ``sum_S d^T M d <= 1``.

    Examples
    --------
    {random_pairs}
    >>> from fastmetric import MMC
    >>> mmc = MMC(preprocessor=X).fit(pairs, y)
    >>> round(mmc.score(pairs, y), 2)  # score of the pair predictions
    1.0
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMMC._parameter_constraints, **shared("preprocessor")}

    def __init__(self, max_iter=100, max_proj=10000, tol=1e-3, init="identity",
                 diagonal=False, diagonal_c=1.0, verbose=False, preprocessor=None,
                 random_state=None, solver="lbfgs", logdet_reg="auto", n_jobs=None,
                 callback=None, feature_scaling="auto", convergence_threshold="deprecated"):
        store_params(self, locals())

    @fit_context
    def fit(self, pairs, y, calibration_params=None):
        """Learn the metric from pairs labelled +1 / -1 (or 1 / 0): similar / dissimilar.

        {fit_hard_pairs}

        {returns_self}
        """
        return self._fit_hard_pairs(pairs, y, calibration_params)


@shared_docs
class MMC_Supervised(PairsFromLabelsMixin, _BaseMMC, TransformerMixin):
    """MMC from class labels: pairs drawn from the classes, then MMC.

    ``n_constraints`` similar pairs (same class) and as many dissimilar
    pairs (different classes) are drawn with
    :func:`fastmetric.kernels.sampling.sample_pairs`.

    Parameters
    ----------
    max_iter, max_proj, init, diagonal, diagonal_c, verbose, random_state, \
solver, logdet_reg, n_jobs, callback, feature_scaling
        As in :class:`MMC`.
    tol : float, default=1e-2
        As in :class:`MMC`.  The L-BFGS objective is a log-ratio, so 1e-2
        stops once an iteration gains less than 1% of it: an early stop
        that keeps the metric well conditioned, and that on real data (see
        ``benchmarks/quality_uci.py``) gives better nearest-neighbour
        accuracy than the optimum, in a few iterations.  ``tol=1e-6`` is
        metric-learn's default.
    {n_constraints_grow}
    {preprocessor_points}
    {num_constraints}
    {convergence_threshold}

    Attributes
    ----------
    components_, n_iter_, converged_, objective_, n_features_in_
        As in :class:`MMC`.

    Examples
    --------
    {load_iris}
    >>> from fastmetric import MMC_Supervised
    >>> mmc = MMC_Supervised(random_state=0).fit(X, y)
    >>> mmc.transform(X).shape
    (150, 4)
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMMC._parameter_constraints,
        **shared("n_constraints", "preprocessor", "num_constraints")}
    # MMC's default pair count grows with the data (see estimator_pairs).
    _grow_pair_count = True

    def __init__(self, max_iter=100, max_proj=10000, tol=1e-2, n_constraints=None,
                 init="identity", diagonal=False, diagonal_c=1.0, verbose=False,
                 preprocessor=None, random_state=None, solver="lbfgs", logdet_reg="auto",
                 n_jobs=None, callback=None, feature_scaling="auto", num_constraints="deprecated",
                 convergence_threshold="deprecated"):
        store_params(self, locals())
