"""RCA: Relevant Components Analysis (Shental et al., 2002; Bar-Hillel et al., 2005).

Points known to belong together come in *chunklets* (chunks).  The
variation inside a chunk is irrelevant by definition, so RCA whitens it:
with ``C_w`` the average within-chunk covariance (each chunk centred on its
own mean), ``L = C_w^{-1/2}`` and ``M = C_w^{-1}``.  Directions along which
chunk members differ a lot shrink; directions in which they agree grow.

``C_w`` is estimated from few chunks (metric-learn's supervised default is
100 pairs for any number of features), so it is noisy and often singular;
we shrink it toward a multiple of the identity with the Ledoit-Wolf
intensity (see :class:`RCA`).
"""
import warnings
from typing import ClassVar

import numpy as np
import scipy.linalg
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.constraints import chunks_from_labels
from fastmetric._core.covariance import (
    as_float64_centred,
    chunk_residuals,
    fix_signs,
    inv_sqrt,
    shrunk_toward_identity,
)
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import feature_scales, resolve_n_components
from fastmetric._core.inputs import one_per_row, validate_points
from fastmetric._core.params import (
    fit_context,
    integers,
    renamed,
    renamed_value,
    shared,
    store_params,
)

__all__ = ["RCA", "RCA_Supervised"]


def _check_chunks(chunks, n_samples):
    """Validate chunk ids: 1-D integers >= -1, one per sample (-1 = no chunk)."""
    if chunks is None:
        raise ValueError(
            "RCA requires y to be passed, but the target y is None: pass the chunk id of "
            "each sample (-1 for samples in no chunk)."
        )
    if hasattr(chunks, "toarray"):
        raise TypeError("chunks must be a dense 1-D array of integers, not a sparse matrix.")
    arr = np.asarray(chunks)
    if arr.dtype.kind == "O":  # e.g. integers stored as Python objects
        try:
            arr = np.asarray(arr.tolist())
        except (TypeError, ValueError):
            pass
    arr = one_per_row(arr, n_samples, "chunks", "n_samples", "chunk id per sample")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError("chunks contains NaN or infinity; chunk ids are integers.")
        if np.any(arr != np.round(arr)):
            bad = arr[arr != np.round(arr)][0]
            raise ValueError(f"chunks must hold integer chunk ids; got {bad!r}.")
    elif arr.dtype.kind not in "iu":
        raise TypeError(
            f"chunks must hold integer chunk ids (-1 for no chunk); got dtype {arr.dtype} "
            "(Unknown label type)."
        )
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(
            f"chunks holds {int(arr.max())}: chunk ids must fit int64 (at most "
            f"{np.iinfo(np.int64).max}).")
    if arr.dtype.kind == "f" and arr.size and np.abs(arr).max() >= 2.0 ** 63:
        raise ValueError(f"chunks holds {float(np.abs(arr).max())!r}: chunk ids must fit int64.")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < -1:
        raise ValueError(
            f"chunks holds {int(arr.min())}: chunk ids are >= 0, and -1 marks a sample "
            "in no chunk."
        )
    return arr


