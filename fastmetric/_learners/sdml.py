"""SDML: Sparse Determinant Metric Learning (Qi, Tang, Zha, Chua & Zhang, 2009).

SDML learns a sparse Mahalanobis matrix M close, in LogDet divergence, to
a prior M0 while keeping similar pairs close and dissimilar pairs apart:

    min_{M > 0}  tr(M P) - log det M + sparsity_param ||M||_{1, off-diagonal},
    P = M0^{-1} + balance_param * X^T K X,

where ``X^T K X = sum_p y_p d_p d_p^T`` (``d_p = x_a - x_b``, ``y_p = +1``
for a similar pair, ``-1`` for a dissimilar one) is one call of the signed
pair-scatter kernel :func:`fastmetric.kernels.pair_scatter.pair_scatter`.  This is
the graphical lasso with "empirical covariance" P, solved by scikit-learn's
:func:`sklearn.covariance.graphical_lasso`.

The graphical lasso needs P positive definite, which it often is not (the
dissimilar pairs' term dominates on real data, e.g. digits).  Rule: P is
replaced by ``P + s I`` with the smallest ``s >= 0`` such that the
condition number of the result is at most ``max_condition``
(``s = max(0, (l_max - k l_min) / (k - 1))`` for eigenvalues ``l`` of P and
``k = max_condition``).  A shift by a multiple of the identity keeps the
eigenvectors of P and their order, so the directions the pairs favour stay
favoured; bounding the condition number keeps the learned metric from
collapsing onto the single most discriminative direction.  If the graphical
lasso fails (an error, a non-finite or non-positive-definite result) the
unpenalised solution ``M = (P + s I)^{-1}`` is used instead, with a
``ConvergenceWarning``.
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
from fastmetric._core.init import feature_scales, prior_matrix
from fastmetric._core.pairs import PairsClassifierMixin, PairsFromLabelsMixin
from fastmetric._core.params import (
    fit_context,
    options_or_array,
    reals,
    shared,
    store_params,
)
from fastmetric._core.threads import effective_n_threads, threads_for_work
from fastmetric._core.validation import caller_stacklevel, check_finite_result
from fastmetric.kernels.pair_scatter import pair_scatter

__all__ = ["SDML", "SDML_Supervised"]

_PRIORS = ("identity", "covariance", "random")
# The graphical lasso stops when its dual gap, tr(P M) - d + alpha ||M||_off
# (scale-free: P and M = P^-1 scale inversely), is below this (scikit-learn's
# default).  Each outer iteration solves d lasso problems by coordinate
# descent to ``enet_tol``; with scikit-learn's default enet_tol = tol the
# inexact inner solves leave a gap of about 2 tol that no further outer
# iteration removes (seen on ionosphere, sonar, wdbc: the gap stalls at
# 2e-4 for 1000 iterations), so the inner tolerance must be finer than the
# outer one: SDML's default enet_tol is 1e-6 (tol / 100), with which those
# fits stop after 2-4 iterations.
_GLASSO_TOL = 1e-4


def shifted_for_condition(P, max_condition):
    """``(P + s I, s)`` with the smallest ``s >= 0`` giving cond <= max_condition.

    ``P`` is symmetric.  When all its eigenvalues equal some c <= 0 the
    result is ``max(|c|, 1) I``.
    """
    lam = np.linalg.eigvalsh(P)
    lo, hi = float(lam[0]), float(lam[-1])
    k = float(max_condition)
    shift = max(0.0, (hi - k * lo) / (k - 1.0))
    if not hi + shift > 1e-12 * max(abs(lo), abs(hi)):
        # One eigenvalue c <= 0 (P = c I, e.g. a single feature): no
        # condition number to bound; P becomes max(|c|, 1) I.
        shift = max(abs(lo), 1.0) - lo
    return P + shift * np.eye(P.shape[0]), shift


def _components_from_metric(M):
    lam, V = np.linalg.eigh(0.5 * (M + M.T))
    return np.ascontiguousarray(np.sqrt(np.maximum(lam, 0.0))[:, None] * V.T)


class _BaseSDML(MahalanobisMixin):

    _parameter_constraints: ClassVar[dict] = {
        **shared("max_iter", "verbose", "random_state", "n_jobs"),
        "balance_param": [reals(0)],
        "sparsity_param": [reals(0)],
        # Above 1: a condition number of 1 would leave only multiples of I.
        "max_condition": [reals(1, closed="neither")],
        "enet_tol": [reals(0, closed="neither")],
        "prior": options_or_array(*_PRIORS, learner=True),
        "feature_scaling": [StrOptions({"auto", "range"}), None],
    }

    def _prior_inverse(self, X, rng):
        """M0^{-1} for the prior."""
        d = X.shape[1]
        prior = self.prior
        if isinstance(prior, str) and prior == "covariance":
            # M0 = Cov^{-1}, so M0^{-1} is the covariance itself (PSD; the
            # condition rule below makes P definite if it is singular).
            if X.shape[0] < 2:
                return np.eye(d)
            return np.cov(X.astype(np.float64, copy=False), rowvar=False).reshape(d, d)
        if isinstance(prior, str) and prior == "random":
            A = rng.standard_normal((d, d))
            return A @ A.T + np.eye(d)  # a random SPD M0^{-1}
        if isinstance(prior, str) and prior == "identity":
            return np.eye(d)
        # Arrays and fitted learners: checked by the core, as for every
        # learner with a prior (M0 comes back exactly symmetric and definite).
        M0 = prior_matrix(prior, d, "SDML", _PRIORS)
        lam, V = np.linalg.eigh(M0)
        return (V / lam) @ V.T

    def _fit_pairs(self, X, a, b, similar):
        """Fit on index pairs (a, b) into X, ``similar`` True / False per pair."""
        signs = np.where(similar, 1.0, -1.0)
        rng = check_random_state(self.random_state)
        n_threads = effective_n_threads(self.n_jobs)
        d = X.shape[1]
        # Features in different units, with a named prior: the metric is
        # learned on X / scales (powers of two, exact), where the prior, the
        # balance of prior and pairs and the l1 penalty weigh every feature
        # alike, and its factor mapped back to the raw features.
        scales = feature_scales(X, self.feature_scaling) if isinstance(self.prior, str) else None
        self.feature_scales_ = scales
        if scales is not None:
            X = X / scales
        n_threads = threads_for_work(n_threads, a.shape[0] * d * min(d, 64), 1 << 20)
        K = pair_scatter(X, a, b, np.ascontiguousarray(signs, dtype=np.float64),
                         np.empty((d, d)), n_threads)
        P = self._prior_inverse(X, rng) + float(self.balance_param) * K
        # Differences near 1e155 and beyond overflow the scatter: NaN metric.
        check_finite_result(P, X, what="SDML's pair scatter")
        P = 0.5 * (P + P.T)
        P_shifted, shift = shifted_for_condition(P, self.max_condition)
        self.shift_ = float(shift)
        M = self._graphical_lasso(P_shifted)
        L = _components_from_metric(M)
        self.components_ = L if scales is None else np.ascontiguousarray(L / scales)
        self.n_features_in_ = d
        return self

    def _graphical_lasso(self, P):
        from sklearn.covariance import graphical_lasso

        d = P.shape[0]
        self.n_iter_ = 1
        if d == 1 or self.sparsity_param == 0:
            # One feature has no off-diagonal entry; no penalty: the inverse.
            self.glasso_failed_ = False
            return np.linalg.inv(P)
        error = None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                _, M, n_iter = graphical_lasso(P, alpha=float(self.sparsity_param),
                                               max_iter=int(self.max_iter),
                                               tol=_GLASSO_TOL, enet_tol=float(self.enet_tol),
                                               verbose=bool(self.verbose), return_n_iter=True)
            self.n_iter_ = max(1, int(n_iter))
            M = 0.5 * (M + M.T)
            if not np.isfinite(M).all():
                error = "a non-finite result"
            elif np.linalg.eigvalsh(M)[0] <= 0:
                error = "a result that is not positive definite"
            elif any(issubclass(w.category, ConvergenceWarning) for w in caught):
                warnings.warn(
                    f"graphical_lasso did not converge in max_iter={self.max_iter} "
                    "iterations; its last iterate (finite, positive definite) is used.",
                    ConvergenceWarning, stacklevel=caller_stacklevel(),
                )
        except (FloatingPointError, ValueError, np.linalg.LinAlgError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.glasso_failed_ = error is not None
        if error is None:
            return M
        warnings.warn(
            f"graphical_lasso failed ({error}); using the unpenalised solution "
            "M = (P + shift I)^{-1} instead. A larger sparsity_param or a smaller "
            "max_condition usually lets the graphical lasso converge.",
            ConvergenceWarning, stacklevel=caller_stacklevel(),
        )
        lam, V = np.linalg.eigh(P)
        return (V / lam) @ V.T


@shared_docs
class SDML(PairsClassifierMixin, _BaseSDML):
    """Sparse Determinant Metric Learning from labelled pairs.

    Solves the graphical lasso on ``P = M0^{-1} + balance_param * sum_p
    y_p d_p d_p^T`` (see the module notes for the positive-definiteness
    rule).

    Parameters
    ----------
    balance_param : float, default=0.5
        Weight of the pair term against the prior.
    sparsity_param : float, default=0.01
        L1 penalty of the off-diagonal entries of M (``alpha`` of the
        graphical lasso).
    prior : {'identity', 'covariance', 'random'} or array, default='identity'
        The prior metric M0: the identity, the inverse covariance of the
        points, a random SPD matrix, or a symmetric positive definite array
        (or a fitted learner, whose metric is used).
    max_condition : float > 1, default=3.0
        Largest condition number allowed for P before the graphical lasso:
        P is shifted by the smallest multiple of the identity achieving it.
        The pair term is a difference of two sums of few pairs (80 of each
        kind on two classes), a noisy estimate: the larger the condition
        number allowed, the further its noise stretches the metric.  Over
        the 21 sets of ``benchmarks/quality_uci.py`` the 3-NN accuracy with
        SDML_Supervised is 0.0004 below the Euclidean distance's on average
        at 3 (five draws of the folds); at 10 it was 0.012 below on the
        first draw (monk-2 -0.072, texture -0.045) and 0.007 below on three
        others, and at 100 0.042 below on the first draw, where 17 of the
        21 sets raised ConvergenceWarnings.
    max_iter : int, default=100
        Iterations of the graphical lasso.
    enet_tol : float > 0, default=1e-6
        Tolerance of the coordinate descent inside each graphical-lasso
        iteration (scikit-learn's ``enet_tol``).  It is finer than the
        graphical lasso's own tolerance on its dual gap (1e-4), which inner
        solves only as precise as 1e-4 cannot reach (the gap stalls near
        2e-4 and the fit ends at ``max_iter`` with a ConvergenceWarning);
        ``enet_tol=1e-4`` is scikit-learn's default, which metric-learn uses.
    verbose : bool, default=False
    {preprocessor_pairs}
    random_state : int, RandomState instance or None
        Seeds ``prior='random'``.
    n_jobs : int, default=None
        OpenMP threads of the scatter kernel; results do not depend on it.
    {feature_scaling}
        SDML: with a named ``prior``, the metric is learned on the scaled
        features (prior, pairs and l1 penalty), then mapped to the raw ones.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        ``L`` with ``M = L^T L``.
    shift_ : float
        The multiple of the identity added to P.
    glasso_failed_ : bool
        True when the graphical lasso failed and the inverse was used.
    n_iter_ : int
        Iterations of the graphical lasso (1 for the closed forms).
    {pair_decision}
    {n_features_in}

    Examples
    --------
    {random_pairs}
    >>> from fastmetric import SDML
    >>> sdml = SDML(preprocessor=X).fit(pairs, y)
    >>> sdml.predict(pairs[:4])  # +1: similar, -1: dissimilar
    array([ 1, -1, -1, -1])
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseSDML._parameter_constraints, **shared("preprocessor")}

    def __init__(self, balance_param=0.5, sparsity_param=0.01, prior="identity",
                 verbose=False, preprocessor=None, random_state=None, max_condition=3.0,
                 max_iter=100, n_jobs=None, enet_tol=1e-6, feature_scaling="auto"):
        store_params(self, locals())

    @fit_context
    def fit(self, pairs, y, calibration_params=None):
        """Learn the metric from pairs labelled +1 / -1 (or 1 / 0): similar / dissimilar.

        {fit_hard_pairs}

        {returns_self}
        """
        return self._fit_hard_pairs(pairs, y, calibration_params, both_kinds=False)


