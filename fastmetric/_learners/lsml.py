"""LSML: metric learning from relative comparisons by minimising squared residual.

Liu, Guo, Zhang, Jojic & Wang (ICDM 2012).  A quadruplet ``(a, b, c, d)`` states
that ``a`` and ``b`` are closer than ``c`` and ``d``.  With the Mahalanobis
matrix ``M`` (``D_ab = (x_a - x_b)^T M (x_a - x_b)``), weights ``w_q``
normalised to sum to 1, and a prior matrix ``M0``, LSML minimises over
``M`` positive definite

    f(M) = sum_q w_q [D_ab > D_cd] (sqrt(D_ab) - sqrt(D_cd))^2
           + tr(M M0^{-1}) - log det M,

a convex function: the squared residual of the violated comparisons plus
the LogDet divergence to the prior (up to constants).  Its gradient is

    grad f(M) = sum_q [viol.] (c_ab v_ab v_ab^T + c_cd v_cd v_cd^T)
                + M0^{-1} - M^{-1},

``c_ab = w_q (1 - sqrt(D_cd / D_ab))``, ``c_cd = w_q (1 - sqrt(D_ab /
D_cd))`` (see :mod:`fastmetric.kernels.lsml`).

Solver.

* Start.  The data term is 1-homogeneous in ``M``, so along the prior
  ``f(alpha M0) = alpha (data(M0) + d) - d log(alpha) + const``, minimal at
  ``alpha = d / (data(M0) + d)``: the fit starts at ``alpha M0``, which
  absorbs the scale of the data (raw pixels, features in the thousands).
* Whitening.  With ``R^T R = alpha M0`` (Cholesky) and ``M = R^T A R``, the
  distances are those of ``A`` on the points ``R x`` and the regulariser is
  ``alpha tr(A) - log det A`` (+ a constant), so the solver works on ``A``
  from ``A = I``, where the regulariser's Hessian is the identity whatever
  ``M0`` (a covariance prior on raw pixels has a condition number ~1e5).
* L-BFGS on ``A`` (two-loop recursion, 10 pairs) whose initial inverse
  Hessian is ``V -> A V A``, the inverse Hessian of ``-log det`` at the
  current iterate (so the first direction is the natural gradient ``-A G
  A``), with an Armijo backtracking line search from the step 1.  A trial outside the positive definite cone
  has ``f = +inf`` (its Cholesky factorisation fails) and is backtracked,
  so every iterate is positive definite and the log-det term is always
  finite; no eigendecomposition is needed.  The distances are linear in
  ``A``, so the quadratic forms of the search direction are computed once
  per iteration and each trial step costs O(n_q) plus a d x d Cholesky.

Per iteration: one kernel evaluation of the quadratic forms
(:func:`fastmetric.kernels.lsml.pair_quadratic_forms`, O(n d^2 + n_q d)),
one weighted scatter of the pairs of the violated quadruplets
(:func:`fastmetric.kernels.pair_scatter.pair_scatter`) and O(d^3) LAPACK work.
The fit stops when the Frobenius norm of the gradient in ``A`` is below
``tol`` (metric-learn's rule, in the whitened coordinates; with the identity
prior and standardised data ``alpha`` is close to 1 and the two gradients
nearly equal), when no step decreases ``f`` any more (the optimum at
machine precision), or after ``max_iter`` iterations.

``components_`` is the Cholesky factor ``L`` (upper triangular) of the
final ``M = L^T L``.
"""
import warnings

import numpy as np
import scipy.linalg
from scipy.linalg.lapack import dpotrf, dpotri
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data

from fastmetric._core.base import MahalanobisMixin, encode_pair_labels
from fastmetric.kernels.lsml import pair_quadratic_forms, residual_loss, residual_loss_coefficients
from fastmetric._core.solvers import IterationPrinter, warn_interrupted
from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work
from fastmetric._core.tuples import QuadrupletsClassifierMixin, check_tuples
from fastmetric._core.validation import (
    check_int_param,
    check_pair_vector,
    check_points,
    check_real_param,
)

__all__ = ["LSML", "LSML_Supervised"]

_PRIORS = ("identity", "covariance", "random")
# Armijo sufficient-decrease constant and the largest number of halvings of
# a step before the line search gives up (f cannot decrease any more).
_ARMIJO = 1e-4
_MAX_HALVINGS = 60


