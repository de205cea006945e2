"""Demo and benchmark helpers on scikit-learn's bundled digits (no download).

Used by ``python -m fastmetric`` (:mod:`fastmetric._cli.main`) and meant to be
called from benchmarks:

* :func:`load_digits_split`: the digits, split 70/30 stratified;
* :func:`kmeans_ari`: the adjusted Rand index of k-means in an embedding
  against the true classes, averaged over seeds;
* :func:`cluster_ldml_digits_benchmark`: the quality target of
  :class:`~fastmetric._learners.cluster_ldml.ClusterLDML` (k-means ARI in the learned
  metric against plain Euclidean k-means, per seed);
* :func:`evaluate_embedding`: held-out pair ROC AUC, 3-NN accuracy and
  k-means ARI of one learned map;
* :func:`plot_embeddings`: the demo's picture, one panel per embedding.

The list of learners the demo compares is ``fastmetric._cli.main.LEARNERS``.
"""
import time

import numpy as np

__all__ = [
    "load_digits_split",
    "kmeans_ari",
    "cluster_ldml_digits_benchmark",
    "evaluate_embedding",
    "plot_embeddings",
]


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------
def load_digits_split(test_size=0.3, random_state=0):
    """scikit-learn's digits (8x8 pixels in 0..16), split stratified.

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarrays
        float64 points and int labels.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X.astype(np.float64), y, test_size=test_size,
                            stratify=y, random_state=random_state)


# --------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------
def kmeans_ari(Z, y, n_clusters=10, seeds=(0, 1, 2, 3, 4), n_init=10):
    """ARI of k-means on ``Z`` against ``y``, one value per seed.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Embedded points (``model.transform(X)``), or the raw points for the
        Euclidean baseline.
    y : ndarray of shape (n_samples,)
        True classes.
    n_clusters : int
    seeds : sequence of int
        ``random_state`` of each k-means run.
    n_init : int
        k-means++ restarts of each run.

    Returns
    -------
    aris : ndarray of shape (len(seeds),)
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    return np.array([
        adjusted_rand_score(y, KMeans(n_clusters, n_init=n_init, random_state=s).fit_predict(Z))
        for s in seeds
    ])


def evaluate_embedding(transform, X_train, y_train, X_test, y_test, *, pairs=None,
                       pair_labels=None, n_clusters=10, kmeans_seeds=(0, 1, 2)):
    """Held-out measures of one embedding.

    Parameters
    ----------
    transform : callable
        Maps points to the embedding (``model.transform``, or the identity
        for the Euclidean baseline).
    X_train, y_train, X_test, y_test : ndarrays
    pairs, pair_labels : ndarrays, optional
        Index pairs into ``X_test`` and their labels (1 same class, 0
        different), for the ROC AUC of ``-distance``.
    n_clusters : int
        Clusters of the k-means ARI (on the embedded test points).
    kmeans_seeds : sequence of int

    Returns
    -------
    dict
        ``auc``, ``knn3`` (3-NN accuracy on the test points, neighbours
        among the training points), ``ari`` (mean k-means ARI).
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import KNeighborsClassifier

    Z_train = np.asarray(transform(X_train), dtype=np.float64)
    Z_test = np.asarray(transform(X_test), dtype=np.float64)
    out = {}
    if pairs is not None:
        diff = Z_test[pairs[:, 0]] - Z_test[pairs[:, 1]]
        dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        out["auc"] = float(roc_auc_score(pair_labels, -dist))
    knn = KNeighborsClassifier(n_neighbors=3).fit(Z_train, y_train)
    out["knn3"] = float(knn.score(Z_test, y_test))
    out["ari"] = float(np.mean(kmeans_ari(Z_test, y_test, n_clusters, kmeans_seeds)))
    return out


# --------------------------------------------------------------------------
# Picture
# --------------------------------------------------------------------------
def _robust_limits(values, low=1.0, high=99.0, margin=0.08):
    """Axis limits covering the ``low``..``high`` percentiles of ``values``
    plus a margin: a few far points (Covariance's and LFDA's embeddings have
    some) would otherwise squeeze every other point into a corner."""
    lo, hi = np.percentile(values, [low, high])
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        span = max(abs(lo), 1.0)
    return lo - margin * span, hi + margin * span


def plot_embeddings(path, embeddings, y, scores=None, *, ncols=5, panel_inches=3.6, dpi=100):
    """Save a grid of 2-D pictures of embeddings, coloured by class.

    Each embedding is shown on its first two principal axes (as is when it
    has two columns).  The axes of every panel cover the 1st to 99th
    percentile of its points, so that a few far points do not flatten the
    rest; the points outside are counted in the panel's corner.

    Parameters
    ----------
    path : str or path-like
        The image file to write (its suffix picks the format, e.g. ``.png``).
    embeddings : list of (str, ndarray of shape (n_samples, n_components))
        Method name and embedded points, one panel each, in this order.
    y : ndarray of shape (n_samples,)
        Integer classes 0..9 (the digits), shared by every embedding.
    scores : dict of str to float, optional
        3-NN accuracy per method name, shown in the panel titles.
    ncols : int, default=5
        Panels per row; the number of rows follows.
    panel_inches : float, default=3.6
        Width and height of one panel (at ``dpi=100``: 360 pixels).
    dpi : int, default=100

    Returns
    -------
    fig_size : tuple of int
        Width and height of the saved image in pixels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from sklearn.decomposition import PCA

    scores = {} if scores is None else scores
    y = np.asarray(y)
    n = len(embeddings)
    if n == 0:
        raise ValueError("plot_embeddings: no embeddings to draw (got an empty list).")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    cmap = plt.get_cmap("tab10")
    # One extra band at the bottom holds the shared legend.
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_inches * ncols,
                                                    panel_inches * nrows + 0.7),
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    for ax, (name, Z) in zip(axes.flat, embeddings):
        Z = np.asarray(Z, dtype=np.float64)
        Z2 = PCA(n_components=2, random_state=0).fit_transform(Z) if Z.shape[1] > 2 else Z
        xlim, ylim = _robust_limits(Z2[:, 0]), _robust_limits(Z2[:, 1])
        ax.scatter(Z2[:, 0], Z2[:, 1], c=cmap(y % 10), s=7, linewidths=0, alpha=0.85)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        outside = int(np.sum((Z2[:, 0] < xlim[0]) | (Z2[:, 0] > xlim[1])
                             | (Z2[:, 1] < ylim[0]) | (Z2[:, 1] > ylim[1])))
        if outside:
            ax.text(0.98, 0.02, f"{outside} outside", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=8, color="0.4")
        title = name if name not in scores else f"{name}\n3-NN acc {scores[name]:.3f}"
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], marker="o", linestyle="", color=cmap(d), markersize=8,
                      label=str(d)) for d in range(10)]
    fig.legend(handles=handles, loc="lower center", ncol=10, title="digit",
               frameon=False, fontsize=10)
    fig.suptitle("digits, test part: the first two principal axes of each embedding",
                 fontsize=13)
    fig.tight_layout(rect=(0, 0.7 / (panel_inches * nrows + 0.7), 1, 0.97))
    fig.savefig(path, dpi=dpi)
    size = tuple(int(round(v * dpi)) for v in fig.get_size_inches())
    plt.close(fig)
    return size


