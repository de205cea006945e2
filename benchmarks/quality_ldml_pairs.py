#!/usr/bin/env python
"""LDML from a few random pairs: the default pull (``alpha='auto'``) against
the plain log-loss (``alpha=0``).

A few hundred pairs can often be separated by some metric; the log-loss
alone then has no minimum, the map grows until ``max_iter`` (a
ConvergenceWarning) and generalises poorly.  For iris, wine, breast cancer
and digits, min-max scaled and standardised, a stratified 70/30 split: 100,
400 and 2,000 random pairs of training points (similar when of one class),
and for each fit its L-BFGS iterations (``W``: a ConvergenceWarning), the
3-NN accuracy of the test points in the learned metric and the ROC AUC of
``decision_function`` on 2,000 random pairs of test points::

    python benchmarks/quality_ldml_pairs.py [--alphas auto 0 0.01]

About 30 s on 2 cores.
"""
import argparse
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import minmax_scale, scale

from fastmetric import LDML

LOADERS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer,
           "digits": load_digits}
SCALINGS = {"min-max": minmax_scale, "standardised": scale}


def random_pairs(y, n_pairs, seed):
    rng = np.random.RandomState(seed)
    idx = rng.randint(0, len(y), (n_pairs, 2))
    return idx, np.where(y[idx[:, 0]] == y[idx[:, 1]], 1, -1)


def fit_scores(alpha, X_train, y_train, X_test, y_test, n_pairs):
    idx, t = random_pairs(y_train, n_pairs, 0)
    test_idx, test_t = random_pairs(y_test, 2000, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LDML(alpha=alpha, random_state=0).fit(X_train[idx], t)
    knn = KNeighborsClassifier(3).fit(est.transform(X_train), y_train)
    return (est.n_iter_, bool(caught), knn.score(est.transform(X_test), y_test),
            roc_auc_score(test_t, est.decision_function(X_test[test_idx])))


def alpha_value(text):
    """'auto' or a non-negative number (argparse type)."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 'auto' or a non-negative number, got {text!r}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", nargs="+", default=["auto", 0.0], type=alpha_value,
                        help="values of alpha to compare (default: auto 0)")
    alphas = parser.parse_args(argv).alphas
    print("| data | scaling | pairs | " + " | ".join(
        f"alpha={a}: iterations, 3-NN, AUC" for a in alphas) + " |")
    print("|---" * (3 + len(alphas)) + "|")
    totals = {a: [0, 0] for a in alphas}  # warnings, fits
    for name, load in LOADERS.items():
        X, y = load(return_X_y=True)
        for scaling, transform in SCALINGS.items():
            X_train, X_test, y_train, y_test = train_test_split(
                transform(X), y, test_size=0.3, stratify=y, random_state=0)
            for n_pairs in (100, 400, 2000):
                cells = []
                for alpha in alphas:
                    it, warned, knn, auc = fit_scores(alpha, X_train, y_train, X_test,
                                                      y_test, n_pairs)
                    totals[alpha][0] += warned
                    totals[alpha][1] += 1
                    cells.append(f"{it}{' W' if warned else ''}, {knn:.3f}, {auc:.3f}")
                print(f"| {name} | {scaling} | {n_pairs} | " + " | ".join(cells) + " |",
                      flush=True)
    print()
    for alpha, (warned, fits) in totals.items():
        print(f"alpha={alpha}: {warned} of {fits} fits stopped at max_iter (ConvergenceWarning)")


if __name__ == "__main__":
    main()
