"""ClusterLDML: unsupervised metric learning by alternating k-means and LDML.

With no labels at all, ClusterLDML lets a clustering supply the pair
constraints that LDML needs, and lets the learned metric improve the
clustering in turn.  Starting from an initial map ``L`` (``init``,
``normalize``), each round

1. clusters the embedded points ``Z = X L^T`` into ``n_clusters`` groups with
   k-means (:class:`~sklearn.cluster.KMeans`, or
   :class:`~sklearn.cluster.MiniBatchKMeans` for large ``n``): k-means++
   restarts the first time, then a single run started from the means of the
   previous clusters, so that the clustering follows the metric smoothly;
2. for every group ``g`` learns a metric ``M_g = L_g^T L_g`` with
   LDML (:mod:`fastmetric._core.objectives.ldml`) started from the current ``L``, from pairs
   drawn inside ``g`` (similar) and between ``g`` and the other groups
   (dissimilar), with :func:`~fastmetric.kernels.sampling.sample_pairs` and
   ``anchor_label=g``;
3. moves the global metric toward the size-weighted combination of the
   group metrics,

       M_new = (1 - r) M + r sum_g (n_g / n) M_g,       r = update_rate,

   and keeps the ``n_components`` leading eigen-directions of ``M_new``;
4. re-clusters in the new metric and stops when the adjusted Rand index
   between two consecutive clusterings exceeds ``tol`` (the clustering no
   longer moves), or after ``max_rounds`` rounds.

Pseudo-labels are noisy near the cluster boundaries, and a metric learned
from them tends to confirm them; the damped update (``update_rate``), the
spread normalisation below and the truncated LDML fits (``ldml_max_iter``)
keep each round a moderate step.

Scale.  LDML fixes the scale of each ``L_g`` through its bias (it rescales
its initial map to fit the pairs), so the raw ``M_g`` of two groups are in
unrelated units and the largest would dominate the sum.  Every ``M_g`` is
therefore rescaled to the same total spread as the current metric, ``tr(M_g
C) = tr(M C)`` with ``C`` the covariance of the points (``2 tr(M C)`` is the
mean squared learned distance between two points); the combination is then
a convex mixture of metrics of equal spread.  k-means and the learned
neighbourhoods do not depend on a global scale, which is fixed at the end
(see ``components_``).

Truncation.  ``M_new = B^T B`` with ``B`` the rows ``sqrt(1 - r) L`` and
``sqrt(r w_g) L_g`` stacked, so the eigen-directions of ``M_new`` are the
right singular vectors of ``B``: a thin SVD of ``B`` (``(n_clusters + 1) k``
by ``d``) gives the new ``L = diag(s_1..s_k) V_k^T`` without forming the
``d x d`` matrix, and is better conditioned than an eigendecomposition of
``B^T B``.
"""
import time
import warnings
from typing import ClassVar

import numpy as np
import scipy.linalg
from sklearn.base import ClusterMixin, _fit_context, clone
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import validate_data
from threadpoolctl import threadpool_limits

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.cluster_rows import (
    DaskRows,
    MemoryRows,
    lloyd,
    nearest_centers,
)
from fastmetric._core.cluster_rows import cluster_means as _cluster_means
from fastmetric._core.cluster_rows import nearest_center as _nearest_center
from fastmetric._core.constraints import label_pairs, split_pair_count
from fastmetric._core.covariance import fix_signs
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import initialize_components
from fastmetric._core.inputs import check_pair_targets
from fastmetric._core.memory import check_memory
from fastmetric._core.objectives.ldml import fit_ldml
from fastmetric._core.params import integers, options_or_array, reals, shared, store_params
from fastmetric._core.rows import l2_normalize_rows
from fastmetric._core.solvers import IterationPrinter, warn_interrupted
from fastmetric._core.threads import effective_n_threads, single_threaded_blas

__all__ = ["ClusterLDML"]

