"""Tests of the LDML learners (pairs and supervised) and their solvers (the objective
and its start-up scale: tests/core/objectives/test_ldml.py)."""
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import expit
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

import fastmetric._core.objectives.ldml as ldml_core
from fastmetric._core.distances import paired_mahalanobis_distances
from fastmetric._core.objectives.ldml import initial_scale_bias
from fastmetric._core.objectives.pair_loss import PairLossProblem
from fastmetric._core.sampling import sample_pairs
from fastmetric._learners.ldml import LDML, LDML_Supervised

from ..core.objectives.test_ldml import _numpy_objective

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(scope="module")
def iris_pairs(iris):
    X, y = iris
    idx, t = sample_pairs(y, 200, 200, random_state=0)
    return X, idx, t.astype(np.int64)


# --------------------------------------------------------------------------
# The fitted model
# --------------------------------------------------------------------------
def test_initial_scale_bias_keeps_a_fitted_model(iris_pairs):
    X, idx, t = iris_pairs
    est = LDML(preprocessor=X, tol=1e-10, max_iter=500, n_jobs=1, alpha=0).fit(idx, t)
    D = paired_mahalanobis_distances(X, idx, components=est.components_, squared=True)
    gamma, bias = initial_scale_bias(D, t.astype(float), None)
    # At an optimum of the log-loss alone (no pull) the scale of L is
    # optimal too: the warm start is kept.
    assert gamma == pytest.approx(1.0, abs=1e-3)
    assert bias == pytest.approx(est.bias_, rel=1e-3)


def test_fit_attributes_and_pair_model(iris_pairs):
    X, idx, t = iris_pairs
    # alpha=0: loss_ is then the pairs' log-loss alone, checked below
    est = LDML(preprocessor=X, random_state=0, n_jobs=1, alpha=0).fit(idx, t)
    k, d = est.components_.shape
    assert (k, d) == (4, 4) and est.n_features_in_ == 4
    assert est.n_iter_ >= 1 and len(est.loss_curve_) == est.n_iter_
    assert est.loss_ == pytest.approx(est.loss_curve_[-1])
    assert est.loss_ < 0.3  # iris pairs are easy
    assert_array_equal(est.classes_, [0, 1])  # t holds 0/1 labels: classes_ follows
    # The learned M is symmetric PSD.
    M = est.get_mahalanobis_matrix()
    assert_allclose(M, M.T)
    assert np.linalg.eigvalsh(M).min() >= -1e-10 * np.abs(M).max()
    # threshold_ is the distance where the model's P(similar) is 1/2, so
    # predict agrees with P(similar) > 1/2, i.e. d^2 < bias_ (ties at d^2 = bias_
    # have probability zero on real data).
    assert est.threshold_ == pytest.approx(np.sqrt(est.bias_))
    proba = est.predict_proba(idx)
    assert_allclose(proba.sum(axis=1), 1.0)
    d2 = est.pair_distance(idx) ** 2
    assert_allclose(proba[:, 1], expit(est.bias_ - d2), rtol=1e-10)
    assert_array_equal(est.predict(idx) == 1, proba[:, 1] > 0.5)
    assert_array_equal(est.predict(idx) == 1, d2 < est.bias_)
    assert est.score(idx, t) == pytest.approx(roc_auc_score(t, -np.sqrt(d2)))
    assert est.score(idx, t) > 0.95
    # The objective value reported is the real one.
    expected = _numpy_objective(X, idx, t, None, est.components_, est.bias_, 0.0, 0.0)
    assert est.loss_ == pytest.approx(expected, rel=1e-8)


