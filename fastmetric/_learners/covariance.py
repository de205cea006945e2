"""Covariance: the Mahalanobis metric of the (shrunk) inverse covariance.

The baseline metric of Mahalanobis (1936): ``M = C^{-1}`` for the covariance
``C`` of the data, which measures distances in units of the data's own
spread and correlations.  The sample covariance is singular for constant
features, collinear features or fewer samples than features, and its
smallest eigenvalues are noise that the inverse amplifies; we therefore
invert a *shrunk* covariance (see :class:`Covariance`).

The statistics (shrunk covariance, constant features, symmetric inverse
square roots, shared with RCA and LFDA) are in :mod:`fastmetric._core.covariance`.
"""
from typing import ClassVar

import numpy as np

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.covariance import shrunk_inverse_covariance
from fastmetric._core.docs import shared_docs
from fastmetric._core.inputs import validate_points
from fastmetric._core.params import fit_context, shared, store_params

__all__ = ["Covariance"]

# --------------------------------------------------------------------------
# Covariance
# --------------------------------------------------------------------------
@shared_docs
class Covariance(MahalanobisMixin):
    """Mahalanobis metric of the inverse (shrunk) covariance of the data.

    A baseline that learns nothing from labels: ``M = C_a^{-1}`` where
    ``C_a`` is the covariance of ``X`` shrunk toward its own diagonal,

        ``C_a = (1 - a) C + a diag(C)``,

    i.e. the correlation matrix ``R`` is shrunk toward the identity,
    ``R_a = (1 - a) R + a I``, and ``M = D^{-1/2} R_a^{-1} D^{-1/2}`` with
    ``D = diag(C)``.  With ``a = shrinkage = 0`` this is the plain inverse
    covariance (metric-learn's ``Covariance``), with ``a = 1`` the
    standardised Euclidean distance.

    Parameters
    ----------
    {preprocessor_points}
    shrinkage : float in [0, 1] or {'ledoit_wolf', 'oas'}, default=0.7
        Weight ``a`` of the diagonal target.  ``'ledoit_wolf'`` / ``'oas'``
        estimate it from the standardised data with scikit-learn's
        Ledoit-Wolf / Oracle Approximating Shrinkage formulas (which aim at
        the best *covariance* estimate, not the best metric: they shrink
        little when ``n_samples >> n_features``).  The default 0.7 is chosen
        for nearest-neighbour use: the small eigenvalues of ``C`` are mostly
        noise, and their inverse dominates ``C^{-1}``.  On standardised
        digits (70/30 stratified split, ``random_state=0``) 3-NN accuracy
        is 0.950 with ``a = 0`` (as metric-learn), 0.957 with Ledoit-Wolf,
        0.974 with ``a = 0.7`` (Euclidean: 0.980).
        Values below 1e-10 are raised to 1e-10, so that a singular ``C``
        still gives a finite metric.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        ``L = R_a^{-1/2} D^{-1/2}`` (so ``L^T L = M`` and ``transform``
        whitens the data when ``a = 0``).
    covariance_ : ndarray of shape (n_features, n_features)
        The shrunk covariance ``C_a`` (``M = covariance_^{-1}``).
    shrinkage_ : float
        The intensity ``a`` used: ``shrinkage`` itself, or the estimate of
        the ``'ledoit_wolf'`` / ``'oas'`` rule.
    {n_features_in}
    {feature_names_in}

    Notes
    -----
    *Constant features* (no variation at the input's precision) have no
    variance to divide by: each gets, in ``D``, the mean variance of the
    non-constant features and no correlation with the
    others -- it weighs like a typical feature rather than infinitely.  When
    every feature is constant the metric is the identity.
    Shrinking toward ``diag(C)`` (not a multiple of the identity) keeps the
    metric independent of the units of each feature, like the exact inverse
    covariance: rescaling a feature rescales ``L``'s column and leaves the
    distances unchanged.  The covariance is the unbiased one (``n - 1``), as
    in metric-learn.  Fit costs O(n d^2 + d^3).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastmetric import Covariance
    >>> X, _ = load_iris(return_X_y=True)
    >>> cov = Covariance(shrinkage=0.0).fit(X)
    >>> import numpy as np
    >>> bool(np.allclose(cov.get_mahalanobis_matrix(), np.linalg.inv(np.cov(X.T))))
    True
    >>> Covariance().fit(X).transform(X).shape
    (150, 4)
    """

    _parameter_constraints: ClassVar[dict] = shared("preprocessor", "shrinkage")

    def __init__(self, preprocessor=None, shrinkage=0.7):
        store_params(self, locals())

    @fit_context
    def fit(self, X, y=None):
        """Compute the shrunk covariance of ``X`` and its inverse as the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            At least 2 samples.  With a preprocessor, a 1-D array of indices.
        y : ignored

        {returns_self}
        """
        X = validate_points(self, X, ensure_min_samples=2)
        L, C_a, a = shrunk_inverse_covariance(X, self.shrinkage)
        self.components_ = np.ascontiguousarray(L)
        self.covariance_ = C_a
        self.shrinkage_ = a
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags
