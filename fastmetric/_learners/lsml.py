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
from typing import ClassVar

import numpy as np
import scipy.linalg
from scipy.linalg.lapack import dpotrf, dpotri
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.constraints import quadruplets_from_labels
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import feature_scales, prior_matrix
from fastmetric._core.inputs import check_tuples, rows_in_use, validate_points
from fastmetric._core.objectives.lsml import lsml_start, minimize_lsml
from fastmetric._core.params import (
    fit_context,
    options_or_array,
    renamed_value,
    shared,
    store_params,
)
from fastmetric._core.solvers import IterationPrinter
from fastmetric._core.threads import effective_n_threads
from fastmetric._core.tuples import QuadrupletsClassifierMixin
from fastmetric._core.validation import caller_stacklevel, check_weights

__all__ = ["LSML", "LSML_Supervised"]

_PRIORS = ("identity", "covariance", "random")


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
        raise np.linalg.LinAlgError(
            f"{name} must be symmetric positive definite (its Cholesky factorisation "
            "fails); LSML's LogDet regulariser needs a definite prior."
        )
    inv, info = dpotri(c, lower=1)
    if info != 0:  # pragma: no cover - dpotrf succeeded
        raise ValueError(f"{name} could not be inverted.")
    return np.tril(inv) + np.tril(inv, -1).T


def _resolve_prior(prior, X, rng):
    """``(M0, M0^{-1})`` for a prior name, array or fitted learner, both float64 (d, d).

    LSML's data-driven priors are computed here; 'identity', arrays and
    fitted learners are checked by the core's :func:`prior_matrix`, as for
    every learner with a prior.
    """
    d = X.shape[1]
    if isinstance(prior, str) and prior == "identity":
        return np.eye(d), np.eye(d)
    if isinstance(prior, str) and prior == "covariance":
        P = _covariance_prior(X)
        return _inverse_spd(P, "the regularised covariance"), P
    if isinstance(prior, str) and prior == "random":
        from sklearn.datasets import make_spd_matrix

        M0 = make_spd_matrix(d, random_state=rng)
        M0 = 0.5 * (M0 + M0.T)
        return M0, _inverse_spd(M0, "the random prior")
    M0 = prior_matrix(prior, d, "LSML", _PRIORS)
    return M0, _inverse_spd(M0, "prior")


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
    w = check_weights(weights, n_q, "weights", unit="quadruplet")
    return np.ascontiguousarray(w / w.sum())


class _BaseLSML(MahalanobisMixin):
    """Parameter checks and the fit on index quadruplets, shared by both forms."""

    _parameter_constraints: ClassVar[dict] = {
        **shared("tol", "max_iter", "verbose", "preprocessor", "random_state", "n_jobs",
                 "callback"),
        "prior": options_or_array(*_PRIORS, learner=True),
        "feature_scaling": [StrOptions({"auto", "range"}), None],
    }

    def _fit_quadruplets(self, X, quads, weights, rng):
        """Fit M on index quadruplets ``quads`` (n_q, 4) into the points X."""
        n_threads = effective_n_threads(self.n_jobs)
        n_q = quads.shape[0]
        w = (np.full(n_q, 1.0 / n_q) if weights is None else _check_weights(weights, n_q))
        # Only the points that occur in a quadruplet matter (the covariance
        # prior too, as in metric-learn): compact them once, in float64 (the
        # d x d algebra and the log-det are precision sensitive).
        X, quads = rows_in_use(X, quads)
        X = np.ascontiguousarray(X, dtype=np.float64)
        quads = np.ascontiguousarray(quads, dtype=np.intp)
        d = X.shape[1]
        # Features in different units, with a named prior: M is learned on
        # X / scales (powers of two, exact), where the prior weighs every
        # feature alike, and its factor mapped back to the raw features.
        scales = feature_scales(X, self.feature_scaling) if isinstance(self.prior, str) else None
        self.feature_scales_ = scales
        if scales is not None:
            X = X / scales

        M0, _ = _resolve_prior(self.prior, X, rng)
        # Start at the best multiple alpha M0 of the prior, whitened by it
        # (see lsml_start).
        problem, R, offset, forms0 = lsml_start(X, quads, w, M0, n_threads)
        printer = IterationPrinter(type(self).__name__)

        def components(chol):
            # A = C C^T (C lower): L = C^T R gives L^T L = R^T A R = M.
            L = np.triu(chol.T) @ R
            return np.ascontiguousarray(L if scales is None else L / scales)

        def on_iteration(iteration, A, chol, loss):
            if self.verbose:
                printer(iteration, loss - offset)
            if self.callback is not None:
                self.components_ = components(chol)
                self.n_features_in_ = d
                return bool(self.callback(self, iteration, loss - offset))
            return False

        A, chol, loss, n_iter, converged, curve = minimize_lsml(
            problem, np.eye(d), tol=self.tol, max_iter=self.max_iter,
            on_iteration=on_iteration, forms0=forms0,
        )
        if not converged and n_iter >= self.max_iter:
            warnings.warn(
                f"{type(self).__name__} did not converge in max_iter={self.max_iter} "
                f"iterations (gradient norm above tol={self.tol}); increase max_iter.",
                ConvergenceWarning,
                stacklevel=caller_stacklevel(),
            )
        self.components_ = components(chol)
        self.n_iter_ = int(n_iter)
        self.loss_ = float(loss) - offset
        self.loss_curve_ = [float(v) - offset for v in curve]
        self.n_features_in_ = d
        return self