def test_calibrate_threshold_on_ldml(iris_pairs):
    X, idx, t = iris_pairs
    est = LDML(preprocessor=X, random_state=0, n_jobs=1).fit(idx, t)
    # t holds 0/1 labels, so predict answers 0/1 (classes_ [0, 1]).
    acc_model = np.mean(est.predict(idx) == t)
    est.calibrate_threshold(idx, t, strategy="accuracy")
    assert np.mean(est.predict(idx) == t) >= acc_model
    est.calibrate_threshold(idx, t, strategy="max_tpr", min_rate=0.99)
    pred = est.predict(idx)
    assert np.mean(pred[t == 0] == 0) >= 0.99


def test_three_d_and_index_pairs_give_the_same_model(iris_pairs):
    X, idx, t = iris_pairs
    a = LDML(preprocessor=X, random_state=0, n_jobs=1).fit(idx, t)
    b = LDML(random_state=0, n_jobs=1).fit(X[idx], t)
    assert_allclose(a.components_, b.components_, rtol=1e-7, atol=1e-9)
    assert a.bias_ == pytest.approx(b.bias_, rel=1e-7)
    assert_allclose(a.pair_distance(idx), b.pair_distance(X[idx]), rtol=1e-7)
    # A callable preprocessor too.
    c = LDML(preprocessor=lambda i: X[i], random_state=0, n_jobs=1).fit(idx, t)
    assert_allclose(a.components_, c.components_, rtol=1e-7, atol=1e-9)


def test_label_conventions_give_the_same_model(iris_pairs):
    X, idx, t = iris_pairs
    a = LDML(preprocessor=X, n_jobs=1).fit(idx, t)
    b = LDML(preprocessor=X, n_jobs=1).fit(idx, 2 * t - 1)
    c = LDML(preprocessor=X, n_jobs=1).fit(idx, t.astype(bool))
    assert_array_equal(a.components_, b.components_)
    assert_array_equal(a.components_, c.components_)
    assert a.bias_ == b.bias_ == c.bias_


def test_sample_weight(iris_pairs):
    X, idx, t = iris_pairs
    w = np.ones(len(t))
    w[:50] = 2.0
    weighted = LDML(preprocessor=X, tol=1e-10, max_iter=300, n_jobs=1).fit(idx, t, w)
    dup = np.r_[np.arange(len(t)), np.arange(50)]
    duplicated = LDML(preprocessor=X, tol=1e-10, max_iter=300, n_jobs=1).fit(idx[dup], t[dup])
    assert weighted.loss_ == pytest.approx(duplicated.loss_, rel=1e-6)
    # Same optimum (up to the flat directions L-BFGS stops in).
    assert_allclose(weighted.pair_distance(idx), duplicated.pair_distance(idx), rtol=1e-3,
                    atol=1e-3)
    # Zero weights drop pairs.
    w0 = np.r_[np.ones(300), np.zeros(100)]
    order = np.r_[np.arange(150), np.arange(250, 400), np.arange(150, 250)]
    zero = LDML(preprocessor=X, n_jobs=1).fit(idx[order], t[order], w0)
    dropped = LDML(preprocessor=X, n_jobs=1).fit(idx[order][:300], t[order][:300])
    assert zero.loss_ == pytest.approx(dropped.loss_, rel=1e-5)
    with pytest.raises(ValueError, match="sample_weight"):
        LDML(preprocessor=X).fit(idx, t, np.zeros(len(t)))
    with pytest.raises(ValueError, match="sample_weight"):
        LDML(preprocessor=X).fit(idx, t, -w)


def test_same_random_state_same_model_any_thread_count(iris):
    X, y = iris
    models = []
    for limit in (1, 2):
        with threadpool_limits(limit):
            models.append(
                LDML_Supervised(n_pairs=1000, max_iter=30, random_state=0).fit(X, y)
            )
    assert_array_equal(models[0].components_, models[1].components_)
    assert models[0].bias_ == models[1].bias_
    for n_jobs in (1, 2):
        est = LDML_Supervised(n_pairs=1000, max_iter=30, random_state=0, n_jobs=n_jobs)
        assert_array_equal(est.fit(X, y).components_, models[0].components_)
    # The stochastic solver as well.
    adam = [
        LDML_Supervised(n_pairs=1000, solver="adam", batch_size=300, max_iter=5,
                        random_state=0, n_jobs=n_jobs).fit(X, y).components_
        for n_jobs in (1, 2)
    ]
    assert_array_equal(adam[0], adam[1])