# --------------------------------------------------------------------------
# ClusterLDML quality target
# --------------------------------------------------------------------------
def cluster_ldml_digits_benchmark(seeds=(0, 1, 2, 3, 4), split=False, verbose=True,
                                  **params):
    """k-means ARI on digits in ClusterLDML's metric versus Euclidean k-means.

    For each seed ``s``: fit ``ClusterLDML(n_clusters=10, random_state=s,
    **params)`` on the digits pixels alone (no labels), then run k-means
    (10 clusters, ``random_state=s``) on ``transform(X)`` and on ``X`` and
    compare both with the true digits.

    Parameters
    ----------
    seeds : sequence of int
    split : bool, default=False
        False: all 1797 digits.  True: the 70% training part of
        :func:`load_digits_split` (``random_state=0``).
    verbose : bool
        Print one line per seed and the means.
    **params
        Passed to :class:`~fastmetric._learners.cluster_ldml.ClusterLDML`.

    Returns
    -------
    dict
        ``learned`` and ``euclidean`` (ARI per seed), ``fit_time`` (seconds
        per seed), ``n_rounds`` (per seed), ``gain`` (mean difference).
    """
    from sklearn.datasets import load_digits

    from fastmetric._learners.cluster_ldml import ClusterLDML

    if split:
        X, _, y, _ = load_digits_split()
    else:
        X, y = load_digits(return_X_y=True)
        X = X.astype(np.float64)
    learned, euclid, times, rounds = [], [], [], []
    for s in seeds:
        model = ClusterLDML(n_clusters=10, random_state=s, **params)
        t0 = time.perf_counter()
        model.fit(X)
        times.append(time.perf_counter() - t0)
        rounds.append(model.n_rounds_)
        learned.append(float(kmeans_ari(model.transform(X), y, seeds=(s,))[0]))
        euclid.append(float(kmeans_ari(X, y, seeds=(s,))[0]))
        if verbose:
            print(f"seed {s}: learned ARI {learned[-1]:.4f}  euclidean ARI {euclid[-1]:.4f}  "
                  f"rounds {model.n_rounds_}  fit {times[-1]:.2f} s", flush=True)
    result = {
        "learned": np.array(learned),
        "euclidean": np.array(euclid),
        "fit_time": np.array(times),
        "n_rounds": np.array(rounds),
        "gain": float(np.mean(learned) - np.mean(euclid)),
    }
    if verbose:
        print(f"mean: learned {np.mean(learned):.4f}  euclidean {np.mean(euclid):.4f}  "
              f"gain {result['gain']:+.4f}  fit {np.mean(times):.2f} s")
    return result
