"""The metric-learn-facing API, promise by promise (issue 17).

fastmetric promises that code written for metric-learn 0.7 runs after
``import fastmetric as metric_learn``.  ``tools/metric_learn_suite.py`` measures
that with metric-learn's own test suite; these are our own tests of the same
promises, one section per point of the issue, and they run without
metric-learn installed.
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError

from fastmetric import (
    ITML,
    LDML,
    LFDA,
    LSML,
    MMC,
    NCA,
    SCML,
    SDML,
    ITML_Supervised,
    LDML_Supervised,
    LSML_Supervised,
    MMC_Supervised,
    RCA_Supervised,
    SCML_Supervised,
    SDML_Supervised,
)
from fastmetric._core.init import initialize_components


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y


def _iris_pairs(X, y, n=120, seed=0):
    """Index pairs into iris, +1 for the same class, -1 otherwise."""
    rng = np.random.RandomState(seed)
    idx = rng.randint(0, len(X), size=(n, 2))
    idx = idx[idx[:, 0] != idx[:, 1]]
    return idx, np.where(y[idx[:, 0]] == y[idx[:, 1]], 1, -1)


PAIR_LEARNERS = [
    ITML(random_state=0),
    MMC(random_state=0),
    SDML(prior="covariance", balance_param=1e-5, random_state=0),
    LDML(random_state=0, max_iter=30),
]


# --------------------------------------------------------------------------
# 1. threshold_ is a distance: +1 when pair_distance <= threshold_
# --------------------------------------------------------------------------
@pytest.mark.parametrize("learner", PAIR_LEARNERS, ids=lambda e: type(e).__name__)
def test_threshold_is_a_distance(iris, learner):
    X, y = iris
    idx, t = _iris_pairs(X, y)
    est = learner.set_params(preprocessor=X).fit(idx, t)
    dist = est.pair_distance(idx)
    # After fit, predict follows the learned threshold on distances ...
    assert_array_equal(est.predict(idx), np.where(dist <= est.threshold_, 1, -1))
    # ... and the decision function stays a score, higher for closer pairs.
    assert_allclose(est.decision_function(idx), -dist)
    # A threshold set by hand is a distance too: the median splits the pairs.
    median = float(np.median(dist))
    est.set_threshold(median)
    assert est.threshold_ == median
    assert_array_equal(est.predict(idx) == 1, dist <= median)
    # Threshold 0 keeps only coincident pairs; a huge one accepts every pair.
    assert np.all(est.set_threshold(dist.max()).predict(idx) == 1)
    assert np.all(est.set_threshold(-1.0).predict(idx) == -1)


def test_identity_metric_toy_example():
    # With L = I and threshold half the distance of two points, pairs closer
    # than that are similar: the threshold is read as a distance.
    X = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 1.0], [10.0, 10.0]])
    est = ITML(preprocessor=X).fit([[0, 1], [0, 2], [1, 3], [2, 3]], [1, 1, -1, -1])
    est.components_ = np.eye(2)
    est.set_threshold(2.0)
    assert_array_equal(est.predict([[0, 2], [0, 1], [1, 2]]), [1, -1, -1])


def test_calibrated_threshold_is_a_distance(iris):
    X, y = iris
    idx, t = _iris_pairs(X, y)
    est = ITML(preprocessor=X, random_state=0).fit(idx, t)
    dist = est.pair_distance(idx)
    for kwargs in ({"strategy": "accuracy"}, {"strategy": "f_beta", "beta": 1.0},
                   {"strategy": "max_tpr", "min_rate": 0.5},
                   {"strategy": "max_tnr", "min_rate": 0.5}):
        est.calibrate_threshold(idx, t, **kwargs)
        assert dist.min() - 1 <= est.threshold_ <= 2 * dist.max()
        assert_array_equal(est.predict(idx) == 1, dist <= est.threshold_)


def test_ldml_threshold_is_the_distance_of_probability_one_half(iris):
    X, y = iris
    idx, t = _iris_pairs(X, y)
    est = LDML(preprocessor=X, random_state=0, max_iter=30).fit(idx, t)
    assert est.bias_ > 0
    assert est.threshold_ == pytest.approx(np.sqrt(est.bias_))
    # P(similar) = sigmoid(bias - d^2) is 1/2 at d = threshold_.
    at = np.array([[[0.0] * 4, [0.0] * 4]])
    at[0, 1, 0] = est.threshold_ / np.linalg.norm(est.components_[:, 0])
    assert est.predict_proba(at)[0, 1] == pytest.approx(0.5)


# --------------------------------------------------------------------------
# 2. preprocessor on every _Supervised learner
# --------------------------------------------------------------------------
SUPERVISED = [
    ITML_Supervised(n_constraints=40, random_state=0),
    MMC_Supervised(n_constraints=40, random_state=0),
    SDML_Supervised(n_constraints=40, prior="covariance", balance_param=1e-5,
                    random_state=0),
    LSML_Supervised(n_constraints=40, random_state=0),
    SCML_Supervised(n_basis=8, max_iter=200, output_iter=100, random_state=0),
    RCA_Supervised(n_chunks=20, random_state=0),
    LDML_Supervised(n_pairs=400, random_state=0, max_iter=20),
]


@pytest.mark.parametrize("learner", SUPERVISED, ids=lambda e: type(e).__name__)
def test_supervised_learners_take_a_preprocessor(iris, learner):
    X, y = iris
    assert "preprocessor" in learner.get_params()
    by_points = learner.set_params(preprocessor=None).fit(X, y).components_.copy()
    by_index = learner.set_params(preprocessor=X).fit(np.arange(len(X)), y)
    assert_allclose(by_index.components_, by_points, rtol=1e-10, atol=1e-12)
    # transform takes the same indices
    assert_allclose(by_index.transform(np.arange(5)), X[:5] @ by_index.components_.T)
    # float "indices" (a cast gone wrong) are named, not sent to the 2-D check
    with pytest.raises(ValueError, match=r"a 1-D X holds row identifiers \(integer indices\); "
                                         r"got 5 values of dtype float64"):
        by_index.transform(np.arange(5.0))


# --------------------------------------------------------------------------
# 3. get_metric with a hand-set 1-D components_ (one feature)
# --------------------------------------------------------------------------
def test_get_metric_with_one_dimensional_components():
    X = np.array([[0.0], [1.0], [3.0]])
    est = ITML(preprocessor=X).fit([[0, 1], [0, 2]], [1, -1])
    est.components_ = np.array([3.1])
    metric = est.get_metric()
    for u, v in [(5, 6.7), ([5], [6.7]), ([[5]], [[6.7]])]:
        assert metric(u, v) == pytest.approx(3.1 * 1.7)
        assert metric(u, v, squared=True) == pytest.approx((3.1 * 1.7) ** 2)


# --------------------------------------------------------------------------
# 4. calibrate_threshold(strategy='f_beta', beta=0): the precision
# --------------------------------------------------------------------------
def test_f_beta_with_beta_zero_maximises_the_precision():
    X = np.arange(6.0)[:, None]
    est = ITML(preprocessor=X).fit([[0, 1], [0, 5]], [1, -1])
    est.components_ = np.eye(1)
    idx = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [0, 5]])  # distances 1..5
    y = np.array([1, 1, -1, 1, -1])
    est.calibrate_threshold(idx, y, strategy="f_beta", beta=0)
    pred = est.predict(idx)
    precision = np.sum((pred == 1) & (y == 1)) / np.sum(pred == 1)
    assert precision == 1.0 and np.sum(pred == 1) >= 1
    # beta enters squared, as in metric-learn: -b and b give the same choice.
    est.calibrate_threshold(idx, y, strategy="f_beta", beta=-2.0)
    neg = est.threshold_
    est.calibrate_threshold(idx, y, strategy="f_beta", beta=2.0)
    assert est.threshold_ == neg


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "weird"}, 'Strategy can either be "accuracy", "f_beta" or "max_tpr" or '
     '"max_tnr". Got "weird" instead.'),
    ({"strategy": "max_tpr"}, "Parameter min_rate must be a number in[0, 1]. Got None instead."),
    ({"strategy": "max_tnr", "min_rate": 1.5},
     "Parameter min_rate must be a number in[0, 1]. Got 1.5 instead."),
    ({"strategy": "f_beta", "beta": "weird"},
     "Parameter beta must be a real number. Got <class 'str'> instead."),
])
def test_calibration_errors_use_metric_learns_messages(kwargs, message):
    X = np.arange(4.0)[:, None]
    est = ITML(preprocessor=X).fit([[0, 1], [0, 3]], [1, -1])
    with pytest.raises(ValueError) as raised:
        est.calibrate_threshold([[0, 1], [0, 3]], [1, -1], **kwargs)
    assert str(raised.value) == message


# --------------------------------------------------------------------------
# 5. float values for integer parameters: a ValueError (as metric-learn)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["max_iter", "output_iter", "batch_size", "n_basis"])
def test_scml_float_integer_parameters_raise_value_error(name):
    triplets = np.random.RandomState(0).randn(20, 3, 2)
    with pytest.raises(ValueError, match=name):
        SCML(**{name: 1.0}).fit(triplets)


@pytest.mark.parametrize("name", ["k_genuine", "k_impostor"])
def test_scml_supervised_float_integer_parameters_raise_value_error(iris, name):
    X, y = iris
    with pytest.raises(ValueError, match=name):
        SCML_Supervised(**{name: 3.0}).fit(X, y)


# --------------------------------------------------------------------------
# 6. a singular prior array: LinAlgError (a ValueError)
# --------------------------------------------------------------------------
def _singular_prior(d):
    v = np.arange(1.0, d + 1)
    return np.outer(v, v)  # rank 1


@pytest.mark.parametrize("make", [
    lambda P: ITML(prior=P, preprocessor=np.eye(3)).fit([[0, 1], [0, 2]], [1, -1]),
    lambda P: SDML(prior=P, preprocessor=np.eye(3)).fit([[0, 1], [0, 2]], [1, -1]),
    lambda P: LSML(prior=P, preprocessor=np.eye(3)).fit([[0, 1, 0, 2]]),
    lambda P: LSML_Supervised(prior=P, n_constraints=3).fit(np.eye(3).repeat(2, axis=0),
                                                           [0, 0, 1, 1, 2, 2]),
    lambda P: ITML_Supervised(prior=P, n_constraints=3).fit(np.eye(3).repeat(2, axis=0),
                                                           [0, 0, 1, 1, 2, 2]),
], ids=["ITML", "SDML", "LSML", "LSML_Supervised", "ITML_Supervised"])
def test_singular_prior_raises_linalg_error(make):
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        make(_singular_prior(3))
    assert issubclass(np.linalg.LinAlgError, ValueError)


# --------------------------------------------------------------------------
# 7. set_threshold before fit
# --------------------------------------------------------------------------
@pytest.mark.parametrize("learner", PAIR_LEARNERS, ids=lambda e: type(e).__name__)
def test_set_threshold_before_fit_is_not_fitted_error(learner):
    from sklearn.base import clone

    with pytest.raises(NotFittedError):
        clone(learner).set_threshold(0.5)


@pytest.mark.parametrize("value", ["ABC", None, [1, 2, 3], {"key": None}, (1, 2)])
def test_set_threshold_refuses_non_numbers_with_a_value_error(value):
    X = np.arange(4.0)[:, None]
    est = ITML(preprocessor=X).fit([[0, 1], [0, 3]], [1, -1])
    with pytest.raises(ValueError, match="Parameter threshold must be a real number") as raised:
        est.set_threshold(value)
    assert isinstance(raised.value, TypeError)  # and a TypeError, as before
    # Booleans are numbers (0 and 1), as metric-learn allows.
    assert est.set_threshold(True).threshold_ == 1.0


# --------------------------------------------------------------------------
# 8. a callable preprocessor takes any identifiers
# --------------------------------------------------------------------------
def _loader(X):
    rows = {f"id{i}": X[i] for i in range(len(X))}
    return lambda ids: np.array([rows[i] for i in ids])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # NCA max_iter=5
def test_loader_with_string_ids_in_point_learners(iris):
    X, y = iris
    ids = np.array([f"id{i}" for i in range(len(X))])
    for learner in (LFDA(k=5), NCA(max_iter=5, random_state=0),
                    ITML_Supervised(n_constraints=40, random_state=0)):
        by_points = learner.set_params(preprocessor=None).fit(X, y).components_.copy()
        by_ids = learner.set_params(preprocessor=_loader(X)).fit(ids, y)
        assert_allclose(by_ids.components_, by_points, rtol=1e-10, atol=1e-12)
        assert_allclose(by_ids.transform(ids[:3]), X[:3] @ by_ids.components_.T)


def test_loader_with_string_ids_in_pair_and_tuple_learners(iris):
    X, y = iris
    idx, t = _iris_pairs(X, y)
    names = np.array([f"id{i}" for i in range(len(X))])
    by_points = ITML(preprocessor=X, random_state=0).fit(idx, t)
    by_ids = ITML(preprocessor=_loader(X), random_state=0).fit(names[idx], t)
    assert_allclose(by_ids.components_, by_points.components_, rtol=1e-10)
    assert_allclose(by_ids.pair_distance(names[idx[:5]]), by_points.pair_distance(idx[:5]))
    quads = np.c_[idx[t == 1][:10], idx[t == -1][:10]]
    lsml = LSML(preprocessor=_loader(X), random_state=0).fit(names[quads])
    assert_allclose(lsml.components_,
                    LSML(preprocessor=X, random_state=0).fit(quads).components_, rtol=1e-10)


# --------------------------------------------------------------------------
# 9. init='auto': PCA only when n_components < min(n_features, n_samples)
# --------------------------------------------------------------------------
def test_auto_init_rule():
    rng = np.random.RandomState(0)
    X = rng.randn(5, 10)
    # n_samples (5) <= n_components (6) < n_features (10): identity.
    assert_array_equal(initialize_components("auto", X, n_components=6), np.eye(6, 10))
    # n_components (3) < min(10, 5): PCA, orthonormal rows spanning the data.
    L = initialize_components("auto", X, n_components=3)
    assert_allclose(L @ L.T, np.eye(3), atol=1e-12)
    assert not np.allclose(L, np.eye(3, 10))
    # With labels and n_components <= n_classes - 1: LDA.
    y = np.array([0, 0, 1, 1, 2])
    lda = initialize_components("lda", X, y=y, n_components=2)
    assert_allclose(initialize_components("auto", X, y=y, n_components=2), lda)
    # Through a learner: NCA on one class keeps its initial map, the identity.
    nca = NCA(n_components=6, random_state=0).fit(X, np.zeros(5))
    assert_array_equal(nca.components_, np.eye(6, 10))


# --------------------------------------------------------------------------
# 10. NCA with a single class
# --------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["identity", "pca"])
def test_nca_single_class_returns_the_initial_map(iris, init):
    X, _ = iris
    est = NCA(init=init, n_components=2, random_state=0).fit(X, np.zeros(len(X)))
    assert est.n_iter_ == 0
    assert_allclose(est.components_,
                    initialize_components(init, X, n_components=2, random_state=0))


# --------------------------------------------------------------------------
# 11. SCML's warnings
# --------------------------------------------------------------------------
def test_scml_warns_when_it_chooses_n_basis(iris):
    X, y = iris
    with pytest.warns(UserWarning, match=r"As no value for `n_basis` was selected, the "
                      r"number of basis will be set to n_basis= \d+"):
        SCML_Supervised(max_iter=100, output_iter=50, random_state=0).fit(X, y)


def test_scml_warns_when_it_lowers_the_dimension():
    # Triplets that only separate along the first feature, two basis
    # vectors: one weight ends positive, so L has one row.
    X = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, 3.0]])
    triplets = np.array([[0, 1, 2], [1, 0, 2], [3, 0, 2]])
    basis = np.eye(2)
    with pytest.warns(UserWarning, match="reduces the dimension to 1"):
        est = SCML(basis=basis, preprocessor=X, max_iter=200, output_iter=100,
                   random_state=0).fit(triplets)
    assert est.components_.shape == (1, 2)


# --------------------------------------------------------------------------
# 12. score_pairs: metric-learn's deprecation
# --------------------------------------------------------------------------
def test_score_pairs_warns_and_forwards_to_pair_distance(iris):
    X, y = iris
    idx, t = _iris_pairs(X, y)
    est = ITML(preprocessor=X, random_state=0).fit(idx, t)
    message = ("score_pairs will be deprecated in release 0.7.0. Use pair_score to compute "
               "similarity scores, or pair_distances to compute distances.")
    with pytest.warns(FutureWarning) as record:
        scores = est.score_pairs(idx)
    assert str(record[0].message) == message
    assert_array_equal(scores, est.pair_distance(idx))
    assert_array_equal(est.pair_score(idx), -scores)


# --------------------------------------------------------------------------
# metric-learn 0.7's renamed parameters: the old names still work, warned
# --------------------------------------------------------------------------
RENAMED = [  # (learner, old name, new name, value); every alias of metric-learn 0.7
    ("ITML", "convergence_threshold", "tol", 0.1),
    ("ITML_Supervised", "convergence_threshold", "tol", 0.1),
    ("ITML_Supervised", "num_constraints", "n_constraints", 40),
    ("LMNN", "k", "n_neighbors", 4),
    ("LSML_Supervised", "num_constraints", "n_constraints", 40),
    ("MMC", "convergence_threshold", "tol", 0.1),
    ("MMC_Supervised", "convergence_threshold", "tol", 0.1),
    ("MMC_Supervised", "num_constraints", "n_constraints", 40),
    ("RCA_Supervised", "num_chunks", "n_chunks", 30),
    ("SDML_Supervised", "num_constraints", "n_constraints", 40),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name, old, new, value", RENAMED, ids=lambda v: str(v))
def test_metric_learns_old_parameter_names_still_work(iris, name, old, new, value):
    """Code written for metric-learn 0.6 runs on 0.7 with a FutureWarning;
    on fastmetric too, with the same fit as the new name gives."""
    import fastmetric

    cls = getattr(fastmetric, name)
    X, y = iris
    kw = {"random_state": 0} if "random_state" in cls().get_params() else {}
    if name == "SDML_Supervised":
        kw.update(prior="covariance", balance_param=1e-5)
    if name in ("ITML", "MMC"):
        pairs, labels = _iris_pairs(X, y)
        data, target = X[pairs], labels
    else:
        data, target = X, y
    with pytest.warns(FutureWarning, match=f"{old} was renamed {new}"):
        old_fit = cls(**kw, **{old: value}).fit(data, target)
    new_fit = cls(**kw, **{new: value}).fit(data, target)
    assert_array_equal(old_fit.components_, new_fit.components_)
    assert old in cls().get_params() and cls().get_params()[old] == "deprecated"


@pytest.mark.parametrize("name", ["NCA", "LMNN", "ITML_Supervised", "LFDA", "RCA_Supervised",
                                  "MMC_Supervised", "SDML_Supervised", "LSML_Supervised",
                                  "LDML_Supervised", "SCML_Supervised"])
def test_learners_taught_by_classes_refuse_a_continuous_target(iris, name):
    """A regression target (non-integer floats) is refused with scikit-learn's
    message by every learner taught by class labels: MMC_, SDML_, LSML_ and
    LDML_Supervised made each value a class of its own."""
    import fastmetric

    X, y = iris
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        getattr(fastmetric, name)().fit(X, y + 0.5)
