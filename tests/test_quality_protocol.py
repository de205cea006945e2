"""The folds of benchmarks/quality_uci.py: DOB-SCV and the published sampling.

The comparison with the published numbers is only as good as the folds it
draws, so the helpers that draw them are checked here (no data download:
synthetic data only).
"""
import importlib.util
import os
import sys

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def quality_uci():
    path = os.path.join(ROOT, "benchmarks", "quality_uci.py")
    spec = importlib.util.spec_from_file_location("quality_uci_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(path))  # for its `import _report`
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


def _data(n_per_class=(53, 31, 7), d=3, seed=0):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.normal(3 * c, 1.0, (n, d)) for c, n in enumerate(n_per_class)])
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    return X, y


@pytest.mark.parametrize("n_folds", [2, 5, 10])
def test_dobscv_is_a_stratified_partition(quality_uci, n_folds):
    X, y = _data()
    folds = quality_uci.dobscv_folds(X, y, n_folds, seed=3)
    assert len(folds) == n_folds
    tests = np.concatenate([test for _, test in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(y.size))  # each row tested once
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0
        assert train.size + test.size == y.size
        for c in np.unique(y):  # every class split as evenly as the folds allow
            in_test = np.sum(y[test] == c)
            assert np.floor(np.sum(y == c) / n_folds) <= in_test <= np.ceil(np.sum(y == c) / n_folds)


def test_dobscv_sends_near_neighbours_to_different_folds(quality_uci):
    # Tight pairs far apart: DOB-SCV puts the two rows of a pair in different
    # folds (each is the other's nearest neighbour), so that every test row
    # keeps its twin in the training folds.
    rng = np.random.RandomState(1)
    centres = rng.uniform(0, 100, (40, 2))
    X = np.repeat(centres, 2, axis=0) + rng.normal(0, 1e-3, (80, 2))
    y = np.zeros(80, dtype=int)
    fold = quality_uci.dobscv_assignment(X, y, 2, seed=0)
    assert np.all(fold[0::2] != fold[1::2])
    # Random stratified folds split far fewer of the pairs.
    random_fold = np.empty(80, dtype=int)
    for f, (_, test) in enumerate(StratifiedKFold(2, shuffle=True, random_state=0).split(X, y)):
        random_fold[test] = f
    assert np.sum(random_fold[0::2] != random_fold[1::2]) < 40


def test_dobscv_is_seeded_and_handles_duplicates_and_constant_features(quality_uci):
    X, y = _data()
    X[:, 1] = 7.0  # a constant feature
    X[5] = X[6]  # duplicate rows
    a = quality_uci.dobscv_assignment(X, y, 5, seed=11)
    np.testing.assert_array_equal(a, quality_uci.dobscv_assignment(X, y, 5, seed=11))
    assert not np.array_equal(a, quality_uci.dobscv_assignment(X, y, 5, seed=12))
    assert set(np.unique(a)) == set(range(5))


def test_published_sampling(quality_uci):
    X, y = _data(n_per_class=(300, 200, 100))
    # A large set of the published protocol: a fifth of its rows, stratified.
    Xs, ys, folds, note = quality_uci.protocol_folds(X, y, "ring", "pydml", 10, seed=0)
    assert note == "1/5 of the rows"
    np.testing.assert_array_equal(np.bincount(ys), [60, 40, 20])
    assert len(folds) == 10 and sum(test.size for _, test in folds) == ys.size
    # spambase: the 460-row file.
    Xs, ys, _, note = quality_uci.protocol_folds(X, y, "spambase", "pydml", 10, seed=0)
    assert ys.size == 460 and note == "460 rows"
    # A small set: whole, in DOB-SCV folds.
    Xs, ys, folds, note = quality_uci.protocol_folds(X, y, "wine", "pydml", 10, seed=0)
    assert ys.size == y.size and note == ""
    expected = quality_uci.dobscv_folds(X, y, 10, 0)
    for got, want in zip(folds, expected):
        np.testing.assert_array_equal(got[1], want[1])
    # The stratified protocol subsamples sets above max_samples only.
    Xs, ys, folds, note = quality_uci.protocol_folds(X, y, "ring", "stratified", 10, 0, 100)
    assert ys.size == 100 and note == "100 of the rows"


def test_run_fold_scores_retrieval_as_well_as_3nn(quality_uci):
    # Classes far apart: every test point's R training points of its class
    # come first, so MAP@R is 1; with the labels shuffled it is far lower.
    X, y = _data(n_per_class=(40, 30, 20), d=3)
    X = X + 20.0 * y[:, None]
    train, test = next(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    acc, seconds, warned, mapr = quality_uci.run_fold("synthetic", X, y, train, test,
                                                      "Euclidean")
    assert (acc, seconds, warned, mapr) == (1.0, 0.0, False, 1.0)
    shuffled = np.random.RandomState(0).permutation(y)
    _, _, _, mapr_noise = quality_uci.run_fold("synthetic", X, shuffled, train, test,
                                               "Euclidean")
    assert mapr_noise < 0.6
    acc, seconds, warned, mapr = quality_uci.run_fold("synthetic", X, y, train, test, "NCA")
    assert acc == 1.0 and mapr == pytest.approx(1.0) and seconds > 0 and warned is False


def test_summary_prints_no_map_at_r_for_runs_saved_without_it(quality_uci):
    results = {d: {m: {"acc": [0.9], "fit": [0.1], "warn": [False]}
                   for m in ("Euclidean", "NCA")} for d in ("a", "b")}
    rows = quality_uci.summary_rows({"results": results})
    assert all(np.isnan(row[4]) for row in rows)
    for d in results:
        for m in results[d]:
            results[d][m]["map@r"] = [0.5 if m == "NCA" else 0.25]
    rows = {row[0]: row for row in quality_uci.summary_rows({"results": results})}
    assert rows["NCA"][4] == 0.5 and rows["Euclidean"][4] == 0.25


def test_params_replace_a_learners_defaults(quality_uci, capsys):
    # --params: the settings reach the fitted learner of every fold, are
    # kept with the results and printed with the tables; bad ones fail early.
    X, y = _data(n_per_class=(40, 30, 20), d=3)
    train, test = next(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    params = {"NCA": {"max_iter": 1, "tol": 0.0}}
    est = quality_uci.make_learner("NCA", params)
    assert est.max_iter == 1 and est.random_state == 0
    assert quality_uci.make_learner("LMNN", params).get_params() == \
        quality_uci.make_learner("LMNN").get_params()
    # One L-BFGS iteration cannot converge: the fold records the warning.
    _, _, warned, _ = quality_uci.run_fold("synthetic", X, y, train, test, "NCA", True, params)
    assert warned is True
    _, _, warned, _ = quality_uci.run_fold("synthetic", X, y, train, test, "NCA")
    assert warned is False
    results = {d: {m: {"acc": [0.9], "fit": [0.1], "warn": [False], "map@r": [0.5]}
                   for m in ("Euclidean", "NCA")} for d in ("a", "b")}
    quality_uci.print_tables({"results": results, "subsampled": {}, "n_folds": 10,
                              "scale": True, "params": params})
    assert "NCA with settings other than its defaults (`--params`): max_iter=1, tol=0.0" \
        in capsys.readouterr().out
    with pytest.raises(SystemExit):
        quality_uci.main(["--learners", "NCA", "--params", "NCA", '{"solvr": 1}'])
    with pytest.raises(SystemExit):
        quality_uci.main(["--learners", "NCA", "--params", "NCA", "[1]"])
    assert "expected a JSON object" in capsys.readouterr().err


def test_no_scaling_fits_the_files_units(quality_uci, capsys, monkeypatch):
    # --no-scaling: the folds are not min-max scaled (a fold in mixed units
    # scores otherwise), and the tables say so and skip the published
    # comparison (its numbers are of scaled data).
    X, y = _data(n_per_class=(40, 30, 20), d=3)
    X = X * np.array([1e-3, 1.0, 1e3])
    train, test = next(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    raw = quality_uci.run_fold("synthetic", X, y, train, test, "Euclidean", False)
    scaled = quality_uci.run_fold("synthetic", X, y, train, test, "Euclidean", True)
    assert raw[0] != scaled[0]
    seen = {}

    def fake_evaluate(*args, **kwargs):
        seen.update(kwargs)
        results = {"iris": {m: {"acc": [0.9], "fit": [0.1], "warn": [False], "map@r": [0.5]}
                            for m in ("Euclidean", "NCA")}}
        return {"results": results, "subsampled": {}, "n_folds": 10,
                "scale": kwargs["scale"], "params": {}}

    monkeypatch.setattr(quality_uci, "evaluate", fake_evaluate)
    quality_uci.main(["--learners", "NCA", "--datasets", "iris", "--no-scaling", "--no-raw"])
    out = capsys.readouterr().out
    assert seen["scale"] is False
    assert "no scaling" in out and "Against the published numbers" not in out