@shared_docs
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
    prior : {'identity', 'covariance', 'random'}, array of shape \
            (n_features, n_features) or fitted learner, default='identity'
        The prior ``M0`` (also the starting point):

        * ``'identity'``: the Euclidean metric;
        * ``'covariance'``: the inverse of the covariance of the distinct
          points of the quadruplets, regularised as ``(C + r I)^{-1}`` with
          ``r = 1e-3 trace(C) / n_features``, so that constant features or
          fewer points than features still give a finite, definite prior;
        * ``'random'``: a random symmetric positive definite matrix
          (``sklearn.datasets.make_spd_matrix`` with ``random_state``);
        * an array: a symmetric positive definite matrix (else a
          ``ValueError``);
        * a fitted learner: its Mahalanobis matrix (checked as every
          learner's prior, see :func:`fastmetric._core.init.prior_matrix`).
    {verbose_objective}
    preprocessor : array-like of shape (n_samples, n_features) or callable
        When set, quadruplets may be given as indices ``(n_quadruplets, 4)``
        into it (or passed to it, if callable).
    random_state : int, RandomState instance or None
        Seeds the 'random' prior.
    {n_jobs_kernels}
    {callback_iterate}
    {feature_scaling}
        LSML: with a named ``prior``, M is learned on the scaled features
        (the prior weighs each alike), then mapped to the raw ones.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        ``L``, upper triangular, with ``L^T L = M`` the learned matrix.
    {loss_history}
    classes_ : ndarray of shape (2,)
        ``[-1, 1]``, the values of :meth:`predict`.
    {n_features_in}

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
                 preprocessor=None, random_state=None, n_jobs=None, callback=None,
                 feature_scaling="auto"):
        store_params(self, locals())

    @fit_context
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

        {returns_self}
        """
        X, quads = check_tuples(quadruplets, 4, self.preprocessor, dedupe=True)
        rng = check_random_state(self.random_state)
        return self._fit_quadruplets(X, quads, weights, rng)


@shared_docs
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
    tol, max_iter, prior, verbose, preprocessor, random_state, n_jobs, callback, \
feature_scaling
        As in :class:`LSML`; ``random_state`` also seeds the sampling.
    n_constraints : int, optional
        Number of quadruplets; default ``20 * n_classes ** 2`` (as
        metric-learn).  When fewer distinct positive or negative pairs exist,
        all of them are used with a warning.
    weights : array-like of shape (n_constraints,), optional
        Weights of the quadruplets (normalised to sum 1); default uniform.
    {num_constraints}

    Attributes
    ----------
    components_, n_iter_, loss_, loss_curve_, n_features_in_
        As in :class:`LSML`.
    n_constraints_ : int
        Number of quadruplets used.
    {feature_names_in}

    Examples
    --------
    {load_iris}
    >>> from fastmetric import LSML_Supervised
    >>> lsml = LSML_Supervised(n_constraints=200, random_state=0).fit(X, y)
    >>> lsml.n_constraints_  # quadruplets drawn from the labels
    200
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseLSML._parameter_constraints,
        **shared("n_constraints", "num_constraints"),
        "weights": [None, "array-like"],
    }

    def __init__(self, tol=1e-3, max_iter=1000, prior="identity", n_constraints=None,
                 weights=None, verbose=False, preprocessor=None, random_state=None,
                 n_jobs=None, callback=None, feature_scaling="auto",
                 num_constraints="deprecated"):
        store_params(self, locals())

    def _points(self, X, y):
        """Validated points and labels; X may be identifiers of preprocessor rows."""
        return validate_points(self, X, y)

    @fit_context
    def fit(self, X, y):
        """Draw quadruplets from the classes of ``y`` and learn the metric.

        {fit_labelled_points}
            At least 2 classes, one with 2 samples or more.

        {returns_self}
        """
        X, y = self._points(X, y)
        # One RandomState: the quadruplets' seed first, then prior='random'.
        rng = check_random_state(self.random_state)
        n_constraints = renamed_value(self, "num_constraints", "n_constraints")
        quads = quadruplets_from_labels(y, n_constraints, rng, type(self).__name__,
                                        n_jobs=self.n_jobs)
        n_q = quads.shape[0]
        weights = self.weights
        if weights is not None:
            w = np.asarray(weights)
            if w.ndim != 1 or w.shape[0] != n_q:
                raise ValueError(
                    f"weights must have shape (n_constraints,) = ({n_q},), one weight per "
                    f"quadruplet; got shape {w.shape}."
                )
        self.n_constraints_ = n_q
        return self._fit_quadruplets(X, quads, weights, rng)