def test_pickle_round_trip(iris_pairs):
    X, idx, t = iris_pairs
    est = LDML(preprocessor=X, normalize=True, random_state=0, n_jobs=1).fit(idx, t)
    est2 = pickle.loads(pickle.dumps(est))
    assert_array_equal(est.transform(X), est2.transform(X))
    assert_array_equal(est.predict_proba(idx), est2.predict_proba(idx))
    assert_array_equal(est.predict(idx), est2.predict(idx))
    sup = LDML_Supervised(n_pairs=500, random_state=0, n_jobs=1).fit(X, np.arange(150) // 50)
    assert_array_equal(sup.transform(X), pickle.loads(pickle.dumps(sup)).transform(X))


@pytest.mark.parametrize("init", ["auto", "identity", "pca", "lda", "covariance", "random"])
def test_all_inits_on_degenerate_data(init):
    rng = np.random.RandomState(0)
    base = rng.randn(12, 6)
    X = np.repeat(base, 3, axis=0)  # duplicated rows
    X[:, 4] = 3.0  # constant features
    X[:, 5] = 0.0
    y = np.repeat(np.arange(12) % 3, 3)
    n_components = 2 if init == "lda" else None
    est = LDML_Supervised(n_pairs=300, max_iter=20, init=init, n_components=n_components,
                          random_state=0, n_jobs=1).fit(X, y)
    assert np.isfinite(est.components_).all() and np.isfinite(est.bias_)
    # d > n: more features than samples.
    Xw = rng.randn(10, 30)
    yw = np.arange(10) % 2
    est = LDML_Supervised(n_pairs=100, max_iter=10, init=init,
                          n_components=1 if init == "lda" else None,
                          random_state=0, n_jobs=1).fit(Xw, yw)
    assert np.isfinite(est.components_).all()
    assert est.transform(Xw).shape == (10, 1 if init == "lda" else 30)


def test_init_array_and_fitted_learner_refine(iris_pairs):
    """The ClusterLDML path: LDML(init=L_array, preprocessor=X).fit(index_pairs, y)."""
    X, idx, t = iris_pairs
    # alpha=0: a pull would move the refit's optimum with its start
    first = LDML(n_components=2, preprocessor=X, random_state=0, n_jobs=1, alpha=0).fit(idx, t)
    L = first.components_.copy()
    refit = LDML(n_components=2, init=L, preprocessor=X, max_iter=5, random_state=0,
                 n_jobs=1, alpha=0).fit(idx, t)
    assert refit.components_.shape == (2, 4)
    assert_array_equal(L, first.components_)  # init array not modified
    # Starting at the optimum, a refit stays there.
    assert refit.loss_ <= first.loss_ + 1e-6
    assert_allclose(refit.pair_distance(idx), first.pair_distance(idx), rtol=0.05, atol=0.05)
    from_learner = LDML(init=first, preprocessor=X, max_iter=5, n_jobs=1, alpha=0).fit(idx, t)
    assert_allclose(from_learner.components_, refit.components_)
    with pytest.raises(ValueError, match="n_components"):
        LDML(n_components=3, init=L, preprocessor=X).fit(idx, t)


def test_alpha_pulls_toward_init(iris_pairs):
    X, idx, t = iris_pairs
    L_init = LDML(preprocessor=X, random_state=0, n_jobs=1).fit(idx, t).components_
    # New pairs that disagree with the first metric: only feature 0 matters.
    rng = np.random.RandomState(3)
    idx2 = rng.randint(0, 150, size=(300, 2))
    t2 = (np.abs(X[idx2[:, 0], 0] - X[idx2[:, 1], 0]) < 0.4).astype(float)
    moved = {}
    for alpha in (0.0, 10.0):
        est = LDML(init=L_init, alpha=alpha, preprocessor=X, n_jobs=1).fit(idx2, t2)
        moved[alpha] = np.linalg.norm(est.components_ - L_init)
    assert moved[10.0] < 0.5 * moved[0.0]


def _random_pairs(X, y, n_pairs, seed=0):
    rng = np.random.RandomState(seed)
    idx = rng.randint(0, len(X), (n_pairs, 2))
    return idx, np.where(y[idx[:, 0]] == y[idx[:, 1]], 1, -1)


def test_auto_pull_converges_where_the_log_loss_has_no_minimum():
    """400 random pairs of standardised digits: a metric nearly separates
    them, the log-loss alone has no minimum and its map keeps growing.  The
    default pull (1 % of the start's size) gives the loss a minimum; the
    held-out pair AUC and 3-NN accuracy were 0.747 and 0.791 without it."""
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-12)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                        random_state=0)
    idx, t = _random_pairs(X_train, y_train, 400)
    test_idx, test_t = _random_pairs(X_test, y_test, 2000, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LDML(preprocessor=X_train, random_state=0, n_jobs=1).fit(idx, t)
    plain = LDML(preprocessor=X_train, random_state=0, n_jobs=1, alpha=0).fit(idx, t)
    assert est.n_iter_ < est.max_iter
    assert np.linalg.norm(est.components_) < np.linalg.norm(plain.components_)

    def auc(model):
        return roc_auc_score(test_t, model.decision_function(X_test[test_idx]))

    assert auc(est) > auc(plain) + 0.05
    knn = KNeighborsClassifier(3).fit(est.transform(X_train), y_train)
    assert knn.score(est.transform(X_test), y_test) > 0.95


def test_auto_pull_does_not_depend_on_the_units():
    """'auto' is relative to the start's size: doubling the data halves the
    optimal map.  Run to a tight tolerance both fits reach it (the pull
    makes the minimum unique; without it the two maps ended 19 % apart, on
    a flat valley of the log-loss)."""
    X, y = load_iris(return_X_y=True)
    idx, t = _random_pairs(X, y, 300)
    kw = dict(random_state=0, n_jobs=1, tol=1e-12, max_iter=2000)
    one = LDML(**kw).fit(X[idx], t)
    two = LDML(**kw).fit(2.0 * X[idx], t)
    assert_allclose(2.0 * two.components_, one.components_, rtol=0,
                    atol=1e-4 * np.abs(one.components_).max())
    assert ldml_core.resolve_alpha("auto", np.zeros((2, 2))) == 0.0
    assert LDML_Supervised().get_params()["alpha"] == 0.0  # plenty of pairs there


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_stochastic_solvers(iris_pairs, solver):
    X, idx, t = iris_pairs
    lr = 0.05 if solver == "adam" else 0.002
    est = LDML(preprocessor=X, solver=solver, batch_size=64, max_iter=30, learning_rate=lr,
               random_state=0, n_jobs=1).fit(idx, t)
    assert len(est.loss_curve_) == est.n_iter_
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    assert est.score(idx, t) > 0.9
    again = LDML(preprocessor=X, solver=solver, batch_size=64, max_iter=30, learning_rate=lr,
                 random_state=0, n_jobs=1).fit(idx, t)
    assert_array_equal(est.components_, again.components_)


def test_supervised_stochastic_draws_pairs_per_minibatch(iris, monkeypatch):
    """Each minibatch draws its own pairs (memory bounded by batch_size); an
    epoch's minibatches together are one sample_pairs draw, fresh per epoch."""
    import fastmetric._core.sampling as sampling
    from fastmetric._core.sampling import sample_pairs

    X, y = iris
    calls = []
    original = sampling.LabelPairStream.draw

    def recording(self, seed, ps, npos, ns, nneg):
        pairs, t = original(self, seed, ps, npos, ns, nneg)
        calls.append((seed, npos + nneg, pairs[:npos], pairs[npos:]))
        return pairs, t

    monkeypatch.setattr(sampling.LabelPairStream, "draw", recording)
    est = LDML_Supervised(n_pairs=400, solver="adam", batch_size=100, max_iter=4, tol=0,
                          random_state=0, n_jobs=1).fit(X, y)
    assert est.n_iter_ == 4
    init, batches = calls[0], calls[1:]  # the first draw fits the initial bias
    assert init[1] == 400  # at most INIT_MAX_PAIRS: here all of epoch 0's pairs
    assert len(batches) == 4 * 4 and all(c[1] == 100 for c in batches)
    seeds = [c[0] for c in batches]
    assert len(set(seeds)) == 4  # fresh pairs every epoch
    labels = np.unique(y, return_inverse=True)[1]
    for epoch in range(4):
        part = batches[4 * epoch: 4 * epoch + 4]
        ref, _ = sample_pairs(labels, 200, 200, random_state=part[0][0])
        assert_array_equal(np.concatenate([c[2] for c in part]), ref[:200])
        assert_array_equal(np.concatenate([c[3] for c in part]), ref[200:])
    calls.clear()
    LDML_Supervised(n_pairs=400, max_iter=4, random_state=0, n_jobs=1).fit(X, y)
    assert len(calls) == 1  # L-BFGS: one fixed set


def test_normalize_is_consistent(iris):
    X, y = iris
    scales = np.random.RandomState(0).uniform(0.5, 3.0, size=(150, 1))
    a = LDML_Supervised(n_pairs=500, normalize=True, random_state=0, n_jobs=1).fit(X, y)
    b = LDML_Supervised(n_pairs=500, normalize=True, random_state=0, n_jobs=1).fit(
        X * scales, y)
    # Cosine geometry: rescaling points changes nothing.
    assert_allclose(a.components_, b.components_, rtol=1e-5, atol=1e-7)
    assert_allclose(a.transform(X), a.transform(X * scales), rtol=1e-10)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    assert_allclose(a.transform(X), Xn @ a.components_.T, rtol=1e-10)
    metric = a.get_metric()
    Z = a.transform(X)
    assert metric(X[0], X[60]) == pytest.approx(np.linalg.norm(Z[0] - Z[60]))


def test_float32_input(iris):
    X, y = iris
    est = LDML_Supervised(n_pairs=500, random_state=0, n_jobs=1).fit(X.astype(np.float32), y)
    assert est.components_.dtype == np.float64
    assert est.transform(X.astype(np.float32)).dtype == np.float32
    ref = LDML_Supervised(n_pairs=500, random_state=0, n_jobs=1).fit(X, y)
    assert est.loss_ == pytest.approx(ref.loss_, rel=1e-2)


# --------------------------------------------------------------------------
# Callback, verbose, non-finite guard
# --------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_callback_and_verbose(iris_pairs, capsys, solver):
    X, idx, t = iris_pairs
    seen = []

    def callback(estimator, iteration, loss):
        seen.append((iteration, loss, estimator.components_.copy()))
        return iteration == 3

    est = LDML(preprocessor=X, solver=solver, batch_size=100, callback=callback,
               verbose=True, n_jobs=1).fit(idx, t)
    assert [s[0] for s in seen] == [1, 2, 3]
    assert est.n_iter_ == 3
    assert_array_equal(seen[-1][2], est.components_)
    assert est.loss_ == seen[-1][1]
    out = capsys.readouterr().out
    assert "LDML" in out and "loss" in out
    assert len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) == 3