_KMEANS_NAMES = ("auto", "kmeans", "minibatch", "lloyd")
# 'auto' switches to MiniBatchKMeans above this many samples: full Lloyd
# iterations cost O(n k d) per iteration and n_init restarts per round.
_MINIBATCH_THRESHOLD = 20_000
# Restarts of the first KMeans (k-means++ seeding each time); later rounds
# start from the previous clusters.  Restarts make the first pseudo-labels,
# which every later round refines, less dependent on one unlucky seeding.
_KMEANS_N_INIT = 10
# Tolerance of each cluster's LDML fit (LDML's default).
_LDML_TOL = 1e-5


def _combine(L, group_maps, weights, rate, n_components):
    """Leading ``n_components`` directions of ``(1-r) L^T L + r sum_g w_g L_g^T L_g``.

    Returns ``L_new`` with ``L_new^T L_new`` the best rank-``n_components``
    approximation of the mixture (a thin SVD of the stacked square roots).
    """
    blocks = [np.sqrt(1.0 - rate) * L] if rate < 1.0 else []
    blocks += [np.sqrt(rate * w) * Lg for Lg, w in zip(group_maps, weights)]
    B = np.vstack(blocks)
    _, s, Vt = scipy.linalg.svd(B, full_matrices=False, lapack_driver="gesdd")
    k = n_components
    s = s[:k]
    # Singular vectors are defined up to sign; fixed signs make components_ a
    # function of the metric alone (M = L^T L does not change).
    Vt = fix_signs(Vt[:k])
    L_new = s[:, None] * Vt
    if L_new.shape[0] < k:  # fewer stacked rows than components (tiny inputs)
        L_new = np.vstack([L_new, np.zeros((k - L_new.shape[0], L.shape[1]))])
    return np.ascontiguousarray(L_new)