@shared_docs
class RCA(MahalanobisMixin):
    """Relevant Components Analysis from chunklets of similar points.

    Learns ``L = C_a^{-1/2}`` where ``C_a`` is the shrunk average
    within-chunk covariance (see Notes): the linear map that whitens the
    variation inside the chunks.

    Parameters
    ----------
    n_components : int, optional
        Rows of ``L``; default ``n_features``.  Below ``n_features``, the
        directions with the smallest ratio of within-chunk to total variance
        are kept (a Fisher-like reduction, as in metric-learn), then
        whitened.
    {preprocessor_points}
    shrinkage : float in [0, 1] or {'ledoit_wolf', 'oas'}, default='ledoit_wolf'
        Weight ``a`` of the target ``mu I`` (``mu`` the mean eigenvalue) in
        ``C_a = (1 - a) C_w + a mu I``.  ``'ledoit_wolf'`` / ``'oas'``
        estimate ``a`` from the within-chunk residuals.  ``0`` gives
        metric-learn's RCA (it is raised to 1e-10, so a singular ``C_w``
        still gives a finite, if extreme, metric).
    {feature_scaling}
        RCA: the within-chunk covariance and its shrinkage target are taken
        on the scaled features (without shrinkage the scaling changes only
        rounding: RCA's whitening does not depend on the units).

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    shrinkage_ : float
        The intensity ``a`` of the within-chunk covariance: ``shrinkage``
        itself, or the Ledoit-Wolf / OAS estimate.
    {n_features_in}
    {feature_names_in}

    Notes
    -----
    ``C_w = (1 / N) sum_chunks sum_{i in chunk} (x_i - m_chunk)(x_i -
    m_chunk)^T`` over the ``N`` samples in a chunk (metric-learn's
    normalisation).  It is singular whenever the chunks have fewer degrees
    of freedom (``sum (size - 1)``) than there are features, or a feature
    never varies inside a chunk -- then metric-learn's ``C_w^{-1/2}`` is NaN.

    *Singular and noisy ``C_w``.*  We whiten by ``C_a = (1 - a) C_w + a mu
    I`` instead.  The Ledoit-Wolf intensity ``a`` is estimated from the
    ``sum (size - 1)`` within-chunk residuals (Helmert contrasts: independent
    samples of the within-chunk noise whose outer products sum to the
    chunk scatter); it is large when few chunks are available (about 0.8
    for 100 pairs in 64 dimensions) and falls toward 0 as chunks accumulate
    (a single residual carries no estimate of its own error: ``a = 1``).
    ``C_a`` is positive definite, so ``L`` is finite, real and of full rank;
    directions without within-chunk variance get the largest weight
    ``1 / sqrt(a mu)``.  When ``C_w = 0`` (every chunk's points coincide)
    there is nothing to whiten: ``L`` is the identity, with a warning.

    For ``n_components < n_features``: the generalised eigenvectors of
    ``(C_a, T_a)`` with the smallest eigenvalues, ``T_a`` the total
    covariance of the chunked samples shrunk the same way, scaled to whiten
    ``C_a`` (``L C_a L^T = I``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric import RCA
    >>> X = np.array([[-0.05, 3.0], [0.05, -3.0], [0.1, -3.55], [-0.1, 3.55],
    ...               [-0.95, -0.05], [0.95, 0.05], [0.4, 0.05], [-0.4, -0.05]])
    >>> chunks = [0, 0, 1, 1, 2, 2, 3, 3]
    >>> rca = RCA(shrinkage=0.0).fit(X, chunks)
    >>> rca.components_.shape
    (2, 2)
    """

    _parameter_constraints: ClassVar[dict] = {
        **shared("n_components", "preprocessor", "shrinkage"),
        "feature_scaling": [StrOptions({"auto", "range"}), None],
    }

    def __init__(self, n_components=None, preprocessor=None, shrinkage="ledoit_wolf",
                 feature_scaling="auto"):
        store_params(self, locals())

    @fit_context
    def fit(self, X, chunks):
        """Learn the metric from points and their chunk ids.

        Parameters
        ----------
        {fit_points}
        chunks : array-like of shape (n_samples,)
            ``chunks[i] = j >= 0``: sample i is in chunk j; ``-1``: in no
            chunk.  Chunk ids need not be consecutive.  At least one chunk
            must hold 2 samples.

        {returns_self}
        """
        X = validate_points(self, X, ensure_min_samples=2)
        chunks = _check_chunks(chunks, X.shape[0])
        self._fit_chunks(X, chunks, self.shrinkage)
        return self

    def _fit_chunks(self, X, chunks, shrinkage):
        d = X.shape[1]
        k = resolve_n_components(self.n_components, d)
        # Features in different units: the shrinkage target (a multiple of
        # the identity) would be a multiple of the large features' variance;
        # on X / scales (powers of two, exact) it weighs every feature alike.
        scales = feature_scales(X, self.feature_scaling)
        self.feature_scales_ = scales
        if scales is not None:
            X = X / scales
        Xc, unit = as_float64_centred(X)
        R, n_chunked, n_multi = chunk_residuals(Xc, chunks)
        if n_multi == 0:
            raise ValueError(
                f"{type(self).__name__} needs at least one chunk with 2 or more samples "
                f"(within-chunk variation); got {n_chunked} sample(s) in chunks, none "
                "sharing a chunk."
            )
        Cw = (R.T @ R) / n_chunked
        if not np.trace(Cw) > 0:
            warnings.warn(
                f"{type(self).__name__}: the within-chunk covariance is zero (the points "
                "of every chunk coincide); there is nothing to whiten and the metric is "
                "the identity.",
                UserWarning,
                stacklevel=4,
            )
            self.components_ = np.eye(k, d) if scales is None else np.eye(k, d) / scales
            self.shrinkage_ = 1.0
            return
        Cw_a, a, floor = shrunk_toward_identity(Cw, R, shrinkage)
        if k == d:
            L = inv_sqrt(Cw_a, floor)
        else:
            P = Xc[chunks >= 0]
            P = P - P.mean(axis=0)
            T = (P.T @ P) / max(P.shape[0] - 1, 1)
            if not np.trace(T) > 0:
                T = np.eye(d)
            T_a, _, _ = shrunk_toward_identity(T, P, shrinkage)
            vals, vecs = scipy.linalg.eigh(Cw_a, T_a, subset_by_index=[0, k - 1])
            # Both matrices are positive definite: clip only round-off.
            vals = np.maximum(vals, d * np.finfo(np.float64).eps * np.max(np.abs(vals)))
            L = fix_signs((vecs / np.sqrt(vals)).T)
        L = L / unit
        self.components_ = np.ascontiguousarray(L if scales is None else L / scales)
        self.shrinkage_ = float(a)


