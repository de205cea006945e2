"""Clustering quality of ClusterLDML against k-means and LDA-k-means, and its semi-supervised use.

Prints three markdown tables (no download: scikit-learn's bundled data and
generated blobs):

1. ``main``: iris, wine and digits, raw and standardised ("std":
   StandardScaler first).  Adjusted Rand index (ARI) against the true
   classes, mean over the seeds, of k-means (10 restarts), LDA-k-means
   (below) and ClusterLDML with its defaults and ``n_clusters`` = the number
   of classes (its own clustering, ``labels_``).
2. ``other``: the same three methods on data of other shapes: breast
   cancer, blobs with features of very different scales, blobs with added
   noise features, unbalanced blobs, elongated (sheared) blobs, and data
   split into more groups than classes (iris, wine, breast cancer, digits
   and well separated blobs).
3. ``semi``: digits with 10 % of the points labelled (stratified, one split
   per seed) and the rest marked -1: 3-NN accuracy on the unlabelled 90 %
   (neighbours among the labelled 10 %) in the Euclidean metric, in
   LDML_Supervised fitted on the labelled 10 % alone, in ClusterLDML without
   labels and in ClusterLDML given the partial labels.

With ``--per-seed`` the clustering tables also print, under each row, the
ARI of every seed (k-means, LDA-k-means, ClusterLDML) and the inertia of
the k-means run: a mean over five seeds can hinge on one seed (the 2-D
blobs in 6 groups: k-means' seed 0 ends in its worst local optimum of 40
seeds, which happens to cut the blobs in a way the ARI favours).

LDA-k-means (Ding & Li, 2007) is implemented here, in a few lines: k-means,
then alternately LDA with shrinkage (``solver='eigen', shrinkage='auto'``)
fitted on the current clusters, projection to ``n_clusters - 1`` dimensions
and k-means there (10 restarts), until the clusters stop changing, at most
10 rounds.

Usage::

    python benchmarks/quality_clustering.py [--seeds 0 1 2 3 4] [--tables main other semi]
                                            [--per-seed]
"""
import argparse
import time
import warnings

from _report import nonnegative_int  # (also puts a checkout's fastmetric on sys.path)
import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_blobs
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from fastmetric import ClusterLDML, LDML_Supervised


def kmeans_labels(X, n_clusters, seed):
    return kmeans_fit(X, n_clusters, seed).labels_


def kmeans_fit(X, n_clusters, seed):
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(X)


def lda_kmeans_labels(X, n_clusters, seed, max_rounds=10):
    """LDA-k-means (Ding & Li 2007): k-means alternated with a shrunk LDA of its clusters."""
    labels = kmeans_labels(X, n_clusters, seed)
    for _ in range(max_rounds):
        if np.unique(labels).size < 2:
            break
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto",
                                         n_components=min(n_clusters - 1, X.shape[1]))
        new = kmeans_labels(lda.fit(X, labels).transform(X), n_clusters, seed)
        if adjusted_rand_score(labels, new) == 1.0:  # the same partition
            break
        labels = new
    return labels


def cluster_ldml_labels(X, n_clusters, seed):
    return ClusterLDML(n_clusters=n_clusters, random_state=seed).fit(X).labels_


def standardised(X):
    return StandardScaler().fit_transform(X)


def main_data():
    for name, loader in (("iris", load_iris), ("wine", load_wine), ("digits", load_digits)):
        X, y = loader(return_X_y=True)
        X = X.astype(np.float64)
        yield name, "raw", X, y, None
        yield name, "std", standardised(X), y, None


def other_data():
    X, y = load_breast_cancer(return_X_y=True)
    yield "breast cancer", "raw", X, y, None
    yield "breast cancer", "std", standardised(X), y, None
    X, y = make_blobs(n_samples=600, centers=4, n_features=6, cluster_std=1.5, random_state=1)
    scales = np.logspace(-2, 3, X.shape[1])  # features from 0.01 to 1000
    yield "blobs, scales 1e-2..1e3", "raw", X * scales, y, None
    rng = np.random.RandomState(2)
    X, y = make_blobs(n_samples=600, centers=4, n_features=4, cluster_std=1.0, random_state=2)
    noisy = np.hstack([X, 3.0 * rng.standard_normal((X.shape[0], 16))])
    yield "blobs + 16 noise features", "raw", noisy, y, None
    X, y = make_blobs(n_samples=[400, 150, 40, 10], n_features=5, cluster_std=1.2,
                      random_state=3)
    yield "unbalanced blobs (400/150/40/10)", "raw", X, y, None
    X, y = make_blobs(n_samples=600, centers=3, n_features=2, random_state=170)
    yield "sheared blobs", "raw", X @ np.array([[0.6, -0.64], [-0.41, 0.85]]), y, None
    for name, loader in (("iris", load_iris), ("wine", load_wine)):
        X, y = loader(return_X_y=True)
        yield f"{name}, 2x groups", "std", standardised(X), y, 2 * np.unique(y).size
        yield f"{name}, 2x groups", "raw", X, y, 2 * np.unique(y).size
    X, y = load_breast_cancer(return_X_y=True)
    yield "breast cancer, 2x groups", "std", standardised(X), y, 4
    X, y = load_digits(return_X_y=True)
    yield "digits, 15 groups", "raw", X.astype(np.float64), y, 15
    for seed, spread in ((4, 1.0), (6, 1.5)):
        X, y = make_blobs(n_samples=500, centers=3, n_features=2, cluster_std=spread,
                          random_state=seed)
        yield f"3 blobs in 2-D (seed {seed}), 2x groups", "raw", X, y, 6


