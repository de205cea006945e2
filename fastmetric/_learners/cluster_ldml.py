"""ClusterLDML: metric learning without labels (or with a few) by alternating k-means and LDML.

With no labels at all, ClusterLDML lets a clustering supply the pair
constraints that LDML needs, and lets the learned metric improve the
clustering in turn.  Starting from a pre-trained map ``L`` (``init``: a
named strategy, an array, or any fitted estimator with a linear map;
``normalize``), each round

1. clusters the embedded points ``Z = X L^T`` into ``n_clusters`` groups with
   scikit-learn's k-means (:class:`~sklearn.cluster.KMeans`, or
   :class:`~sklearn.cluster.MiniBatchKMeans` for large ``n``; 10 k-means++
   restarts and one run from the previous clusters, the lower inertia
   kept; semi-supervised: one run from the labelled classes' means; see
   ``kmeans``);
2. for every group ``g`` learns a metric ``M_g = L_g^T L_g`` with
   LDML (:mod:`fastmetric._core.objectives.ldml`, the log-loss of
   ``sigmoid(b - ||L (x - x')||^2)``) from pairs drawn inside ``g``
   (similar) and between ``g`` and the other groups (dissimilar), with
   :func:`~fastmetric.kernels.sampling.sample_pairs` and
   ``anchor_label=g``, in the whitened discriminant coordinates of the
   current clustering (below);
3. moves the metric toward the size-weighted combination of the group
   metrics,

       M_new = (1 - r) M_0 + r sum_g (n_g / n) M_g,       r = update_rate,

   with ``M_0`` the discriminant metric of the current clustering (the
   current metric when not whitening), and keeps the ``n_components``
   leading eigen-directions of ``M_new``;
4. re-clusters in the new metric and stops when the adjusted Rand index
   between two consecutive clusterings exceeds ``tol`` (the clustering no
   longer moves), or after ``max_rounds`` rounds.

Why the plain loop stalled, and what the rounds do about it.

* The scale of raw features.  LDML's gradient with respect to ``L`` is
  ``L sum_p c_p (x_p - x'_p)(x_p - x'_p)^T``: in raw units (wine's proline,
  in the thousands, next to features below 1) it is ruled by the largest
  feature, and a damped step toward such ``M_g`` moved the metric too little
  to change the clustering (wine raw: ARI 0.37, as k-means).  So with
  ``whiten`` every group's LDML runs in the whitened discriminant
  coordinates of the current clustering
  (:func:`~fastmetric._core.cluster_rows.discriminant_coordinates`): the
  points are whitened by the within-cluster covariance ``W`` (each
  cluster's covariance shrunk by Ledoit-Wolf on the standardised scale,
  the estimate of LDA with shrinkage) and projected on the ``q``
  leading eigenvectors of the between-cluster scatter there, ``x -> P^T x``
  with ``P = W^{-1/2} U_q`` (``q = n_directions``, by default
  ``n_clusters - 1``, the coordinates LDA-k-means, Ding & Li 2007, clusters
  in).  Every kept direction has unit spread inside the clusters, so no
  feature's units rule the fit; a group's map ``L'_g`` (``q x q``) is
  brought back as ``L_g = L'_g P^T``.
* Too few pairs for the map.  A full metric on the input has ``d^2``
  entries (the 64 pixels of digits: 4096, against 1800 pairs per group):
  whitened there, LDML followed the noise of the pseudo-labels, and left
  unwhitened it stayed near its start.  In the ``q`` discriminant
  coordinates a group's map has ``q^2`` entries (81 on digits), which its
  pairs determine: ``whiten='auto'`` whitens whenever a group's pairs
  outnumber ``q^2``, which holds for all but very many small groups.
* The pseudo-labels confirm themselves.  A metric learned from a
  clustering separates that clustering: converged per-group LDML fits
  stretch the directions its boundaries lie across, and k-means then
  reproduces it (wine raw stayed at ARI 0.40 for two seeds in five).
  Three things keep the rounds moving: every group's LDML starts from the
  discriminant metric (the identity in those coordinates) and stops early
  (``ldml_max_iter`` 3: LDML's fit of its scale and bias, then three
  L-BFGS steps), the new metric is that discriminant metric moved a
  quarter of the way toward the group metrics (``update_rate`` 0.25; the
  discriminant metric itself is recomputed from every new clustering),
  and k-means restarts from fresh k-means++ seedings every round, keeping
  the previous clusters only when they are still the better k-means
  optimum in the new metric.
* Outliers.  The shrunk within-cluster covariance and the ``q`` leading
  directions keep a few extreme points from ruling the metric (breast
  cancer, 2 groups: one direction); a round that still gives a handful of
  points a group of their own is undone.
* Nearest neighbours.  The rounds' metric has rank ``q``: points that
  differ only outside the discriminant directions are at distance zero
  (3-NN on digits fell from 0.989 to 0.950).  The final metric therefore
  adds the starting metric with the span of the cluster-mean differences
  projected out, each of its directions at 0.04 of the mean spread of a
  learned one (:meth:`ClusterLDML._add_rest`): it moves every cluster mean
  to the same point, so the clustering does not change, and it gives back
  a full-rank metric that breaks the ties (3-NN on digits with 10 %
  labelled: 0.904 -> 0.935, Euclidean 0.929).

Without whitening (``whiten=False``) the rounds are the earlier ones: each
group's LDML in the input coordinates from the current metric, half steps
(``update_rate`` 0.5) toward the mixture, and k-means started from the
previous clusters.

Semi-supervised use.  ``fit(X, y)`` with ``y = -1`` for the unlabelled
points: every k-means is seeded k-means, one run started from the means of
the labelled classes in the current metric (the other clusters, if any,
from an unseeded run); after it the clusters are matched one to one to the
labelled classes (Hungarian assignment on the class-by-cluster counts),
renumbered so that cluster ``c`` is class ``cluster_classes_[c]``, and the
labelled points are put in their class's cluster (seeded / constrained
k-means, Basu, Banerjee & Mooney 2002); each class's LDML also gets pairs
of labelled points (similar inside the class, dissimilar to the other
classes), drawn alike every round and weighing 4 times the pseudo-labelled
pairs in total.

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
import scipy.optimize
from sklearn.base import ClusterMixin, clone
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import validate_data

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.cluster_rows import (
    DaskRows,
    MemoryRows,
    discriminant_coordinates,
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
from fastmetric._core.params import (
    fit_context,
    integers,
    options_or_array,
    reals,
    shared,
    store_params,
)
from fastmetric._core.rows import l2_normalize_rows
from fastmetric._core.solvers import IterationPrinter, warn_interrupted
from fastmetric._core.threads import effective_n_threads, limited_openmp
from fastmetric._core.validation import extreme_exponent

__all__ = ["ClusterLDML"]

_KMEANS_NAMES = ("auto", "kmeans", "minibatch", "lloyd")
# 'auto' switches to MiniBatchKMeans above this many samples: full Lloyd
# iterations cost O(n k d) per iteration and n_init restarts per round.
_MINIBATCH_THRESHOLD = 20_000
# Restarts of KMeans in every round (k-means++ seeding each time): the
# pseudo-labels of a round do not depend on one unlucky seeding, nor on the
# previous round's clusters (see ClusterLDML._cluster).
_KMEANS_N_INIT = 10
# Tolerance of each cluster's LDML fit (LDML's default).
_LDML_TOL = 1e-5
# ldml_max_iter='auto': L-BFGS iterations of a group's LDML.  The group
# metrics are directions to move toward; a converged fit sharpens the current
# clustering's own boundaries (the pseudo-labels confirm themselves), so the
# fit stops early.  ARI on digits raw with max_rounds=10, seeds 0-4 (seeds
# 0-9): 30 iterations 0.734 (0.733), 5 0.740, 3 0.741 (0.741), 2 0.740
# (0.742); LDA-k-means 0.741 (0.740).  Iris, wine, breast cancer and the
# blobs did not move between 30 and 3 (the noisy blobs 1.000 -> 0.996);
# digits std 0.513 -> 0.519.
_LDML_ITER = 3
# update_rate='auto': the share of the group metrics in the new metric.  In
# the discriminant coordinates the rest is the discriminant metric of the
# current clustering (the one LDA-k-means clusters in); on iris, wine and
# digits 0.25 gained over 0 (that metric alone) and 0.5 lost on digits.  In
# the input coordinates the rest is the current metric (half steps).
_RATE_WHITENED = 0.25
_RATE_RAW = 0.5
# A whitened round whose clustering has a group below this share of the
# average group size, where the previous clustering had none, is undone.
_TINY_GROUP = 0.01
# Semi-supervised fits: the labelled pairs of a group weigh, in total, this
# many times its pseudo-labelled pairs (they are certain; on digits with 10 %
# labels, 1 gave no gain over the unsupervised metric, 4 did, 20 overfitted
# the few labelled points).
_KNOWN_WEIGHT = 4.0
# Whitened rounds end with a metric of rank n_directions; the starting
# metric's remaining directions are added back, each with this share of the
# mean spread of a learned direction (see ClusterLDML._add_rest).  Per
# direction, not in total: a total share put the whole of it on the one or
# two leftover directions of a low-dimensional problem (two noise features
# next to one informative one, test_learns_to_ignore_noise_feature: the
# noise columns kept 0.40 of the signal's norm at a total share of 0.15;
# 0.14-0.22 at 0.04 per direction, over four draws of the data), and far
# less per direction on digits (55 leftover directions).  3-NN accuracy on
# digits (10 % labelled, seeds 0-4, no labels / partial labels): as a total
# share 0 (rank 9) 0.904 / 0.907, 0.15 0.932 / 0.933, 0.3 0.933 / 0.937, 1
# 0.917 / 0.921; per direction 0.04 (0.24 in total on digits) 0.935 /
# 0.937, partial labels ahead on every seed; 0.05 0.935 / 0.938, behind on
# one seed.  Euclidean 0.929.
_REST_SHARE = 0.04


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
    # Directions past the rank of the mixture (the whitened rounds give a
    # metric of rank n_directions) are rounding noise: exact zeros instead.
    s = np.where(s > s[0] * 1e-12, s, 0.0)[:k] if s.size else s
    # Singular vectors are defined up to sign; fixed signs make components_ a
    # function of the metric alone (M = L^T L does not change).
    Vt = fix_signs(Vt[:k])
    L_new = s[:, None] * Vt
    if L_new.shape[0] < k:  # fewer stacked rows than components (tiny inputs)
        L_new = np.vstack([L_new, np.zeros((k - L_new.shape[0], L.shape[1]))])
    return np.ascontiguousarray(L_new)


# A rest (see _add_rest) whose spread is below this fraction of the rounds'
# metric's is rounding, not a direction along which the points vary.
_REST_FLOOR = 1e-12


@shared_docs
class ClusterLDML(ClusterMixin, MahalanobisMixin):
    """Metric learning without labels (or with a few): k-means pseudo-labels refined by LDML.

    Alternates k-means in the current metric with one LDML per cluster
    (similar pairs inside the cluster, dissimilar pairs between it and the
    rest), then moves the global Mahalanobis matrix toward the size-weighted
    mean of the cluster metrics; stops when the clustering stabilises.
    ``fit(X, y)`` with ``-1`` for unlabelled points ties the clusters to the
    labelled classes.  See the module docstring for the mathematics.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of groups (k-means clusters); at least 2.
    {n_components}
    init : {'auto', 'identity', 'pca', 'covariance', 'random'}, array or \
            fitted estimator, default='auto'
        The pre-trained metric to start from; see
        :func:`fastmetric._core.init.initialize_components`.  ``'auto'`` is
        ``'pca'`` when ``n_components < n_features``, else ``'identity'``
        (``'lda'`` needs labels and is refused).  A fitted estimator with a
        linear map starts from that map: a metric learner's
        ``components_``, the linear part of a linear transformer's
        ``transform`` (a PCA, with its whitening; an LDA, its ``scalings_``
        up to its ``n_components``) or a linear model's ``coef_``.
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
    update_rate : 'auto' or float in (0, 1], default='auto'
        Share ``r`` of the combined cluster metrics in the new metric; the
        rest is the discriminant metric of the current clustering (whitened
        rounds) or the current metric.  ``'auto'``: 0.25 with whitened
        rounds (converged or full steps sharpen the current clustering's
        own boundaries), 0.5 without.
    max_rounds : int, default=20
        Maximum number of metric updates.  The whitened rounds move the
        clustering a little each time: on digits they settle after 10-17
        rounds, and stopping at 10 left the ARI to the digits at 0.741
        where the settled rounds give 0.742 (seeds 0-4; 0.743 on seeds
        0-9).
    tol : float in [0, 1], default=0.999
        Stop when the adjusted Rand index between the clusterings before
        and after an update exceeds ``tol`` (by default: when at most a
        handful of points changed group).  ``tol=1.0`` runs all
        ``max_rounds`` rounds: a stable clustering does not mean that the
        metric has stopped moving, and later rounds may still change it.
    kmeans : {'auto', 'kmeans', 'minibatch', 'lloyd'} or estimator, default='auto'
        The clustering step: ``'kmeans'`` is scikit-learn's ``KMeans``
        (10 k-means++ restarts the first time; in every whitened round
        these and one run from the previous clusters' means, keeping the
        lower inertia; rounds without whitening run once from the previous
        clusters' means), ``'minibatch'`` ``MiniBatchKMeans`` (3 restarts,
        the same rule), ``'lloyd'`` fastmetric's own Lloyd iterations over row
        blocks (one k-means++ seeding on at most 100,000 evenly spaced rows,
        then one run per round from the previous clusters' means), which
        also run on the workers of a dask array.  Semi-supervised fits
        (``fit(X, y)``) start every named k-means once from the labelled
        classes' means instead (seeded k-means).  ``'auto'`` is ``'kmeans'``
        up to 20000 samples, ``'minibatch'`` beyond, and ``'lloyd'`` on
        dask arrays (the only choice there besides ``'lloyd'`` itself).  An unfitted estimator with an
        ``n_clusters`` parameter and a ``labels_`` attribute after fit
        (e.g. a configured ``KMeans``) is cloned, given ``n_clusters`` and
        ``random_state`` (if it has one), and fitted afresh every round.
    ldml_max_iter : 'auto' or int, default='auto'
        L-BFGS iterations of each cluster's LDML (``'auto'``: 3).  The
        cluster metrics are only directions to move toward, and stopping
        early keeps them from sharpening the current clustering's
        boundaries, so they need not converge (their
        ``ConvergenceWarning`` is silenced).
    whiten : 'auto' or bool, default='auto'
        Fit each cluster's LDML in the whitened discriminant coordinates of
        the current clustering (see ``n_directions``): the same objective,
        in coordinates where no feature's scale dominates and where a
        group's pairs determine its map.  ``'auto'``: when a cluster of
        average size has at least as many pairs as such a map has entries
        (``q ** 2``).  False: the earlier rounds in the input coordinates.
    n_directions : 'auto' or int, default='auto'
        ``q``, the discriminant directions of the whitened rounds: the
        leading eigenvectors of the between-cluster scatter after whitening
        by the within-cluster covariance (LDA's directions, the clusters
        taken as classes).  ``'auto'`` is ``n_clusters - 1`` (the rank of
        the between-cluster scatter, what LDA keeps); at most
        ``n_features``.  The rounds learn a metric of rank ``q``; the final
        one adds the starting metric's directions that do not separate the
        cluster means, each at 0.04 of the mean spread of a learned
        direction, for nearest neighbours (the clustering does not change).
    alpha : float, default=0.0
        Pull of each cluster's LDML toward its start
        (``alpha/2 ||L_g - L_0||_F^2``, see :class:`~fastmetric._learners.ldml.LDML`;
        ``L_0`` the identity in the discriminant coordinates when the
        rounds are whitened, else the current map at unit spread: mean
        squared distance 1 between points, so that ``alpha`` does not
        depend on the scale of the data).  The damped update and the early
        stop already limit each step.
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
        Cluster of each training point in the final metric: its nearest
        centre (as :meth:`predict`), but in a semi-supervised fit a
        labelled point is in its class's cluster (``cluster_classes_``),
        where predict may name a nearer one.
    cluster_centers_ : ndarray of shape (n_clusters, n_components)
        Centres of the final clusters **in the embedded space**: the means
        of ``transform(X)`` over the final k-means clusters.  ``labels_``
        is the nearest-centre assignment to them, exactly as :meth:`predict`
        computes it (except for a cluster with no training point, which a
        fit with every point labelled and fewer classes than clusters
        leaves, with a warning).  Since ``transform`` is linear, the centre of a cluster
        in the input space is the mean of its (normalised) points, and
        ``cluster_centers_ = means @ components_.T``.
    cluster_classes_ : ndarray of shape (n_clusters,) or None
        Semi-supervised fits: the class tied to each cluster (the labelled
        classes in sorted order, then ``-1`` for clusters no class claims);
        None after ``fit(X)``.
    whitened_ : bool
        Whether the rounds were whitened (``whiten``, resolved).
    n_rounds_ : int
        Metric updates done.
    history_ : list of dict
        One entry per update: ``round``, ``ari_previous`` (ARI between the
        clusterings before and after it), ``loss`` (size-weighted mean of
        the cluster LDML objectives), ``n_groups`` (clusters learned from),
        ``inertia`` (k-means inertia in the new metric, taken at unit
        spread so that rounds compare), ``time`` (seconds); a last entry
        with ``reverted=True`` (and NaN ARI and inertia) when a whitened
        round collapsed a group to under 1 % of the average group size and
        was undone (the fit then stops with the previous metric).
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
        "update_rate": [StrOptions({"auto"}), reals(0, 1, closed="right")],
        "max_rounds": [integers(0)],
        # A threshold on the adjusted Rand index of successive clusterings.
        "tol": [reals(0, 1, closed="both")],
        "kmeans": [StrOptions(set(_KMEANS_NAMES)), HasMethods(["fit", "get_params"])],
        "ldml_max_iter": [StrOptions({"auto"}), integers(1)],
        "whiten": [StrOptions({"auto"}), "boolean"],
        "n_directions": [StrOptions({"auto"}), integers(1)],
        "alpha": [reals(0)],
    }

    def __init__(self, n_clusters=8, n_components=None, init="auto", normalize=False,
                 n_pairs_per_cluster=None, positive_fraction=0.3, update_rate="auto",
                 max_rounds=20, tol=0.999, kmeans="auto", ldml_max_iter="auto", whiten="auto",
                 n_directions="auto", alpha=0.0, random_state=None, n_jobs=None, verbose=0, callback=None):
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

    def _check_labels(self, y, n):
        """Checked semi-supervised labels: ``(rows, classes)`` of the labelled points, or None.

        Sets ``cluster_classes_``.  ``classes`` are the labels encoded
        0 .. m-1 in sorted order (cluster ``c`` is class ``c``).
        """
        self.cluster_classes_ = None
        if y is None:
            return None
        if hasattr(y, "compute"):  # a dask array of labels: small, gather it
            y = y.compute()
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(
                f"y must be 1-D (one label per sample, -1 for unlabelled); got shape {y.shape}."
            )
        if y.shape[0] != n:
            raise ValueError(
                f"y has {y.shape[0]} labels but X has {n} samples; give one label per sample "
                "(-1 for unlabelled)."
            )
        if y.dtype.kind not in "biuf":
            raise TypeError(
                f"y must hold numbers (class ids, -1 for unlabelled points); got dtype {y.dtype}."
            )
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError(
                "y contains NaN or infinity; mark unlabelled points with -1."
            )
        known = y != -1
        classes, encoded = np.unique(y[known], return_inverse=True)
        if classes.size > self.n_clusters:
            raise ValueError(
                f"y has {classes.size} labelled classes, more than n_clusters={self.n_clusters}: "
                "each class needs a cluster of its own. Raise n_clusters."
            )
        # A dtype that holds -1 (boolean or unsigned labels would not).
        tag_dtype = classes.dtype if classes.dtype.kind in "if" else np.result_type(
            classes.dtype, np.int8)
        self.cluster_classes_ = np.concatenate(
            [classes.astype(tag_dtype),
             np.full(self.n_clusters - classes.size, -1, dtype=tag_dtype)])
        if classes.size == 0:
            return None  # no labelled point: the unsupervised fit
        if known.all() and classes.size < self.n_clusters:
            warnings.warn(
                f"every point is labelled, with {classes.size} classes, and "
                f"n_clusters={self.n_clusters}: each point stays in its class's cluster, "
                f"so {self.n_clusters - classes.size} cluster(s) get no training point "
                "(labels_ never names them, but predict may). Set n_clusters to the "
                "number of classes, or leave some points unlabelled (-1).",
                UserWarning, stacklevel=4)
        return np.flatnonzero(known).astype(np.intp), encoded.astype(np.intp)

    def _pairs_for(self, n_g):
        if self.n_pairs_per_cluster is not None:
            return int(self.n_pairs_per_cluster)
        return int(min(2000, max(100, 10 * n_g)))

    # ------------------------------------------------------------------
    # steps
    # ------------------------------------------------------------------
    def _cluster(self, rows, L, seed, previous=None, tie=None, restart=True):
        """k-means on the embedded points; returns (labels, centres, inertia).

        The first clustering, and with ``restart`` every clustering,
        restarts scikit-learn's KMeans from ``_KMEANS_N_INIT`` fresh
        k-means++ seedings (MiniBatchKMeans from 3).  Whitened rounds
        restart: their metric moves far in one round, and a clustering that
        could only start from the previous clusters would stay in their
        basin while the metric learned from them confirms them (on wine's
        raw features the first clustering, ruled by one feature of large
        scale, was never left).  But the previous clusters are one more
        start: a restarted round also runs k-means once from their means in
        the new metric, and keeps whichever of the two ends with the lower
        inertia (the k-means objective, both measured in the new metric).
        So a round leaves the previous clusters only for a better k-means
        optimum in the metric learned from them, not for an unlucky set of
        seedings: with many small groups (wine in 6 groups of about 30
        points) fresh seedings alone made the rounds wander (ARI 0.53 and
        0.53 on two seeds against 0.65 and 0.66 for plain k-means; 0.57
        with the previous clusters as a candidate).  Rounds in the input
        coordinates (``restart=False``) move the metric a little at a time
        and start from the previous means only, once, so that the
        clustering follows the metric.  ``'lloyd'`` (one seeding, also on
        dask) always starts from the previous means.

        ``tie`` (semi-supervised fits) ties the groups to the classes, see
        :meth:`_tie_to_classes`; with the named k-means every clustering of
        such a fit is seeded k-means (Basu, Banerjee & Mooney 2002): one run
        started from the means of the labelled classes in the current
        metric (:meth:`_seeded_centres`).  Random restarts, which keep the
        lowest inertia, preferred on digits clusterings that split one
        digit in three and merge two others, and the labelled points
        could only be renumbered and clamped afterwards; started from the
        labelled means, the clusters are the classes from the first step
        (3-NN on digits with 10 % labelled: 0.937 -> 0.944, ahead of the
        fit without labels on every seed).
        """
        Z = rows.embed(L)
        k = self.n_clusters
        mode = self.kmeans
        lloyd_mode = mode == "lloyd" or (mode == "auto" and isinstance(rows, DaskRows))
        init = None
        if previous is not None and np.bincount(previous, minlength=k).min() > 0:
            init = _cluster_means(Z, previous, np.zeros((k, Z.shape[1])))
        if tie is not None and (lloyd_mode or isinstance(mode, str)):
            run = (lambda start: lloyd(Z, k, seed, init=start)) if lloyd_mode else (
                lambda start: self._kmeans(Z, seed, start))
            labels, centers, inertia = run(self._seeded_centres(L, tie, run))
            return self._tie_to_classes(labels, centers, tie) + (inertia,)
        if lloyd_mode:
            labels, centers, inertia = lloyd(Z, k, seed, init=init)
            return self._tie_to_classes(labels, centers, tie) + (inertia,)
        if not isinstance(mode, str):  # an estimator: fitted afresh, its own starts
            labels, centers, inertia = self._kmeans(Z, seed, None)
            return self._tie_to_classes(labels, centers, tie) + (inertia,)
        if init is None or restart:
            best = self._kmeans(Z, seed, None)
        if init is not None:
            continued = self._kmeans(Z, seed, init)
            # Strictly lower (beyond rounding): ties keep the fresh restarts.
            if not restart or continued[2] < best[2] * (1.0 - 1e-9):
                best = continued
        labels, centers, inertia = best
        return self._tie_to_classes(labels, centers, tie) + (inertia,)

    def _kmeans(self, Z, seed, init):
        """One k-means of ``Z`` (``kmeans``), from k-means++ or from ``init``.

        Returns ``(labels, centres, inertia)``; the inertia is NaN for a
        clustering estimator that has no ``inertia_``.
        """
        n = Z.shape[0]
        k = self.n_clusters
        mode = self.kmeans
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
        # scikit-learn's k-means splits each pass over the points in equal
        # shares: under load it keeps to the free cores.
        n_threads = effective_n_threads(self.n_jobs, static=True)
        with warnings.catch_warnings():
            # Duplicated points can leave fewer distinct clusters than asked;
            # the fit handles that (groups of fewer than 2 points are skipped).
            warnings.simplefilter("ignore", ConvergenceWarning)
            with limited_openmp(n_threads):
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

    def _seeded_centres(self, L, tie, run):
        """Starting centres of seeded k-means: the labelled classes' means, then the others.

        Row ``c < m`` is the mean of the labelled points of class ``c`` in
        the metric ``L`` (the means are taken once, in the input space:
        ``L`` is linear).  With more clusters than classes the other rows
        are centres of an unseeded clustering ``run(None)``, picked one at a
        time as the farthest from the rows already chosen (so they go
        where no class is).
        """
        seeds = tie[2] @ L.T
        k = self.n_clusters
        if seeds.shape[0] >= k:
            return seeds
        free = np.asarray(run(None)[1], dtype=np.float64)
        chosen = list(seeds)
        for _ in range(k - seeds.shape[0]):
            gap = np.min([np.sum((free - c) ** 2, axis=1) for c in chosen], axis=0)
            chosen.append(free[int(np.argmax(gap))])
        return np.array(chosen)

    def _tie_to_classes(self, labels, centers, tie):
        """Renumber the clusters so that cluster ``c`` is class ``c``; clamp labelled points.

        ``tie = (rows, classes, means)``: the labelled rows, their encoded
        class (0 .. m-1) and the classes' means in the input space.  The
        clusters are matched one to one to the classes by the largest
        total number of labelled points they agree on (the
        Hungarian assignment of scipy's ``linear_sum_assignment`` on the
        class-by-cluster counts); the matched cluster of class ``c`` becomes
        cluster ``c``, the others follow in their order; then every
        labelled point is put in its class's cluster (seeded and
        constrained k-means, Basu, Banerjee & Mooney 2002).
        """
        if tie is None:
            return labels, centers
        rows, classes = tie[:2]
        k = self.n_clusters
        m = int(classes.max()) + 1
        counts = np.zeros((m, k))
        np.add.at(counts, (classes, labels[rows]), 1.0)
        matched_class, matched_cluster = scipy.optimize.linear_sum_assignment(-counts)
        new_id = np.full(k, -1, dtype=np.intp)
        new_id[matched_cluster] = matched_class
        free = np.flatnonzero(new_id < 0)
        new_id[free] = np.arange(m, m + free.size)
        labels = new_id[labels]
        labels[rows] = classes
        new_centers = np.empty_like(centers)
        new_centers[new_id] = centers
        return labels, new_centers

    def _ldml(self, X, a, b, t, L, seed, max_iter, weights=None):
        """LDML of one cluster from the map ``L``: its map ``L_g`` and loss.

        The fit of :class:`~fastmetric.LDML` with ``init=L``, ``alpha``,
        ``max_iter`` and ``random_state=seed`` on the index pairs ``(a, b)``
        into X (the points, or their whitened coordinates) with labels
        ``t`` and pair weights ``weights`` (None: equal), run by the core
        directly (X is already validated, normalised and, on dask, checked).
        """
        verbose = max(int(self.verbose) - 1, 0)
        printer = IterationPrinter("LDML")

        def on_iteration(iteration, theta, loss):
            if verbose:
                printer(iteration, loss)
            return False

        fit = fit_ldml(
            X, np.ascontiguousarray(a, dtype=np.intp), np.ascontiguousarray(b, dtype=np.intp),
            check_pair_targets(t, a.shape[0]), weights, rng=check_random_state(seed), init=L,
            n_components=None, alpha=float(self.alpha), solver="lbfgs",
            max_iter=int(max_iter), tol=_LDML_TOL, batch_size=None, learning_rate=None,
            n_iter_no_change=None, n_jobs=self.n_jobs,
            n_threads=effective_n_threads(self.n_jobs), verbose=verbose,
            on_iteration=on_iteration,
        )
        if fit.result.message == "interrupted":
            # The solver caught Ctrl-C: stop the whole fit, not only this cluster's.
            raise KeyboardInterrupt
        Lg = np.ascontiguousarray(fit.result.x[:-1].reshape(fit.L0.shape))
        return Lg, float(fit.result.fun)

    def _labelled_pairs(self, tie, g, seed):
        """Pairs of the labelled points for group ``g`` (= class ``g``): index arrays and targets.

        Similar pairs inside class ``g``, dissimilar pairs between it and
        the other labelled classes, as many as :meth:`_pairs_for` gives for
        the labelled members of ``g``; drawn afresh (same seed) every round,
        so they hold in every round whatever the clustering does.
        """
        rows, classes = tie[:2]
        m = int(classes.max()) + 1
        if g >= m:
            return None
        count = int(np.sum(classes == g))
        n_pos, n_neg = split_pair_count(self._pairs_for(count), self.positive_fraction)
        if count < 2:
            n_pos = 0  # one labelled point: no similar pair
        if m < 2 or count == 0:
            n_neg = 0  # one labelled class: no dissimilar pair
        if n_pos + n_neg == 0:
            return None
        pairs, t = label_pairs(classes, n_pos, n_neg, seed, anchor_label=g, n_jobs=self.n_jobs)
        return rows[pairs[:, 0]], rows[pairs[:, 1]], np.asarray(t, dtype=np.float64)

    def _group_metrics(self, rows, L, labels, seed, whiten, max_iter, tie=None):
        """One LDML per cluster.

        With ``whiten`` each LDML runs in the whitened discriminant
        coordinates of the current clustering
        (:func:`~fastmetric._core.cluster_rows.discriminant_coordinates`,
        ``x -> P^T x``), started from the identity there, and its map is
        brought back (``L_g = L'_g P^T``); the anchor of the update is the
        discriminant metric ``P^T`` itself.  Without, each LDML runs on the
        points from the current map, which is the anchor.

        Returns the unit-spread maps of the clusters learned from, their
        weights ``n_g / sum n_g``, the weighted mean LDML objective, the
        ``(n_clusters, k, d)`` stack of maps (the current ``L`` for clusters
        that could not be learned from), and the unit-spread anchor map.
        """

        X = rows.X
        n = X.shape[0]
        if whiten:
            # Each group's LDML in the whitened discriminant coordinates of
            # the current clustering, started from the identity there (the
            # metric LDA-k-means would cluster in).
            P = discriminant_coordinates(rows, labels, self.n_clusters,
                                            self._n_directions(X.shape[1]))
            X_fit = rows.mapped(P)
            L_start = np.eye(P.shape[1])
            back = np.ascontiguousarray(P.T)
            anchor = self._unit_spread(rows, back)
        else:
            X_fit, L_start, back, anchor = X, L, None, L
        counts = np.bincount(labels, minlength=self.n_clusters)
        maps, weights, losses = [], [], []
        group_maps = [L] * self.n_clusters
        for g in range(self.n_clusters):
            n_g = int(counts[g])
            parts = []
            if 2 <= n_g < n:  # a similar and a dissimilar pair exist
                n_pos, n_neg = split_pair_count(self._pairs_for(n_g), self.positive_fraction)
                if isinstance(rows, DaskRows):
                    # The same pairs, drawn on the workers.
                    from fastmetric._core.dask_support import sample_label_pairs

                    parts.append(sample_label_pairs(labels, n_pos, n_neg, False, seed + g,
                                                    anchor_label=g))
                else:
                    pairs, t = label_pairs(labels, n_pos, n_neg, seed + g, anchor_label=g,
                                           n_jobs=self.n_jobs)
                    parts.append((pairs[:, 0], pairs[:, 1], t))
            if tie is not None:
                known = self._labelled_pairs(tie, g, seed + self.n_clusters + g)
                if known is not None:
                    parts.append(known)
            if not parts:
                continue
            a = np.concatenate([np.asarray(p[0], dtype=np.intp) for p in parts])
            b = np.concatenate([np.asarray(p[1], dtype=np.intp) for p in parts])
            t = np.concatenate([np.asarray(p[2], dtype=np.float64) for p in parts])
            if t.min() == t.max():
                continue  # only one kind of pair: LDML has nothing to separate
            pair_weights = None
            if len(parts) == 2:
                # The labelled pairs, fewer but certain, weigh _KNOWN_WEIGHT
                # times the pseudo-labelled ones in total.
                n_pseudo, n_known = len(parts[0][2]), len(parts[1][2])
                pair_weights = np.concatenate([np.ones(n_pseudo),
                                               np.full(n_known,
                                                       _KNOWN_WEIGHT * n_pseudo / n_known)])
            with warnings.catch_warnings():
                # A truncated fit is intended: M_g is a direction to move toward.
                warnings.simplefilter("ignore", ConvergenceWarning)
                # On Ctrl-C, _ldml stops the whole fit, which warns once.
                warnings.filterwarnings("ignore", "the fit was interrupted", UserWarning)
                Lg, ldml_loss = self._ldml(X_fit, a, b, t, L_start, seed + g, max_iter,
                                           pair_weights)
            if back is not None:
                Lg = Lg @ back
            spread = rows.spread(Lg)
            if not (np.isfinite(spread) and spread > 0 and np.isfinite(Lg).all()):
                continue  # a degenerate cluster metric carries no direction
            Lg = np.ascontiguousarray(Lg / np.sqrt(spread))  # same spread (1) as the current L
            maps.append(Lg)
            weights.append(max(n_g, 1))
            losses.append(ldml_loss)
            # Stored with the global map's n_components rows (the same metric,
            # truncated if the discriminant coordinates have more directions).
            group_maps[g] = _combine(Lg, [], [], 0.0, L.shape[0])
        weights = np.asarray(weights, dtype=np.float64)
        if weights.size:
            loss = float(np.dot(weights, losses) / weights.sum())
            weights = weights / weights.sum()
        else:
            loss = np.nan
        return maps, weights, loss, np.stack(group_maps), anchor

    def _collapsed(self, new_labels, labels):
        """A group of the new clustering is tiny where none of the previous one was.

        Tiny: fewer than ``_TINY_GROUP`` (1 %) of the average group size
        ``n / n_clusters``, and at least 2 points short of it.
        """
        floor = max(2.0, _TINY_GROUP * new_labels.shape[0] / self.n_clusters)
        k = self.n_clusters
        return bool(np.bincount(new_labels, minlength=k).min() < floor
                    <= np.bincount(labels, minlength=k).min())

    def _n_directions(self, d):
        """``q``: the discriminant directions kept (``n_directions``, at most ``d``)."""
        q = self.n_clusters - 1 if self.n_directions == "auto" else int(self.n_directions)
        return max(1, min(q, d))

    def _resolve_whiten(self, n, d):
        """``whiten='auto'``: whiten when a group's pairs outnumber ``q^2``.

        A group's LDML in the ``q`` discriminant coordinates fits a ``q x
        q`` map, determined by its pairs when they outnumber its entries
        (digits: 81 entries, 1800 pairs per group).  In the full input
        coordinates it would fit ``d^2`` entries (4096 on digits), where the
        pseudo-labels' noise was followed; the reduction is what lets the
        whitened rounds run everywhere.
        """
        if self.whiten != "auto":
            return bool(self.whiten)
        q = self._n_directions(d)
        return self._pairs_for(n / self.n_clusters) >= q * q

    # ------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------
    @fit_context
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
        y : None or array-like of shape (n_samples,), optional
            Semi-supervised use: the class of each labelled point and ``-1``
            for the unlabelled ones (scikit-learn's convention).  Every
            round, the clusters are matched to the classes (cluster ``c`` is
            the ``c``-th class of ``cluster_classes_``), labelled points are
            put in their class's cluster, and each class's LDML also gets
            pairs of labelled points (similar inside the class, dissimilar
            to the other classes), drawn the same way every round; every
            k-means starts from the labelled classes' means.  At most
            ``n_clusters`` classes; ``None`` or all ``-1``: no labels.

        {returns_self}
        """
        from fastmetric._core.dask_support import (
            assert_all_finite,
            check_dask_points,
            is_dask_array,
            map_rows,
        )

        self._points_exponent = 0
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
            points = self._normalize_points(X)
            # Points of about 1e+-150 and beyond: their squared spreads and
            # distances (k-means, the unit spread) underflow or overflow.
            # The rounds run on the points times a power of two (exact; the
            # map absorbs any scale, see _unit_spread) and the maps are
            # multiplied back (_set_state).
            self._points_exponent = extreme_exponent(points)
            if self._points_exponent:
                points = np.ldexp(points, -self._points_exponent).astype(points.dtype, copy=False)
            rows = MemoryRows(points)
        tie = self._check_labels(y, rows.X.shape[0])
        if tie is not None:
            # The labelled classes' means (input space), the seeds of k-means.
            m = int(tie[1].max()) + 1
            grouped = np.full(rows.X.shape[0], m, dtype=np.intp)  # m: unlabelled
            grouped[tie[0]] = tie[1]
            means = _cluster_means(rows.X, grouped, np.zeros((m + 1, rows.X.shape[1])))
            tie = tie + (np.asarray(means, dtype=np.float64)[:m],)
        rng = check_random_state(self.random_state)
        n, d = rows.X.shape
        check_memory(16 * (self.max_rounds + 1),
                     f"max_rounds={self.max_rounds} (a table of 2 seeds per round)")
        # Seeds for every round drawn up front: the same random_state gives
        # the same seeds whatever the number of rounds actually run.
        seeds = rng.randint(0, 2**31 - 1 - 4 * self.n_clusters,
                            size=(self.max_rounds + 1, 2))

        euclid_spread = rows.euclid_spread
        if not np.isfinite(euclid_spread):
            raise ValueError(
                "the squared distances between the points overflow float64 (spread "
                f"{euclid_spread}); rescale the data (e.g. StandardScaler).")
        L = initialize_components(self.init, rows.init_rows(),
                                  n_components=self.n_components, random_state=rng)
        k = L.shape[0]
        whiten = self._resolve_whiten(n, d)
        max_iter = self.ldml_max_iter
        if max_iter == "auto":
            max_iter = _LDML_ITER
        rate = self.update_rate
        if rate == "auto":
            rate = _RATE_WHITENED if whiten else _RATE_RAW
        # Work at unit spread: LDML's initial scale fit and alpha then
        # see the same units whatever the scale of the data.
        L = self._unit_spread(rows, L)
        _check_map_fits_dtype(L, rows.X.dtype, euclid_spread)
        L_start = L

        labels, centers, inertia = self._cluster(rows, L, int(seeds[0, 0]), tie=tie)
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
                maps, weights, loss, round_maps, anchor = self._group_metrics(
                    rows, L, labels, int(seeds[r, 1]), whiten, max_iter, tie)
                if not maps:
                    warnings.warn(
                        "no cluster has both similar and dissimilar pairs (every cluster "
                        "has fewer than 2 points, or one cluster holds all of them); the "
                        "metric is left as initialised.",
                        UserWarning,
                        stacklevel=3,
                    )
                    break
                L_new = _combine(anchor, maps, weights, rate, k)
                spread = rows.spread(L_new)
                if not (np.isfinite(spread) and spread > 0 and np.isfinite(L_new).all()):
                    warnings.warn(
                        f"round {r}: the combined metric is degenerate (zero or non-finite "
                        "spread); stopping with the previous metric.",
                        ConvergenceWarning,
                        stacklevel=3,
                    )
                    break
                L_new = L_new / np.sqrt(spread)
                new_labels, new_centers, new_inertia = self._cluster(
                    rows, L_new, int(seeds[r, 0]), labels, tie, restart=whiten)
                if whiten and self._collapsed(new_labels, labels):
                    # A whitened fit can blow up the directions of
                    # a few outliers, and k-means then gives them a group of
                    # their own (breast cancer: 2 points of 569).  Keep the
                    # previous metric and clustering, and stop.
                    history.append({"round": r, "ari_previous": np.nan, "loss": loss,
                                    "n_groups": len(maps), "inertia": np.nan,
                                    "time": time.perf_counter() - t0, "reverted": True})
                    break
                L, group_maps = L_new, round_maps
                centers, inertia = new_centers, new_inertia
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
                    L_seen = self._add_rest(rows, L, L_start, labels) if whiten else L
                    self._set_state(rows, L_seen, labels, centers, group_maps,
                                    euclid_spread, tie)
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

        if whiten and n_rounds > 0:
            L = self._add_rest(rows, L, L_start, labels)
        self._set_state(rows, L, labels, centers, group_maps, euclid_spread, tie)
        self.whitened_ = whiten
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

    @staticmethod
    def _add_rest(rows, L, L_start, labels):
        """Full-rank metric: ``L`` plus the starting metric's other directions, weakly.

        The whitened rounds give ``M = L^T L`` of rank ``q``
        (``n_directions``): points that differ only in the other directions
        are at distance zero, which ruins nearest neighbours (3-NN on digits
        fell from 0.989 to 0.950).  Added here is ``C = L_0 (I - Q Q^T)``:
        the starting map ``L_0`` with the span ``Q`` of the differences of
        the cluster means (in the input space, at most ``n_clusters - 1``
        directions) projected out, scaled so that each of its ``n_rest``
        directions has ``_REST_SHARE`` (0.04) of the mean spread of ``L``'s
        ``r = rank(Q)`` directions: its spread is ``0.04 n_rest / r`` of
        ``L``'s (0.24 on digits, 55 directions added to 9).  ``C`` maps every cluster mean to
        the same point, so it adds the same amount to a point's distance to
        every centre: the nearest centre, hence the clustering (k-means ran
        in ``L``), does not change; and ``L^T L + C^T C`` is of full rank
        unless ``L`` is blind to a direction of ``Q``.  Returns the
        ``n_components`` leading directions of ``L^T L + C^T C`` at unit
        spread; ``L`` itself when nothing is left (``Q`` spans the input).
        """
        d = L.shape[1]
        counts = np.bincount(labels)
        means = np.asarray(_cluster_means(rows.X, labels, np.zeros((counts.size, d))),
                           dtype=np.float64)[counts > 0]  # occupied clusters only
        span = means[1:] - means[0]
        norms = np.linalg.norm(span, axis=1)
        span = span[norms > 0] / norms[norms > 0, None]  # unit rows: one rank threshold
        if span.shape[0] == 0:
            return L
        _, s, Vt = scipy.linalg.svd(span, full_matrices=False, lapack_driver="gesdd")
        Q = Vt[s > s[0] * 1e-10].T
        if Q.shape[1] >= d:
            return L
        C = L_start - (L_start @ Q) @ Q.T
        rest, own = rows.spread(C), rows.spread(L)
        # The starting metric has no direction outside Q along which the
        # points vary: nothing to add.  Relative to L's spread: when the only
        # direction left is a constant feature, ``rest`` is the rounding of
        # Q (about 1e-34), and scaled up to a share of L's spread that
        # rounding became the whole metric (every distance 0).
        if not (np.isfinite(rest) and own > 0 and rest > _REST_FLOOR * own):
            return L
        # Per direction: C brings n_rest directions, L's spread lies on the
        # r = rank(Q) directions of the cluster means.
        n_rest = min(L_start.shape[0], d - Q.shape[1])
        C = C * np.sqrt(_REST_SHARE * own * n_rest / (Q.shape[1] * rest))
        L_new = _combine(L, [C], [1.0], 0.5, L.shape[0])
        return ClusterLDML._unit_spread(rows, L_new)

    def _set_state(self, rows, L, labels, km_centers, group_maps, euclid_spread, tie=None):
        """Public attributes from the internal (unit-spread) state; ``tie``
        (semi-supervised fits): the labelled rows and their classes, which
        stay in their classes' clusters in ``labels_``."""
        scale = np.sqrt(euclid_spread) if euclid_spread > 0 else 1.0
        components = np.ascontiguousarray(L * scale)  # of the rows (scaled: see fit)
        Z = rows.embed(components)
        # The maps of the points as given: multiplied back by the power of
        # two the rows were scaled by (exact), so that transform(X) is Z.
        exponent = -getattr(self, "_points_exponent", 0)
        self.components_ = np.ldexp(components, exponent) if exponent else components
        self.cluster_components_ = np.ascontiguousarray(
            np.ldexp(group_maps * scale, exponent) if exponent else group_maps * scale)
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
        if tie is not None:
            # A label is a constraint (constrained k-means): the pass above
            # moved about 7 % of the labelled digits (10 % labelled) to
            # another class's cluster, contradicting the labels given.
            labels = labels.copy()
            labels[tie[0]] = tie[1]
        self.labels_ = labels
        self.cluster_centers_ = centers

    def fit_predict(self, X, y=None):
        """Fit, then return ``labels_`` (with ``y``: the semi-supervised fit).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Class labels, -1 for unlabelled points (see :meth:`fit`).

        Returns
        -------
        labels : ndarray of shape (n_samples,), intp
        """
        return self.fit(X, y).labels_

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


def _check_map_fits_dtype(L, dtype, spread):
    """ValueError when the unit-spread map leaves float32's range.

    The rounds embed float32 points with the map cast to float32; on data
    spanning 1e-40 its entries (about 1e40) became infinity there and
    k-means reported an infinity in X."""
    if np.dtype(dtype) != np.float32:
        return
    with np.errstate(over="ignore", under="ignore"):
        cast = np.abs(L).astype(np.float32)
    if np.isfinite(cast).all() and np.array_equal(cast > 0, np.abs(L) > 0):
        return
    raise ValueError(
        f"ClusterLDML: float32 data whose squared distances average {spread:.3g} need a "
        "map beyond float32's range; pass the data as float64 or rescale them (e.g. "
        "StandardScaler).")