class _ExplodingProblem(PairLossProblem):
    """Returns NaN from the 4th evaluation on, like an overflowing kernel."""

    calls = 0

    def loss_grad(self, L, bias, n_threads=1, compute_gradient=True):
        type(self).calls += 1
        loss, g, gb = super().loss_grad(L, bias, n_threads, compute_gradient)
        if type(self).calls >= 4:
            return np.nan, g * np.nan, np.nan
        return loss, g, gb


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_non_finite_loss_stops_with_a_finite_model(iris_pairs, monkeypatch, solver):
    X, idx, t = iris_pairs
    monkeypatch.setattr(ldml_core, "PairLossProblem", _ExplodingProblem)
    _ExplodingProblem.calls = 0
    with pytest.warns(ConvergenceWarning, match="non-finite"):
        est = LDML(preprocessor=X, solver=solver, batch_size=200, n_jobs=1).fit(idx, t)
    assert np.isfinite(est.components_).all() and np.isfinite(est.bias_)
    assert np.isfinite(est.loss_)
    assert np.isfinite(est.predict_proba(idx)).all()


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------
def test_errors(iris, iris_pairs):
    X, idx, t = iris_pairs
    bad = X[idx].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LDML().fit(bad, t)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        LDML().fit(bad, t)
    with pytest.raises(ValueError, match=r"\(n_pairs, 2, n_features\)"):
        LDML().fit(np.zeros((10, 3, 4)), np.ones(10))
    with pytest.raises(ValueError, match="preprocessor"):
        LDML().fit(idx, t)
    with pytest.raises(ValueError, match="outside"):
        LDML(preprocessor=X).fit(idx + 100, t)
    for y_bad in (t + 1, np.where(t == 1, 1, 0.5) - 0.7, np.r_[t[:-1], -1]):
        with pytest.raises(ValueError, match="y"):
            LDML(preprocessor=X).fit(idx, y_bad)
    with pytest.raises(ValueError, match="n_pairs"):
        LDML(preprocessor=X).fit(idx, t[:-1])
    with pytest.raises(ValueError, match="lda"):
        LDML(preprocessor=X, init="lda").fit(idx, t)
    for params, exc in [
        (dict(solver="newton"), ValueError),
        (dict(max_iter=0), ValueError),
        (dict(max_iter=1.5), TypeError),
        (dict(alpha=-1.0), ValueError),
        (dict(tol=np.nan), ValueError),
        (dict(learning_rate=0.0), ValueError),
        (dict(batch_size=0), ValueError),
        (dict(n_components=7), ValueError),
        (dict(init="nope"), ValueError),
        (dict(callback=3), TypeError),
    ]:
        with pytest.raises(exc):
            LDML(preprocessor=X, **params).fit(idx, t)
    Xs, ys = iris
    with pytest.raises(ValueError, match="1 class"):
        LDML_Supervised().fit(Xs, np.zeros(150))
    with pytest.raises(ValueError, match="single sample"):
        LDML_Supervised().fit(Xs[:5], np.arange(5))
    with pytest.raises(ValueError, match="positive_fraction"):
        LDML_Supervised(positive_fraction=1.0).fit(Xs, ys)
    with pytest.raises(ValueError, match="n_pairs"):
        LDML_Supervised(n_pairs=1).fit(Xs, ys)
    Xn = Xs.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LDML_Supervised().fit(Xn, ys)
    with pytest.raises(ValueError, match="at most"):
        LDML_Supervised(init="lda", n_components=3).fit(Xs, ys)
    fitted = LDML(preprocessor=X, n_jobs=1).fit(idx, t)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[idx][:, :, :3])