def clustering_table(datasets, seeds, per_seed=False):
    print("| data | scale | k-means | LDA-k-means | ClusterLDML | ClusterLDML fit (s) |")
    print("|---|---|---|---|---|---|")
    for name, scale, X, y, n_clusters in datasets:
        k = n_clusters or np.unique(y).size
        scores = {"km": [], "lda": [], "cl": []}
        times, inertias = [], []
        for s in seeds:
            km = kmeans_fit(X, k, s)
            inertias.append(km.inertia_)
            scores["km"].append(adjusted_rand_score(y, km.labels_))
            scores["lda"].append(adjusted_rand_score(y, lda_kmeans_labels(X, k, s)))
            t0 = time.perf_counter()
            scores["cl"].append(adjusted_rand_score(y, cluster_ldml_labels(X, k, s)))
            times.append(time.perf_counter() - t0)
        km, lda, cl = (np.mean(scores[key]) for key in ("km", "lda", "cl"))
        print(f"| {name} | {scale} | {km:.3f} | {lda:.3f} | {cl:.3f} | {np.mean(times):.2f} |",
              flush=True)
        if per_seed:
            for i, s in enumerate(seeds):
                print(f"|   seed {s} | | {scores['km'][i]:.3f} (inertia {inertias[i]:.4g}) | "
                      f"{scores['lda'][i]:.3f} | {scores['cl'][i]:.3f} | {times[i]:.2f} |",
                      flush=True)


def knn_accuracy(transform, X_known, y_known, X_unknown, y_unknown):
    knn = KNeighborsClassifier(n_neighbors=3).fit(transform(X_known), y_known)
    return knn.score(transform(X_unknown), y_unknown)


def semi_supervised_table(seeds, fraction=0.1):
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64)
    print(f"| seed | Euclidean | LDML_Supervised (labelled {fraction:.0%}) | ClusterLDML, no "
          "labels | ClusterLDML, partial labels | semi-supervised fit (s) |")
    print("|---|---|---|---|---|---|")
    rows = []
    for s in seeds:
        known, unknown = train_test_split(np.arange(y.size), train_size=fraction, stratify=y,
                                          random_state=s)
        partial = np.full(y.size, -1)
        partial[known] = y[known]
        args = (X[known], y[known], X[unknown], y[unknown])
        supervised = LDML_Supervised(random_state=s).fit(X[known], y[known])
        unsupervised = ClusterLDML(n_clusters=10, random_state=s).fit(X)
        t0 = time.perf_counter()
        semi = ClusterLDML(n_clusters=10, random_state=s).fit(X, partial)
        fit_time = time.perf_counter() - t0
        row = [knn_accuracy(lambda Z: Z, *args), knn_accuracy(supervised.transform, *args),
               knn_accuracy(unsupervised.transform, *args), knn_accuracy(semi.transform, *args),
               fit_time]
        rows.append(row)
        print(f"| {s} | " + " | ".join(f"{v:.4f}" for v in row[:4]) + f" | {row[4]:.2f} |",
              flush=True)
    mean = np.mean(rows, axis=0)
    print("| mean | " + " | ".join(f"{v:.4f}" for v in mean[:4]) + f" | {mean[4]:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tables", nargs="+", default=["main", "other", "semi"],
                        choices=["main", "other", "semi"])
    parser.add_argument("--per-seed", action="store_true",
                        help="also print every seed's ARI (and k-means inertia) under each row")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # convergence chatter of LDA / k-means on small data
    seeds = args.seeds
    if "main" in args.tables:
        print(f"## ARI against the classes, mean over seeds {seeds}\n")
        clustering_table(main_data(), seeds, args.per_seed)
    if "other" in args.tables:
        print(f"\n## Other data, ARI against the classes, mean over seeds {seeds}\n")
        clustering_table(other_data(), seeds, args.per_seed)
    if "semi" in args.tables:
        print("\n## Semi-supervised digits: 3-NN accuracy on the unlabelled 90 %\n")
        semi_supervised_table(seeds)


if __name__ == "__main__":
    main()