@shared_docs
class SDML_Supervised(PairsFromLabelsMixin, _BaseSDML, TransformerMixin):
    """SDML from class labels: pairs drawn from the classes, then SDML.

    ``n_constraints`` similar and as many dissimilar pairs are drawn with
    :func:`fastmetric.kernels.sampling.sample_pairs`.

    Parameters
    ----------
    balance_param, sparsity_param, prior, max_condition, max_iter, enet_tol, \
verbose, random_state, n_jobs, feature_scaling
        As in :class:`SDML`.
    {n_constraints}
    {preprocessor_points}
    {num_constraints}

    Attributes
    ----------
    components_, shift_, glasso_failed_, n_iter_, n_features_in_
        As in :class:`SDML`.

    Examples
    --------
    A metric learner is a transformer: before a k-NN classifier in a
    pipeline, the classifier works in the learned metric.

    {load_iris}
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from fastmetric import SDML_Supervised
    >>> model = make_pipeline(SDML_Supervised(random_state=0),
    ...                       KNeighborsClassifier(n_neighbors=3)).fit(X, y)
    >>> round(model.score(X, y), 2)
    0.97
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseSDML._parameter_constraints,
        **shared("n_constraints", "preprocessor", "num_constraints")}

    def __init__(self, balance_param=0.5, sparsity_param=0.01, prior="identity",
                 n_constraints=None, verbose=False, preprocessor=None, random_state=None,
                 max_condition=3.0, max_iter=100, n_jobs=None, enet_tol=1e-6,
                 feature_scaling="auto", num_constraints="deprecated"):
        store_params(self, locals())