@shared_docs
class ClusterLDML(ClusterMixin, MahalanobisMixin):
    """Unsupervised metric learning: k-means pseudo-labels refined by LDML.

    Alternates k-means in the current metric with one LDML per cluster
    (similar pairs inside the cluster, dissimilar pairs between it and the
    rest), then moves the global Mahalanobis matrix toward the size-weighted
    mean of the cluster metrics; stops when the clustering stabilises.  See
    the module docstring for the mathematics.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of groups (k-means clusters); at least 2.
    {n_components}
    init : {'auto', 'identity', 'pca', 'covariance', 'random'}, array or \
            fitted learner, default='auto'
        The pre-trained metric to start from; see
        :func:`fastmetric._core.init.initialize_components`.  ``'auto'`` is
        ``'pca'`` when ``n_components < n_features``, else ``'identity'``
        (``'lda'`` needs labels and is refused).
    normalize : bool, default=False
        L2-normalise the points first (cosine geometry), in fit, transform,
        predict and every distance.
    n_pairs_per_cluster : int, optional
        Pairs drawn for each cluster's LDML.  Default ``min(2000, max(100,
        10 n_g))`` for a cluster of ``n_g`` points.
    positive_fraction : float in (0, 1), default=0.3
        Share of similar pairs (inside the cluster) among them; the rest are
        dissimilar pairs (the cluster against the others).  On digits, 0.3
        gave clearer gains than 0.5: the informative dissimilar pairs are
        the few near the cluster boundaries, so more of them are drawn.
    update_rate : float in (0, 1], default=0.5
        Step ``r`` toward the combined cluster metrics.  Small steps keep
        the metric from chasing one round's (noisy) pseudo-labels.
    max_rounds : int, default=10
        Maximum number of metric updates.
    tol : float in [0, 1], default=0.99
        Stop when the adjusted Rand index between the clusterings before
        and after an update exceeds ``tol``.  ``tol=1.0`` runs all
        ``max_rounds`` rounds: a stable clustering does not mean that the
        metric has stopped moving, and later rounds may still change it.
    kmeans : {'auto', 'kmeans', 'minibatch', 'lloyd'} or estimator, default='auto'
        The clustering step: ``'kmeans'`` is scikit-learn's ``KMeans``
        (10 k-means++ restarts the first time, then one run started from
        the previous clusters' means), ``'minibatch'`` ``MiniBatchKMeans``
        (3 restarts, then the same warm start), ``'lloyd'`` fastmetric's
        own Lloyd iterations over row blocks (one k-means++ seeding on at
        most 100,000 evenly spaced rows, then the same warm start), which
        also run on the workers of a dask array.  ``'auto'`` is ``'kmeans'``
        up to 20000 samples, ``'minibatch'`` beyond, and ``'lloyd'`` on
        dask arrays (the only choice there besides ``'lloyd'`` itself).  An unfitted estimator with an
        ``n_clusters`` parameter and a ``labels_`` attribute after fit
        (e.g. a configured ``KMeans``) is cloned, given ``n_clusters`` and
        ``random_state`` (if it has one), and fitted afresh every round.
    ldml_max_iter : int, default=30
        L-BFGS iterations of each cluster's LDML.  The cluster metrics are
        only directions to move toward, so they need not converge (their
        ``ConvergenceWarning`` is silenced).
    alpha : float, default=0.0
        Pull of each cluster's LDML toward the current metric
        (``alpha/2 ||L_g - L||_F^2``, see :class:`~fastmetric._learners.ldml.LDML`).
        The current metric is handed to LDML at unit spread (mean squared
        distance 1 between points), so ``alpha`` does not depend on the
        scale of the data.  On digits, ``alpha=1`` lowered the gain: the
        damped update already limits each step.
    random_state : int, RandomState instance or None
        Seeds the 'random' init, k-means and the pair sampling.  Given an
        int, the result is the same for any number of threads.
    n_jobs : int, optional
        Threads of the kernels and of k-means (None: what OpenMP and
        threadpoolctl allow; -1: all CPUs).
    verbose : int or bool, default=0
        Print one line per round (ARI to the previous clustering, mean
        cluster LDML loss, time); ``verbose >= 2`` also prints the LDML
        iterations.
    callback : callable, optional
        ``callback(estimator, round, loss)`` after each round, with
        ``components_`` and ``labels_`` set to the current state; returning
        True stops the fit.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned map ``L``, scaled so that the mean squared learned
        distance between two training points equals the mean squared
        Euclidean distance (of the normalised points when ``normalize``).
    cluster_components_ : ndarray of shape (n_clusters, n_components, n_features)
        The cluster maps ``L_g`` of the last round, each rescaled to the
        spread of ``components_`` (before truncation to ``n_components``
        the combination mixes exactly these).  Indexed by the cluster ids
        of the clustering they were learned from, i.e. the one before the
        last update; a cluster too small to learn from (fewer than 2
        points) holds a copy of the global map of that round.
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training point in the final metric.
    cluster_centers_ : ndarray of shape (n_clusters, n_components)
        Centres of the final clusters **in the embedded space**: the means
        of ``transform(X)`` over the final k-means clusters.  ``labels_``
        is the nearest-centre assignment to them, exactly as :meth:`predict`
        computes it.  Since ``transform`` is linear, the centre of a cluster
        in the input space is the mean of its (normalised) points, and
        ``cluster_centers_ = means @ components_.T``.
    n_rounds_ : int
        Metric updates done.
    history_ : list of dict
        One entry per update: ``round``, ``ari_previous`` (ARI between the
        clusterings before and after it), ``loss`` (size-weighted mean of
        the cluster LDML objectives), ``n_groups`` (clusters learned from),
        ``inertia`` (k-means inertia in the new metric, taken at unit
        spread so that rounds compare), ``time`` (seconds).
    converged_ : bool
        The ARI criterion was met before ``max_rounds``.
    {n_features_in}
    {feature_names_in}

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from fastmetric import ClusterLDML
    >>> X, _ = make_blobs(n_samples=120, centers=3, n_features=4, random_state=0)
    >>> model = ClusterLDML(n_clusters=3, max_rounds=2, random_state=0).fit(X)
    >>> model.transform(X).shape, model.cluster_components_.shape
    ((120, 4), (3, 4, 4))
    >>> bool((model.predict(X) == model.labels_).all())
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **shared("n_components", "normalize", "random_state", "n_jobs", "verbose",
                 "callback"),
        "n_clusters": [integers(2)],
        # No 'lda': it needs class labels, which an unsupervised learner has not.
        "init": options_or_array("auto", "identity", "pca", "covariance", "random",
                                 learner=True),
        "n_pairs_per_cluster": [None, integers(2)],
        "positive_fraction": [reals(0, 1, closed="neither")],
        "update_rate": [reals(0, 1, closed="right")],
        "max_rounds": [integers(0)],
        # A threshold on the adjusted Rand index of successive clusterings.
        "tol": [reals(0, 1, closed="both")],
        "kmeans": [StrOptions(set(_KMEANS_NAMES)), HasMethods(["fit", "get_params"])],
        "ldml_max_iter": [integers(1)],
        "alpha": [reals(0)],
    }

    def __init__(self, n_clusters=8, n_components=None, init="auto", normalize=False,
                 n_pairs_per_cluster=None, positive_fraction=0.3, update_rate=0.5,
                 max_rounds=10, tol=0.99, kmeans="auto", ldml_max_iter=30, alpha=0.0,
                 random_state=None, n_jobs=None, verbose=0, callback=None):
        store_params(self, locals())

    # ------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------
    def _check_fit_inputs(self, n_samples):
        """The checks the parameter constraints cannot express.

        ``n_clusters`` groups need at least that many samples, and a
        clustering estimator given as ``kmeans`` must have an ``n_clusters``
        parameter to set.
        """
        if n_samples < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 samples (and at least n_clusters); "
                f"got n_samples={n_samples}."
            )
        if n_samples < self.n_clusters:
            raise ValueError(
                f"{type(self).__name__} needs at least n_clusters={self.n_clusters} "
                f"samples; got n_samples={n_samples}."
            )
        if not isinstance(self.kmeans, str) and "n_clusters" not in self.kmeans.get_params():
            raise ValueError(
                f"the kmeans estimator {type(self.kmeans).__name__} has no n_clusters "
                "parameter."
            )

    def _pairs_for(self, n_g):
        if self.n_pairs_per_cluster is not None:
            return int(self.n_pairs_per_cluster)
        return int(min(2000, max(100, 10 * n_g)))

    # ------------------------------------------------------------------
    # steps
    # ------------------------------------------------------------------
    def _cluster(self, rows, L, seed, previous=None):
        """k-means on the embedded points; returns (labels, centres, inertia).

        With ``previous`` labels (every round after the first) the built-in
        k-means modes start from the means of the previous clusters in the
        new metric, once: the clustering is carried along as the metric
        moves instead of jumping between the local optima that fresh
        restarts land in, which made the pseudo-labels (and the metric
        learned from them) oscillate.  The first clustering uses
        ``_KMEANS_N_INIT`` k-means++ restarts (one with ``'lloyd'``).
        """
        Z = rows.embed(L)
        n = Z.shape[0]
        k = self.n_clusters
        mode = self.kmeans
        init = None
        if previous is not None and np.bincount(previous, minlength=k).min() > 0:
            init = _cluster_means(Z, previous, np.zeros((k, Z.shape[1])))
        if mode == "lloyd" or (mode == "auto" and isinstance(rows, DaskRows)):
            labels, centers, inertia = lloyd(Z, k, seed, init=init)
            return labels, centers, inertia
        if isinstance(mode, str):
            minibatch = mode == "minibatch" or (mode == "auto" and n > _MINIBATCH_THRESHOLD)
            if init is not None:
                start = {"init": init, "n_init": 1}
            else:
                start = {"n_init": 3 if minibatch else _KMEANS_N_INIT}
            if minibatch:
                km = MiniBatchKMeans(n_clusters=k, batch_size=2048, random_state=seed, **start)
            else:
                km = KMeans(n_clusters=k, random_state=seed, **start)
        else:
            km = clone(mode)
            params = {"n_clusters": k}
            if "random_state" in km.get_params():
                params["random_state"] = seed
            km.set_params(**params)
        n_threads = effective_n_threads(self.n_jobs)
        with warnings.catch_warnings():
            # Duplicated points can leave fewer distinct clusters than asked;
            # the fit handles that (groups of fewer than 2 points are skipped).
            warnings.simplefilter("ignore", ConvergenceWarning)
            with threadpool_limits(limits=n_threads, user_api="openmp"):
                km.fit(Z)
        labels = np.asarray(km.labels_, dtype=np.intp)
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= k:
            raise ValueError(
                f"the kmeans estimator gave labels outside [0, {k}); it must assign every "
                "point to one of n_clusters clusters."
            )
        inertia = float(getattr(km, "inertia_", np.nan))
        centers = getattr(km, "cluster_centers_", None)
        if centers is None or np.shape(centers) != (k, Z.shape[1]):
            centers = np.zeros((k, Z.shape[1]))  # only used for empty clusters
        return labels, np.asarray(centers, dtype=np.float64), inertia

    def _ldml(self, X, a, b, t, L, seed):
        """LDML of one cluster from the current ``L``: its map ``L_g`` and loss.

        The fit of :class:`~fastmetric.LDML` with ``init=L``, ``alpha``,
        ``max_iter=ldml_max_iter`` and ``random_state=seed`` on the index
        pairs ``(a, b)`` into X with labels ``t``, run by the core directly
        (X is already validated, normalised and, on dask, checked).
        """
        verbose = max(int(self.verbose) - 1, 0)
        printer = IterationPrinter("LDML")

        def on_iteration(iteration, theta, loss):
            if verbose:
                printer(iteration, loss)
            return False

        fit = fit_ldml(
            X, np.ascontiguousarray(a, dtype=np.intp), np.ascontiguousarray(b, dtype=np.intp),
            check_pair_targets(t, a.shape[0]), None, rng=check_random_state(seed), init=L,
            n_components=None, alpha=float(self.alpha), solver="lbfgs",
            max_iter=int(self.ldml_max_iter), tol=_LDML_TOL, batch_size=None, learning_rate=None,
            n_iter_no_change=None, n_jobs=self.n_jobs,
            n_threads=effective_n_threads(self.n_jobs), verbose=verbose,
            on_iteration=on_iteration,
        )
        if fit.result.message == "interrupted":
            # The solver caught Ctrl-C: stop the whole fit, not only this cluster's.
            raise KeyboardInterrupt
        Lg = np.ascontiguousarray(fit.result.x[:-1].reshape(fit.L0.shape))
        return Lg, float(fit.result.fun)

    def _group_metrics(self, rows, L, labels, seed):
        """One LDML per cluster.

        Returns the unit-spread maps of the clusters learned from, their
        weights ``n_g / sum n_g``, the weighted mean LDML objective, and the
        ``(n_clusters, k, d)`` stack of maps (the current ``L`` for clusters
        that could not be learned from).
        """

        X = rows.X
        n = X.shape[0]
        counts = np.bincount(labels, minlength=self.n_clusters)
        maps, weights, losses = [], [], []
        group_maps = [L] * self.n_clusters
        for g in range(self.n_clusters):
            n_g = int(counts[g])
            if n_g < 2 or n_g == n:
                continue  # no similar pair, or no dissimilar pair
            n_pairs = self._pairs_for(n_g)
            n_pos, n_neg = split_pair_count(n_pairs, self.positive_fraction)
            if isinstance(rows, DaskRows):
                # The same pairs, drawn on the workers.
                from fastmetric._core.dask_support import sample_label_pairs

                a, b, t = sample_label_pairs(labels, n_pos, n_neg, False, seed + g,
                                             anchor_label=g)
            else:
                pairs, t = label_pairs(labels, n_pos, n_neg, seed + g, anchor_label=g,
                                       n_jobs=self.n_jobs)
                a, b = pairs[:, 0], pairs[:, 1]
            with warnings.catch_warnings():
                # A truncated fit is intended: M_g is a direction to move toward.
                warnings.simplefilter("ignore", ConvergenceWarning)
                # On Ctrl-C, _ldml stops the whole fit, which warns once.
                warnings.filterwarnings("ignore", "the fit was interrupted", UserWarning)
                Lg, ldml_loss = self._ldml(X, a, b, t, L, seed + g)
            spread = rows.spread(Lg)
            if not (np.isfinite(spread) and spread > 0 and np.isfinite(Lg).all()):
                continue  # a degenerate cluster metric carries no direction
            Lg = Lg / np.sqrt(spread)  # same spread (1) as the current L
            maps.append(Lg)
            weights.append(n_g)
            losses.append(ldml_loss)
            group_maps[g] = Lg
        weights = np.asarray(weights, dtype=np.float64)
        if weights.size:
            loss = float(np.dot(weights, losses) / weights.sum())
            weights = weights / weights.sum()
        else:
            loss = np.nan
        return maps, weights, loss, np.stack(group_maps)

    # ------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the metric and the clustering from ``X`` alone.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            Training points (finite; at least ``n_clusters`` of them).  A
            row-chunked dask array is not gathered: the covariance, the
            k-means and every cluster's LDML run over its blocks on the
            workers, and the model equals the in-memory fit with
            ``kmeans='lloyd'`` (to rounding).
        y : None
            Ignored; present for scikit-learn's API.

        Returns
        -------
        self
        """
        from fastmetric._core.dask_support import (
            assert_all_finite,
            check_dask_points,
            is_dask_array,
            map_rows,
        )

        if is_dask_array(X):
            X = check_dask_points(X)
            self._check_fit_inputs(X.shape[0])
            if self.kmeans not in ("auto", "lloyd"):
                raise ValueError(
                    f"on a dask array ClusterLDML clusters with its own distributed "
                    f"k-means: kmeans must be 'auto' or 'lloyd'; got {self.kmeans!r}."
                )
            assert_all_finite(X)
            self.n_features_in_ = X.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            if self.normalize:
                X = map_rows(X, l2_normalize_rows, X.shape[1], X.dtype)
            rows = DaskRows(X)
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32], order="C")
            self._check_fit_inputs(X.shape[0])
            rows = MemoryRows(self._normalize_points(X))
        rng = check_random_state(self.random_state)
        n, d = rows.X.shape
        check_memory(16 * (self.max_rounds + 1),
                     f"max_rounds={self.max_rounds} (a table of 2 seeds per round)")
        # Seeds for every round drawn up front: the same random_state gives
        # the same seeds whatever the number of rounds actually run.
        seeds = rng.randint(0, 2**31 - 1 - 4 * self.n_clusters,
                            size=(self.max_rounds + 1, 2))

        with single_threaded_blas():  # identical linear algebra for any thread count
            euclid_spread = rows.euclid_spread
            if not np.isfinite(euclid_spread):
                raise ValueError(
                    "the squared distances between the points overflow float64 (spread "
                    f"{euclid_spread}); rescale the data (e.g. StandardScaler).")
            L = initialize_components(self.init, rows.init_rows(),
                                      n_components=self.n_components, random_state=rng)
            k = L.shape[0]
            # Work at unit spread: LDML's initial scale fit and alpha then
            # see the same units whatever the scale of the data.
            L = self._unit_spread(rows, L)

            labels, centers, inertia = self._cluster(rows, L, int(seeds[0, 0]))
            history = []
            start = time.perf_counter()
            group_maps = np.stack([L] * self.n_clusters)
            converged = False
            n_rounds = 0
            if self.verbose:
                print(f"[{type(self).__name__}] {n} points, {d} features, "
                      f"{self.n_clusters} clusters, {k} components")
                print(f"{'round':>5} {'ARI prev':>9} {'loss':>11} {'groups':>6} "
                      f"{'inertia':>11} {'time (s)':>9}")
                print("-" * 56)
            # Ctrl-C keeps the state after the last completed round.
            committed = (L, labels, centers, group_maps, n_rounds)
            try:
                for r in range(1, self.max_rounds + 1):
                    committed = (L, labels, centers, group_maps, n_rounds)
                    t0 = time.perf_counter()
                    maps, weights, loss, round_maps = self._group_metrics(
                        rows, L, labels, int(seeds[r, 1]))
                    if not maps:
                        warnings.warn(
                            "no cluster has both similar and dissimilar pairs (every cluster "
                            "has fewer than 2 points, or one cluster holds all of them); the "
                            "metric is left as initialised.",
                            UserWarning,
                            stacklevel=3,
                        )
                        break
                    L_new = _combine(L, maps, weights, self.update_rate, k)
                    spread = rows.spread(L_new)
                    if not (np.isfinite(spread) and spread > 0 and np.isfinite(L_new).all()):
                        warnings.warn(
                            f"round {r}: the combined metric is degenerate (zero or non-finite "
                            "spread); stopping with the previous metric.",
                            ConvergenceWarning,
                            stacklevel=3,
                        )
                        break
                    L = L_new / np.sqrt(spread)
                    group_maps = round_maps
                    new_labels, centers, inertia = self._cluster(rows, L, int(seeds[r, 0]),
                                                                 labels)
                    ari = float(adjusted_rand_score(labels, new_labels))
                    labels = new_labels
                    n_rounds = r
                    elapsed = time.perf_counter() - t0
                    history.append({"round": r, "ari_previous": ari, "loss": loss,
                                    "n_groups": len(maps), "inertia": inertia,
                                    "time": elapsed})
                    if self.verbose:
                        print(f"{r:5d} {ari:9.4f} {loss:11.5g} {len(maps):6d} {inertia:11.5g} "
                              f"{time.perf_counter() - start:9.2f}")
                    stop = False
                    if self.callback is not None:
                        self.n_rounds_, self.history_ = n_rounds, history
                        self._set_state(rows, L, labels, centers, group_maps, euclid_spread)
                        stop = bool(self.callback(self, r, loss))
                    if ari > self.tol:
                        converged = True
                        break
                    if stop:
                        break
            except KeyboardInterrupt:
                L, labels, centers, group_maps, n_rounds = committed
                del history[n_rounds:]
                converged = False
                warn_interrupted(f"after {n_rounds} round(s)")

        self._set_state(rows, L, labels, centers, group_maps, euclid_spread)
        self.n_rounds_ = n_rounds
        self.history_ = history
        self.converged_ = converged
        return self

    # ------------------------------------------------------------------
    # helpers of fit
    # ------------------------------------------------------------------
    @staticmethod
    def _unit_spread(rows, L):
        spread = rows.spread(L)
        if np.isfinite(spread) and spread > 0:
            return L / np.sqrt(spread)
        return L  # constant data: every map has zero spread

    def _set_state(self, rows, L, labels, km_centers, group_maps, euclid_spread):
        """Public attributes from the internal (unit-spread) state."""
        scale = np.sqrt(euclid_spread) if euclid_spread > 0 else 1.0
        self.components_ = np.ascontiguousarray(L * scale)
        self.cluster_components_ = np.ascontiguousarray(group_maps * scale)
        Z = rows.embed(self.components_)
        fallback = np.asarray(km_centers, dtype=np.float64) * scale
        centers = _cluster_means(Z, labels, fallback)
        # One nearest-centre pass (a Lloyd assignment step, which can only
        # lower the inertia) so that labels_ is exactly what predict returns
        # on the training points: k-means stops at a tolerance, so a handful
        # of points may sit closer to another mean.  If that pass changed
        # which clusters are occupied (duplicated points), keep the k-means
        # labels.
        relabeled = nearest_centers(Z, centers)
        if np.array_equal(np.unique(relabeled), np.unique(labels)):
            labels = relabeled
        self.labels_ = labels
        self.cluster_centers_ = centers

    def predict(self, X):
        """Nearest cluster centre of each point in the learned metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), intp
        """
        self._check_fitted()
        Z = self.transform(X)
        if not isinstance(Z, np.ndarray):  # a dask array: stay lazy, block by block
            return Z.map_blocks(_nearest_center, self.cluster_centers_,
                                drop_axis=1, dtype=np.intp)
        return _nearest_center(Z, self.cluster_centers_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