# --------------------------------------------------------------------------
# scikit-learn integration
# --------------------------------------------------------------------------
def test_supervised_in_pipeline_grid_search_cross_val(iris):
    X, y = iris
    base = LDML_Supervised(n_pairs=300, max_iter=20, random_state=0, n_jobs=1)
    pipe = make_pipeline(base, KNeighborsClassifier(n_neighbors=3))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.85
    grid = GridSearchCV(
        pipe, {"ldml_supervised__n_components": [1, 2], "ldml_supervised__alpha": [0.0, 1.0]},
        cv=2,
    ).fit(X, y)
    assert grid.best_estimator_.steps[0][1].components_.shape[0] == (
        grid.best_params_["ldml_supervised__n_components"]
    )
    cloned = clone(base)
    assert cloned.get_params() == base.get_params()
    assert not hasattr(cloned, "components_")


def test_pairs_learner_with_sklearn_model_selection(iris_pairs):
    X, idx, t = iris_pairs
    y = 2 * t - 1
    pairs = X[idx]
    est = LDML(max_iter=30, random_state=0, n_jobs=1)
    auc = cross_val_score(est, pairs, y, cv=3)  # default score: ROC AUC
    assert auc.mean() > 0.9
    for scoring in ("accuracy", "roc_auc", "neg_log_loss", "f1"):
        s = cross_val_score(est, pairs, y, cv=3, scoring=scoring)
        assert np.isfinite(s).all()
    acc = cross_val_score(est, pairs, y, cv=3, scoring="accuracy")
    assert acc.mean() > 0.85
    grid = GridSearchCV(LDML(preprocessor=X, max_iter=30, n_jobs=1),
                        {"n_components": [2, 4]}, cv=3).fit(idx, y)
    assert grid.best_score_ > 0.9
    cloned = clone(grid.best_estimator_)
    assert_array_equal(cloned.preprocessor, X)  # clone deep-copies array params