@shared_docs
class RCA_Supervised(RCA):
    """RCA from class labels: chunks drawn inside the classes, then RCA.

    ``n_chunks`` disjoint chunks of ``chunk_size`` same-class points are
    drawn by :func:`fastmetric.kernels.chunks.sample_chunks` (each chunk's class
    uniform among the classes that can still supply one), then
    :class:`RCA` is fitted on them.

    Parameters
    ----------
    n_components : int, optional
        As in :class:`RCA`.
    n_chunks : int, optional
        Number of chunks.  Default 100 (metric-learn's), or as many as the
        classes can supply when fewer (class c gives at most ``n_c //
        chunk_size``; metric-learn's default raises an error on fewer than
        200 points).  A given count the classes cannot supply is a
        ValueError saying how many they can.
    chunk_size : int, default=2
        Points per chunk (at least 2).
    preprocessor : array-like or callable, optional
        As in :class:`RCA`.
    random_state : int, RandomState instance or None
        Seed of the chunk sampler (a counter-based generator: the chunks
        depend only on the seed, not on ``n_jobs``).
    shrinkage : float in [0, 1] or {'ledoit_wolf', 'oas'}, default='ledoit_wolf'
        As in :class:`RCA`.
    n_jobs : int, optional
        Threads of the chunk sampler (None: what OpenMP allows, -1: all
        CPUs).  The result does not depend on it.
    feature_scaling : {'auto', 'range'} or None, default='auto'
        As in :class:`RCA`.
    num_chunks : int, default='deprecated'
        metric-learn's old name of ``n_chunks``: a value given here is used
        as ``n_chunks``, with a FutureWarning (as in metric-learn 0.7).

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    shrinkage_ : float
    {n_features_in}
    {feature_names_in}

    Notes
    -----
    Every label is a class (metric-learn's ``Constraints`` instead treats
    negative integer labels as "unknown"; pass only the labelled samples to
    get that behaviour).

    Examples
    --------
    {load_iris}
    >>> from fastmetric import RCA_Supervised
    >>> rca = RCA_Supervised(n_chunks=30, chunk_size=2, random_state=0).fit(X, y)
    >>> rca.transform(X).shape
    (150, 4)
    """

    _parameter_constraints: ClassVar[dict] = {
        **RCA._parameter_constraints,
        **shared("random_state", "n_jobs"),
        "n_chunks": [None, integers(1)],
        "chunk_size": [integers(2)],
        "num_chunks": renamed([integers(1)]),
    }

    def __init__(self, n_components=None, n_chunks=None, chunk_size=2, preprocessor=None,
                 random_state=None, shrinkage="ledoit_wolf", n_jobs=None,
                 feature_scaling="auto", num_chunks="deprecated"):
        store_params(self, locals())

    @fit_context
    def fit(self, X, y):
        """Draw chunks from the classes of ``y`` and learn the RCA metric.

        {fit_labelled_points}
            Classes of at least ``chunk_size`` samples supply the chunks.

        {returns_self}
        """
        X, y = validate_points(self, X, y, ensure_min_samples=2)
        check_classification_targets(y)
        n_chunks = renamed_value(self, "num_chunks", "n_chunks")
        chunks = chunks_from_labels(y, n_chunks, int(self.chunk_size),
                                    random_state=self.random_state, n_jobs=self.n_jobs)
        self._fit_chunks(X, chunks, self.shrinkage)
        return self