# --------------------------------------------------------------------------
# Prior
# --------------------------------------------------------------------------
def _covariance_prior(X):
    """``M0^{-1}`` for prior='covariance': the regularised covariance.

    ``C = cov(X) + r I`` with ``r = 1e-3 trace(cov(X)) / d`` (eigenvalues
    clipped at 0 first), the same ridge as ``init='covariance'`` of the
    other learners.  It keeps a singular covariance (constant features,
    fewer points than features) invertible, so the prior ``M0 = C^{-1}`` is
    finite and the LogDet regulariser bounded below.  All-constant data (zero
    trace) gives ``C = I``.
    """
    d = X.shape[1]
    if X.shape[0] < 2:
        return np.eye(d)
    C = np.atleast_2d(np.cov(X, rowvar=False))
    trace = float(np.trace(C))
    if not trace > 0:
        return np.eye(d)
    w, V = scipy.linalg.eigh(C)
    w = np.maximum(w, 0.0) + 1e-3 * trace / d
    return (V * w) @ V.T


def _inverse_spd(A, name="prior"):
    """Inverse of a symmetric positive definite matrix, via Cholesky."""
    c, info = dpotrf(A, lower=1, clean=1)
    if info != 0:
        raise ValueError(
            f"{name} must be symmetric positive definite (its Cholesky factorisation "
            "fails); LSML's LogDet regulariser needs a definite prior."
        )
    inv, info = dpotri(c, lower=1)
    if info != 0:  # pragma: no cover - dpotrf succeeded
        raise ValueError(f"{name} could not be inverted.")
    return np.tril(inv) + np.tril(inv, -1).T