# --------------------------------------------------------------------------
# Quality
# --------------------------------------------------------------------------
def test_quality_on_digits():
    """Held-out pair ROC AUC on digits: learned metric vs Euclidean."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    pairs, t = sample_pairs(y_te, 2000, 2000, random_state=1)

    def auc(Z):
        d = np.linalg.norm(Z[pairs[:, 0]] - Z[pairs[:, 1]], axis=1)
        return roc_auc_score(t, -d)

    est = LDML_Supervised(n_pairs=10000, random_state=0, n_jobs=1).fit(X_tr, y_tr)
    auc_euclid, auc_ldml = auc(X_te), auc(est.transform(X_te))
    print(f"digits held-out pair AUC: Euclidean {auc_euclid:.4f}, LDML {auc_ldml:.4f}")
    assert auc_euclid == pytest.approx(0.867, abs=0.01)
    assert auc_ldml > auc_euclid + 0.07


def test_pairs_of_one_kind_only_raise(pair_data_small):
    X, idx = pair_data_small
    for y in (np.ones(len(idx)), -np.ones(len(idx)), np.zeros(len(idx))):
        with pytest.raises(ValueError, match="both similar and dissimilar"):
            LDML(preprocessor=X, max_iter=3).fit(idx, y)
    # soft targets of one value are a valid (if unusual) problem
    LDML(preprocessor=X, max_iter=3, random_state=0).fit(idx, np.full(len(idx), 0.7))


@pytest.fixture
def pair_data_small():
    rng = np.random.RandomState(0)
    X = rng.randn(30, 3)
    return X, rng.randint(0, 30, size=(50, 2))


def test_a_fit_converged_at_its_start_counts_the_start_up_step():
    """On well-separated blobs L-BFGS meets its tolerance right after the
    start-up fit of the scale and bias, which moved the map: n_iter_ is 1
    (with that objective in loss_curve_), not 0, which scikit-learn reads
    as no fitting (check_transformer_n_iter failed on LDML_Supervised)."""
    from sklearn.datasets import make_blobs
    from sklearn.utils.estimator_checks import check_transformer_n_iter

    X, y = make_blobs(n_samples=30, centers=[[0, 0, 0], [1, 1, 1]], random_state=0,
                      n_features=2, cluster_std=0.1)
    est = LDML_Supervised(random_state=0).fit(X, y)
    assert est.n_iter_ == 1 and est.loss_curve_ == [est.loss_]
    assert not np.allclose(est.components_, np.eye(3))
    check_transformer_n_iter("LDML_Supervised", LDML_Supervised(random_state=0))
