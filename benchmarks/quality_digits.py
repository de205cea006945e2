"""Quality of the LDML learners on scikit-learn's digits (no download).

Prints two tables:

1. LDML_Supervised against the Euclidean distance on the held-out part of a
   70/30 stratified split (random_state 0): ROC AUC of -distance on pairs
   drawn from the test part (half same digit, half different), and 3-NN
   accuracy.
2. ClusterLDML (10 groups, no labels) against plain k-means: the adjusted
   Rand index of k-means (10 clusters) against the true digits, in the
   learned metric and in the Euclidean one, for seeds 0..4 and on average.

Usage::

    python benchmarks/quality_digits.py [--seeds 0 1 2 3 4] [--split]
"""
import argparse
import time

from _report import nonnegative_int  # (also puts a checkout's fastmetric on sys.path)
from fastmetric import LDML_Supervised
from fastmetric._cli.demo import cluster_ldml_digits_benchmark, evaluate_embedding, load_digits_split
from fastmetric.pairwise import sample_pairs


def supervised_table():
    X_tr, X_te, y_tr, y_te = load_digits_split()
    pairs, same = sample_pairs(y_te, 2000, 2000, random_state=0)
    rows = [("Euclidean", None, evaluate_embedding(lambda Z: Z, X_tr, y_tr, X_te, y_te,
                                                   pairs=pairs, pair_labels=same))]
    model = LDML_Supervised(random_state=0)
    t0 = time.perf_counter()
    model.fit(X_tr, y_tr)
    rows.append(("LDML_Supervised", time.perf_counter() - t0,
                 evaluate_embedding(model.transform, X_tr, y_tr, X_te, y_te,
                                    pairs=pairs, pair_labels=same)))
    print("| method | fit (s) | held-out pair ROC AUC | 3-NN accuracy |")
    print("|---|---|---|---|")
    for name, t, m in rows:
        print(f"| {name} | {'-' if t is None else f'{t:.2f}'} | {m['auc']:.4f} | {m['knn3']:.4f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--split", action="store_true",
                        help="ClusterLDML on the 70%% training part instead of all 1797 digits")
    args = parser.parse_args(argv)
    print("## LDML_Supervised, digits raw pixels, 70/30 stratified split, random_state 0\n")
    supervised_table()
    print("\n## ClusterLDML (10 groups, no labels) vs Euclidean k-means, ARI against the digits\n")
    res = cluster_ldml_digits_benchmark(seeds=tuple(args.seeds), split=args.split, verbose=False)
    print("| seed | k-means ARI, ClusterLDML metric | k-means ARI, Euclidean | ClusterLDML fit (s) |")
    print("|---|---|---|---|")
    for s, a, b, t in zip(args.seeds, res["learned"], res["euclidean"], res["fit_time"]):
        print(f"| {s} | {a:.4f} | {b:.4f} | {t:.2f} |")
    print(f"| mean | {res['learned'].mean():.4f} | {res['euclidean'].mean():.4f} | "
          f"{res['fit_time'].mean():.2f} |")
    print(f"\ngain of ClusterLDML over Euclidean k-means: {res['gain']:+.4f} (goal >= +0.03)")


if __name__ == "__main__":
    main()