def _resolve_prior(prior, X, rng):
    """``(M0, M0^{-1})`` for a prior name or array, both float64 (d, d)."""
    d = X.shape[1]
    if isinstance(prior, str):
        if prior not in _PRIORS:
            raise ValueError(
                f"prior={prior!r} is not one of {_PRIORS} or an array of shape "
                f"(n_features, n_features) = ({d}, {d})."
            )
        if prior == "identity":
            return np.eye(d), np.eye(d)
        if prior == "covariance":
            P = _covariance_prior(X)
            return _inverse_spd(P, "the regularised covariance"), P
        from sklearn.datasets import make_spd_matrix

        M0 = make_spd_matrix(d, random_state=rng)
        M0 = 0.5 * (M0 + M0.T)
        return M0, _inverse_spd(M0, "the random prior")
    if hasattr(prior, "components_") or hasattr(prior, "fit"):
        raise TypeError(
            "prior must be 'identity', 'covariance', 'random' or an array; got an "
            f"estimator ({type(prior).__name__}). Use its get_mahalanobis_matrix()."
        )
    arr = np.asarray(prior)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"prior must be 'identity', 'covariance', 'random' or a real array; got "
            f"{type(prior).__name__} with dtype {arr.dtype}."
        )
    arr = arr.astype(np.float64)
    if arr.shape != (d, d):
        raise ValueError(
            f"prior must have shape (n_features, n_features) = ({d}, {d}); got shape "
            f"{arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise ValueError("prior contains NaN or infinity.")
    if not np.allclose(arr, arr.T, rtol=1e-7, atol=1e-12 * max(1.0, np.abs(arr).max())):
        raise ValueError("prior must be a symmetric matrix.")
    M0 = 0.5 * (arr + arr.T)
    return M0, _inverse_spd(M0, "prior")


# --------------------------------------------------------------------------
# Solver
# --------------------------------------------------------------------------
class _LSMLProblem:
    """The LSML objective on index quadruplets into the points X (float64)."""

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


def _minimize_lsml(problem, M0, *, tol, max_iter, memory=10, on_iteration=None,
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


# --------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------
def _check_weights(weights, n_q):
    shape = np.shape(weights)
    if shape != (n_q,):
        raise ValueError(
            f"weights must have shape (n_quadruplets,) = ({n_q},), one weight per "
            f"quadruplet; got shape {shape}."
        )
    w = check_pair_vector(weights, n_q, "weights", np.float64, nonneg=True)
    total = w.sum()
    if not total > 0:
        raise ValueError("weights sum to 0; at least one quadruplet needs a positive weight.")
    return np.ascontiguousarray(w / total)


class _BaseLSML(MahalanobisMixin):
    """Parameter checks and the fit on index quadruplets, shared by both forms."""

    def _validate_params(self):
        self._tol = check_real_param(self.tol, "tol", 0.0)
        self._max_iter = check_int_param(self.max_iter, "max_iter", 1)
        if not isinstance(self.verbose, (bool, np.bool_)):
            check_int_param(self.verbose, "verbose", 0)
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be None or callable; got {self.callback!r}.")
        effective_n_threads(self.n_jobs)  # type / value check

    def _fit_quadruplets(self, X, quads, weights, rng):
        """Fit M on index quadruplets ``quads`` (n_q, 4) into the points X."""
        n_threads = effective_n_threads(self.n_jobs)
        n_q = quads.shape[0]
        w = (np.full(n_q, 1.0 / n_q) if weights is None else _check_weights(weights, n_q))
        # Only the points that occur in a quadruplet matter (the covariance
        # prior too, as in metric-learn): compact them once, in float64 (the
        # d x d algebra and the log-det are precision sensitive).
        used, inverse = np.unique(quads, return_inverse=True)
        if used.shape[0] < X.shape[0] or X.dtype != np.float64:
            X = np.ascontiguousarray(X[used], dtype=np.float64)
            quads = np.ascontiguousarray(inverse.reshape(quads.shape), dtype=np.intp)
        d = X.shape[1]

        with single_threaded_blas():  # identical results for any BLAS thread count
            M0, _ = _resolve_prior(self.prior, X, rng)
            R0 = np.triu(dpotrf(M0, lower=0, clean=1)[0])  # M0 = R0^T R0
            X0 = X if np.array_equal(M0, np.eye(d)) else np.ascontiguousarray(X @ R0.T)
            # Start at the best multiple alpha M0 of the prior.  The data term
            # is 1-homogeneous in M, so f(alpha M0) = alpha (data0 + d) -
            # d log(alpha) + const, minimal at alpha = d / (data0 + d): this
            # absorbs the scale of the data (pixels in the hundreds, say).
            problem = _LSMLProblem(X0, quads, w, np.eye(d), n_threads)
            dab0, dcd0 = problem.quadratic_forms(np.eye(d))
            data0 = problem.data_loss(dab0, dcd0)
            if not (np.isfinite(data0) and np.isfinite(dab0).all() and np.isfinite(dcd0).all()):
                raise ValueError(
                    "the squared distances of the quadruplets overflow float64 (the data "
                    f"reach {np.abs(X).max():.3g}); rescale the data."
                )
            alpha = d / (data0 + d)
            # Whiten by the start: with R^T R = alpha M0 and M = R^T A R,
            # distances are those of A on the points R x and the regulariser
            # is alpha tr(A) - log det A - log det(alpha M0), so the solver
            # starts from A = I, well conditioned whatever M0 and the scale.
            R = np.sqrt(alpha) * R0
            Xw = np.ascontiguousarray(np.sqrt(alpha) * X0)
            offset = 2.0 * float(np.sum(np.log(np.diag(R))))  # log det(alpha M0)
            problem = _LSMLProblem(Xw, quads, w, alpha * np.eye(d), n_threads)
            printer = IterationPrinter(type(self).__name__)

            def components(chol):
                # A = C C^T (C lower): L = C^T R gives L^T L = R^T A R = M.
                return np.ascontiguousarray(np.triu(chol.T) @ R)

            def on_iteration(iteration, A, chol, loss):
                if self.verbose:
                    printer(iteration, loss - offset)
                if self.callback is not None:
                    self.components_ = components(chol)
                    self.n_features_in_ = d
                    return bool(self.callback(self, iteration, loss - offset))
                return False

            A, chol, loss, n_iter, converged, curve = _minimize_lsml(
                problem, np.eye(d), tol=self._tol, max_iter=self._max_iter,
                on_iteration=on_iteration, forms0=(alpha * dab0, alpha * dcd0),
            )
        if not converged and n_iter >= self._max_iter:
            warnings.warn(
                f"{type(self).__name__} did not converge in max_iter={self._max_iter} "
                f"iterations (gradient norm above tol={self._tol}); increase max_iter.",
                ConvergenceWarning,
            )
        self.components_ = components(chol)
        self.n_iter_ = int(n_iter)
        self.loss_ = float(loss) - offset
        self.loss_curve_ = [float(v) - offset for v in curve]
        self.n_features_in_ = d
        return self


class LSML(QuadrupletsClassifierMixin, _BaseLSML):
    """Least Squared-residual Metric Learning from quadruplets.

    Each quadruplet ``(a, b, c, d)`` states that the pair ``(a, b)`` is
    closer than ``(c, d)``.  LSML learns a Mahalanobis matrix ``M`` (``M =
    L^T L``, ``L`` = ``components_``) minimising the weighted squared
    residual of the violated comparisons, ``sum_q w_q (sqrt(D_ab) -
    sqrt(D_cd))^2`` over quadruplets with ``D_ab > D_cd``, plus the LogDet
    divergence ``tr(M M0^{-1}) - log det M`` to a prior ``M0``.  The
    problem is convex; it is solved by L-BFGS on ``M`` (in coordinates
    whitened by the prior) with a backtracking line search that keeps ``M``
    positive definite; see :mod:`fastmetric._learners.lsml`.

    Parameters
    ----------
    tol : float, default=1e-3
        Stop when the Frobenius norm of the gradient is below it (measured
        in the coordinates whitened by the starting metric ``alpha M0``).
    max_iter : int, default=1000
        Maximum number of iterations.
    prior : {'identity', 'covariance', 'random'} or array of shape \
            (n_features, n_features), default='identity'
        The prior ``M0`` (also the starting point):

        * ``'identity'``: the Euclidean metric;
        * ``'covariance'``: the inverse of the covariance of the distinct
          points of the quadruplets, regularised as ``(C + r I)^{-1}`` with
          ``r = 1e-3 trace(C) / n_features``, so that constant features or
          fewer points than features still give a finite, definite prior;
        * ``'random'``: a random symmetric positive definite matrix
          (``sklearn.datasets.make_spd_matrix`` with ``random_state``);
        * an array: a symmetric positive definite matrix (else a
          ``ValueError``).
    verbose : bool or int, default=False
        Print the objective at each iteration.
    preprocessor : array-like of shape (n_samples, n_features) or callable
        When set, quadruplets may be given as indices ``(n_quadruplets, 4)``
        into it (or passed to it, if callable).
    random_state : int, RandomState instance or None
        Seeds the 'random' prior.
    n_jobs : int, optional
        OpenMP threads of the kernels (None: what OpenMP allows, -1: all
        CPUs).  Results do not depend on it.
    callback : callable, optional
        ``callback(estimator, iteration, loss)`` after each iteration (with
        ``components_`` set to the current iterate); returning True stops
        the fit.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        ``L``, upper triangular, with ``L^T L = M`` the learned matrix.
    n_iter_ : int
        Iterations done.
    loss_ : float
        Final objective.
    loss_curve_ : list of float
        Objective after each iteration.
    classes_ : ndarray of shape (2,)
        ``[-1, 1]``, the values of :meth:`predict`.
    n_features_in_ : int

    Notes
    -----
    The weights are normalised to sum to 1, as in metric-learn, so the
    data term is a weighted mean while the regulariser has weight 1.

    References
    ----------
    Liu, E. Y., Guo, Z., Zhang, X., Jojic, V. and Wang, W. "Metric learning
    from relative comparisons by minimizing squared residual", ICDM 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric import LSML
    >>> quadruplets = np.array([[[1.2, 7.5], [1.3, 1.5], [6.4, 2.6], [6.2, 9.7]],
    ...                         [[1.3, 4.5], [3.2, 4.6], [6.2, 5.5], [5.4, 5.4]],
    ...                         [[3.2, 7.5], [3.3, 1.5], [8.4, 2.6], [8.2, 9.7]],
    ...                         [[3.3, 4.5], [5.2, 4.6], [8.2, 5.5], [7.4, 5.4]]])
    >>> lsml = LSML().fit(quadruplets)
    >>> lsml.predict(quadruplets)
    array([ 1, -1,  1, -1])
    >>> np.diag(lsml.get_mahalanobis_matrix()).round(2)
    array([0.62, 1.  ])
    """

    def __init__(self, tol=1e-3, max_iter=1000, prior="identity", verbose=False,
                 preprocessor=None, random_state=None, n_jobs=None, callback=None):
        self.tol = tol
        self.max_iter = max_iter
        self.prior = prior
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.callback = callback

    def fit(self, quadruplets, weights=None):
        """Learn the metric from quadruplets.

        Parameters
        ----------
        quadruplets : array-like of shape (n_quadruplets, 4, n_features) or \
                (n_quadruplets, 4)
            Quadruplets of points, or of indices into ``preprocessor``,
            each ordered so that ``d(q[0], q[1]) < d(q[2], q[3])`` is the
            statement to learn.
        weights : array-like of shape (n_quadruplets,), optional
            Non-negative weights of the quadruplets (normalised to sum 1);
            default uniform.

        Returns
        -------
        self
        """
        self._validate_params()
        X, quads = check_tuples(quadruplets, 4, self.preprocessor, dedupe=True)
        rng = check_random_state(self.random_state)
        return self._fit_quadruplets(X, quads, weights, rng)


def _n_distinct_pairs(counts, n):
    """Distinct (unordered) positive and negative pairs given class sizes."""
    counts = counts.astype(np.float64)
    positive = float(np.sum(counts * (counts - 1) / 2))
    return positive, float(n) * (n - 1) / 2 - positive


class LSML_Supervised(_BaseLSML):
    """LSML from class labels: quadruplets drawn from the classes, then LSML.

    Each quadruplet joins a *positive* pair (two distinct samples of one
    class) and a *negative* pair (two samples of different classes), stating
    that the positive pair is the closer one.  The pairs are drawn without
    repetition by the parallel sampler
    :func:`fastmetric.pairwise.sample_pairs` (``unique=True``: each pair
    uniform among the distinct pairs of its kind).  A transformer, usable in
    ``Pipeline`` or ``GridSearchCV``.

    Parameters
    ----------
    tol, max_iter, prior, verbose, preprocessor, random_state, n_jobs, callback
        As in :class:`LSML`; ``random_state`` also seeds the sampling.
    n_constraints : int, optional
        Number of quadruplets; default ``20 * n_classes ** 2`` (as
        metric-learn).  When fewer distinct positive or negative pairs exist,
        all of them are used with a warning.
    weights : array-like of shape (n_constraints,), optional
        Weights of the quadruplets (normalised to sum 1); default uniform.

    Attributes
    ----------
    components_, n_iter_, loss_, loss_curve_, n_features_in_
        As in :class:`LSML`.
    n_constraints_ : int
        Number of quadruplets used.
    feature_names_in_ : ndarray of str
        When X has feature names.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastmetric import LSML_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> lsml = LSML_Supervised(n_constraints=200, random_state=0).fit(X, y)
    >>> lsml.transform(X).shape
    (150, 4)
    """

    def __init__(self, tol=1e-3, max_iter=1000, prior="identity", n_constraints=None,
                 weights=None, verbose=False, preprocessor=None, random_state=None,
                 n_jobs=None, callback=None):
        self.tol = tol
        self.max_iter = max_iter
        self.prior = prior
        self.n_constraints = n_constraints
        self.weights = weights
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.callback = callback

    def _points(self, X, y):
        preprocessor = self.preprocessor
        arr = X if hasattr(X, "iloc") or hasattr(X, "toarray") else np.asarray(X)
        if (preprocessor is not None and isinstance(arr, np.ndarray) and arr.ndim == 1
                and arr.dtype.kind in "iu"):
            # Indices into the preprocessor: validate the labels alongside.
            idx = np.column_stack((arr, arr, arr, arr))
            P, idx = check_tuples(idx, 4, preprocessor, name="X")
            y = np.asarray(y)
            if y.ndim != 1 or y.shape[0] != arr.shape[0]:
                raise ValueError(
                    f"y must have shape ({arr.shape[0]},), one label per index of X; "
                    f"got shape {y.shape}."
                )
            self.n_features_in_ = P.shape[1]
            return check_points(P[idx[:, 0]], name="X"), y
        return validate_data(self, X, y, dtype=[np.float64, np.float32], order="C")

    def fit(self, X, y):
        """Draw quadruplets from the classes of ``y`` and learn the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points (or, with a preprocessor, a 1-D array of indices into it).
        y : array-like of shape (n_samples,)
            Class labels: at least 2 classes, one with 2 samples or more.

        Returns
        -------
        self
        """
        from fastmetric.kernels.sampling import sample_pairs

        self._validate_params()
        X, y = self._points(X, y)
        classes, labels, counts = encode_pair_labels(y, type(self).__name__)
        if self.n_constraints is None:
            wanted = 20 * len(classes) ** 2
        else:
            wanted = check_int_param(self.n_constraints, "n_constraints", 1)
        n_pos, n_neg = _n_distinct_pairs(counts, X.shape[0])
        n_q = int(min(wanted, n_pos, n_neg))
        if n_q < wanted:
            warnings.warn(
                f"only {n_q} quadruplets can be formed from distinct pairs ({int(n_pos)} "
                f"positive and {int(n_neg)} negative pairs exist); n_constraints={wanted} "
                "were requested.",
                UserWarning,
            )
        weights = self.weights
        if weights is not None:
            w = np.asarray(weights)
            if w.ndim != 1 or w.shape[0] != n_q:
                raise ValueError(
                    f"weights must have shape (n_constraints,) = ({n_q},), one weight per "
                    f"quadruplet; got shape {w.shape}."
                )
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(0, np.iinfo(np.int32).max))
        pairs, _ = sample_pairs(labels, n_q, n_q, unique=True, random_state=seed,
                                n_jobs=self.n_jobs)
        quads = np.ascontiguousarray(np.hstack((pairs[:n_q], pairs[n_q:])), dtype=np.intp)
        self.n_constraints_ = n_q
        return self._fit_quadruplets(X, quads, weights, rng)
