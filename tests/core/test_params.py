"""One parameter check mechanism for every learner: scikit-learn's.

Each public estimator declares ``_parameter_constraints`` and wraps its fit
methods in ``sklearn.base._fit_context`` (the learners through
``fastmetric._core.params.fit_context``, which also holds BLAS to one
thread during the fit), so that scikit-learn's own
``BaseEstimator._validate_params`` checks the constructor parameters once per
fit, before any data is read, and raises ``InvalidParameterError`` naming the
parameter, the estimator and the value.
"""
import inspect
import re

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.datasets import load_iris
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

import fastmetric
from fastmetric._core import params as fm_params
from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.constraints import generate_knn_triplets
from fastmetric.neighbors import (
    MahalanobisKNeighborsTransformer,
    MahalanobisNeighbors,
    MahalanobisRadiusNeighborsTransformer,
)

ESTIMATORS = sorted(
    (getattr(fastmetric, name) for name in fastmetric.__all__
     if inspect.isclass(getattr(fastmetric, name))
     and issubclass(getattr(fastmetric, name), MahalanobisMixin)),
    key=lambda cls: cls.__name__,
)


# The neighbour estimators follow the same mechanism.
NEIGHBORS = [MahalanobisNeighbors, MahalanobisKNeighborsTransformer,
             MahalanobisRadiusNeighborsTransformer]
EVERY_ESTIMATOR = ESTIMATORS + NEIGHBORS


def _ids(cls):
    return cls.__name__


def test_every_learner_is_listed():
    assert len(ESTIMATORS) == 20


# --------------------------------------------------------------------------
# The mechanism itself
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", EVERY_ESTIMATOR, ids=_ids)
def test_no_learner_defines_its_own_validate_params(cls):
    # Nothing in fastmetric shadows scikit-learn's hook: every class of the
    # MRO that fastmetric defines leaves _validate_params to BaseEstimator.
    own = [klass.__qualname__ for klass in cls.__mro__
           if klass.__module__.startswith("fastmetric") and "_validate_params" in vars(klass)]
    assert own == []
    assert cls._validate_params is BaseEstimator._validate_params


@pytest.mark.parametrize("cls", EVERY_ESTIMATOR, ids=_ids)
def test_constraints_cover_exactly_the_constructor_parameters(cls):
    declared = set(cls._parameter_constraints)
    assert declared == set(cls().get_params(deep=False))


def _fit_methods(cls):
    for name in ("fit", "partial_fit"):
        method = inspect.getattr_static(cls, name, None)
        if method is not None:
            yield name, getattr(method, "fn", method)  # available_if descriptors


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
def test_learner_fit_methods_are_wrapped_in_fit_context(cls):
    # fastmetric._core.params.fit_context: scikit-learn's _fit_context with
    # BLAS held to one thread for the whole fit.
    for name, method in _fit_methods(cls):
        assert getattr(method, "__fastmetric_fit_context__", False), f"{cls.__name__}.{name}"


@pytest.mark.parametrize("cls", NEIGHBORS, ids=_ids)
def test_neighbor_fit_methods_are_wrapped_in_sklearn_fit_context(cls):
    # _fit_context's wrapper (code in sklearn/base.py) keeps the fit method it
    # wraps in __wrapped__.
    for name, method in _fit_methods(cls):
        assert hasattr(method, "__wrapped__"), f"{cls.__name__}.{name}"
        code = method.__code__
        assert code.co_filename.replace("\\", "/").endswith("sklearn/base.py"), (
            f"{cls.__name__}.{name}")


class _RecordsBlasThreads(BaseEstimator):
    """An estimator whose fit records BLAS's thread counts while it runs."""

    _parameter_constraints = {"alpha": [fm_params.reals(0)]}

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    @fm_params.fit_context
    def fit(self, X, y=None):
        self.blas_threads_ = _blas_thread_counts()
        return self


def _blas_thread_counts():
    from threadpoolctl import ThreadpoolController

    return [lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers]


def test_fit_context_holds_blas_to_one_thread_and_checks_parameters():
    from threadpoolctl import threadpool_limits

    if not _blas_thread_counts():
        pytest.skip("no BLAS library that threadpoolctl can control")
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_thread_counts()
        if max(before) < 2:
            pytest.skip("BLAS runs one thread here whatever the limit")
        est = _RecordsBlasThreads().fit(np.ones((3, 2)))
        assert est.blas_threads_ == [1] * len(before)
        assert _blas_thread_counts() == before        # given back after the fit
    with pytest.raises(InvalidParameterError, match="alpha"):
        _RecordsBlasThreads(alpha=-1.0).fit(np.ones((3, 2)))


@pytest.mark.parametrize("cls", EVERY_ESTIMATOR, ids=_ids)
def test_sklearn_param_validation_check(cls):
    # scikit-learn's own check: a value of no valid type, and an invalid value
    # of each constrained kind, make every fit method raise
    # InvalidParameterError "The '<name>' parameter of <Estimator> must be ...".
    check_param_validation(cls.__name__, cls())


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
def test_parameters_are_checked_before_the_data(cls):
    est = cls()
    name = "n_jobs" if "n_jobs" in est.get_params() else "preprocessor"
    est.set_params(**{name: object()})
    # None for each required argument of fit: no data at all.
    required = [p for p in list(inspect.signature(cls.fit).parameters.values())[1:]
                if p.default is inspect.Parameter.empty]
    args = [None] * len(required)
    with pytest.raises(InvalidParameterError, match=rf"'{name}' parameter of {cls.__name__}"):
        est.fit(*args)


# --------------------------------------------------------------------------
# Wrong types and out-of-range values, learner by learner
# --------------------------------------------------------------------------
# (estimator, parameter, values of a wrong type, values out of range)
BAD = [
    ("NCA", "max_iter", ["10", 2.0, True], [0, -3]),
    ("NCA", "tol", ["1e-3", True], [-1e-9, np.inf, np.nan]),
    ("NCA", "n_jobs", [1.5, "2", True], [0]),
    ("NCA", "init", [3.0], ["bogus"]),
    ("NCA", "n_components", [2.5, "2"], [0]),
    ("MLKR", "init", [object()], ["lda"]),
    ("MLKR", "callback", ["print"], []),
    ("LMNN", "n_neighbors", [2.0, True], [0]),
    ("LMNN", "min_iter", ["5"], [-1]),
    ("LMNN", "regularization", ["0.5"], [-0.1, 1.5]),
    ("LMNN", "learn_rate", [None], [0.0, -1.0]),
    ("LMNN", "solver", [1], ["newton"]),
    ("LMNN", "verbose", [1.5, "yes"], [-1]),
    ("ITML", "gamma", ["1", None, True], [0.0, -1.0, np.nan]),
    ("ITML", "prior", [1.0], ["lda"]),
    ("ITML", "convergence_threshold", [None], [-1.0]),
    ("ITML_Supervised", "n_constraints", [1.5], [0]),
    ("ITML_Supervised", "num_constraints", [1.5], [0]),
    ("MMC", "max_proj", [1.5], [0]),
    ("MMC", "diagonal", [1, "yes"], []),
    ("MMC", "diagonal_c", ["1"], [0.0, np.inf]),
    ("MMC", "logdet_reg", [None], ["always", -1.0]),
    ("MMC", "init", [1], ["pca"]),
    ("MMC_Supervised", "n_constraints", ["100"], [0]),
    ("SDML", "balance_param", ["0.5"], [-0.5]),
    ("SDML", "max_condition", [None], [1.0, 0.5]),
    ("SDML", "prior", [2], ["auto"]),
    ("SDML_Supervised", "random_state", ["0", 1.5], [-1]),
    ("LDML", "alpha", ["0"], [-1.0]),
    ("LDML", "solver", [None], ["newton"]),
    ("LDML", "batch_size", [10.0], [0]),
    ("LDML", "learning_rate", ["fast"], [0.0]),
    ("LDML", "n_iter_no_change", [1.0], [0]),
    ("LDML", "normalize", [1, "no"], []),
    ("LDML", "init", [1], ["lda"]),
    ("LDML_Supervised", "n_pairs", [100.0], [1]),
    ("LDML_Supervised", "positive_fraction", ["0.5"], [0.0, 1.0]),
    ("LDML_Supervised", "balanced", [0], []),
    ("ClusterLDML", "n_clusters", [2.0], [1, 0]),
    ("ClusterLDML", "update_rate", ["1"], [0.0, 1.5]),
    ("ClusterLDML", "max_rounds", [1.0], [-1]),
    ("ClusterLDML", "tol", ["x"], [-0.1, 1.1]),
    ("ClusterLDML", "kmeans", [3], ["spectral"]),
    ("ClusterLDML", "n_pairs_per_cluster", [100.0], [1]),
    ("ClusterLDML", "init", [1], ["lda"]),
    ("SCML", "beta", ["0"], [-1e-5]),
    ("SCML", "gamma", [None], [0.0]),
    ("SCML", "output_iter", [1.5], [0]),
    ("SCML", "basis", [None], ["lda"]),
    ("SCML", "n_basis", [10.0], [0]),
    ("SCML_Supervised", "k_genuine", [1.0], [0]),
    ("SCML_Supervised", "basis", [3], ["pca"]),
    ("LSML", "tol", [None], [-1.0]),
    ("LSML", "prior", [3], ["lda"]),
    ("LSML_Supervised", "weights", [3.0], []),
    ("RCA", "shrinkage", [None, True], [-0.1, 1.5, "ledoitwolf"]),
    ("RCA_Supervised", "chunk_size", [2.0], [1]),
    ("RCA_Supervised", "n_chunks", ["100"], [0]),
    ("LFDA", "k", [2.0], [0]),
    ("LFDA", "embedding_type", [1], ["orthogonal"]),
    ("LFDA", "shrinkage", ["ledoit_wolf"], [1.5]),
    ("Covariance", "shrinkage", [[0.5]], [2.0, "shrunk"]),
    ("Covariance", "preprocessor", [3], []),
]


def _bad_cases():
    for name, param, wrong_types, out_of_range in BAD:
        for kind, values in (("type", wrong_types), ("range", out_of_range)):
            for value in values:
                yield pytest.param(name, param, value, id=f"{name}-{param}-{kind}-{value!r}")


@pytest.mark.parametrize("name, param, value", list(_bad_cases()))
def test_bad_value_raises_naming_parameter_estimator_and_value(name, param, value):
    est = getattr(fastmetric, name)(**{param: value})
    pattern = rf"The '{param}' parameter of {name} must be .* Got {re.escape(repr(value))} instead"
    with pytest.raises(InvalidParameterError, match=pattern) as info:
        est._validate_params()
    # InvalidParameterError is both, so `except ValueError` and
    # `except TypeError` written against the old checks still catch it.
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


@pytest.mark.parametrize("name, param, value", [
    ("NCA", "max_iter", 0), ("LMNN", "regularization", 2.0), ("ITML", "gamma", 0.0),
    ("ClusterLDML", "n_clusters", 1), ("Covariance", "shrinkage", -1.0),
])
def test_fit_raises_before_any_work(name, param, value):
    X, y = load_iris(return_X_y=True)
    est = getattr(fastmetric, name)(**{param: value})
    with pytest.raises(InvalidParameterError, match=rf"'{param}' parameter of {name}"):
        est.fit(X, y)
    assert not hasattr(est, "components_")


def test_partial_fit_checks_the_parameters_on_its_first_call():
    X, y = load_iris(return_X_y=True)
    est = fastmetric.LDML_Supervised(solver="adam", batch_size=0)
    with pytest.raises(InvalidParameterError, match="'batch_size' parameter of LDML_Supervised"):
        est.partial_fit(X, y)


# --------------------------------------------------------------------------
# Valid edge values are accepted
# --------------------------------------------------------------------------
GOOD = [
    ("NCA", "max_iter", [1, np.int64(1), np.int32(5)]),
    ("NCA", "tol", [None, 0, 0.0, np.float32(1e-3)]),
    ("NCA", "n_jobs", [None, 1, -1, -2, np.int64(2)]),
    ("NCA", "verbose", [False, True, np.bool_(True), 0, 2]),
    ("NCA", "random_state", [None, 0, np.random.RandomState(0)]),
    ("NCA", "init", ["auto", "lda", np.eye(2, 4), [[1.0, 0, 0, 0]]]),
    ("NCA", "callback", [None, print]),
    ("LMNN", "regularization", [0, 1, 0.0, 1.0]),
    ("LMNN", "min_iter", [0]),
    ("ITML", "gamma", [np.inf, 1e-12, 1]),
    ("ITML", "convergence_threshold", ["deprecated", 0.0]),
    ("ITML_Supervised", "num_constraints", ["deprecated", None, 10]),
    ("MMC", "logdet_reg", ["auto", 0, 0.5]),
    ("MMC", "diagonal", [True, np.bool_(False)]),
    ("SDML", "max_condition", [1.0001, 10]),
    ("SDML", "prior", ["identity", "covariance", "random", np.eye(3)]),
    ("LDML_Supervised", "n_pairs", [None, 2]),
    ("LDML_Supervised", "positive_fraction", [1e-9, 0.999]),
    ("ClusterLDML", "tol", [0, 1, 0.5]),
    ("ClusterLDML", "update_rate", [1, 1e-3]),
    ("ClusterLDML", "max_rounds", [0]),
    ("ClusterLDML", "n_clusters", [2, np.int64(3)]),
    ("SCML", "beta", [0, 0.0]),
    ("SCML", "basis", ["triplet_diffs", np.eye(2)]),
    ("SCML_Supervised", "basis", ["lda", "triplet_diffs"]),
    ("RCA", "shrinkage", [0, 1, 0.5, "ledoit_wolf", "oas"]),
    ("RCA_Supervised", "chunk_size", [2]),
    ("LFDA", "shrinkage", [0, 1.0]),
    ("Covariance", "preprocessor", [None, np.eye(3), lambda idx: idx]),
]


@pytest.mark.parametrize("name, param, values", GOOD, ids=[f"{g[0]}-{g[1]}" for g in GOOD])
def test_valid_edge_values_are_accepted(name, param, values):
    for value in values:
        getattr(fastmetric, name)(**{param: value})._validate_params()


# Edge values such as max_iter=2 stop early on purpose.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_edge_values_fit():
    # Accepted values go through a whole fit, numpy scalars included.
    X, y = load_iris(return_X_y=True)
    nca = fastmetric.NCA(max_iter=np.int64(2), tol=0, n_jobs=np.int32(1)).fit(X, y)
    assert nca.n_iter_ <= 2
    lmnn = fastmetric.LMNN(regularization=1, max_iter=np.int64(3), min_iter=0,
                           convergence_tol=0).fit(X, y)
    assert np.isfinite(lmnn.components_).all()
    itml = fastmetric.ITML_Supervised(gamma=np.inf, max_iter=5, n_constraints=np.int64(20),
                                      random_state=0).fit(X, y)
    assert np.isfinite(itml.components_).all()
    cl = fastmetric.ClusterLDML(n_clusters=np.int64(3), max_rounds=0, tol=1,
                                random_state=0).fit(X)
    assert cl.labels_.max() <= 2


# --------------------------------------------------------------------------
# What stays in fit: checks that depend on the data or tie parameters
# --------------------------------------------------------------------------
def test_cluster_ldml_n_clusters_against_n_samples():
    X = np.random.RandomState(0).randn(4, 2)
    with pytest.raises(ValueError, match=r"n_clusters=5 samples; got n_samples=4"):
        fastmetric.ClusterLDML(n_clusters=5).fit(X)


def test_cluster_ldml_one_sample():
    # (scikit-learn's check_fit2d_1sample sets n_clusters=1, which the
    # constraints reject first; the one-sample message is checked here.)
    with pytest.raises(ValueError, match=r"at least 2 samples.*n_samples=1"):
        fastmetric.ClusterLDML(n_clusters=2).fit(np.ones((1, 3)))


def test_n_components_against_n_features():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=r"n_components=5 is invalid.*\[1, 4\]"):
        fastmetric.NCA(n_components=5).fit(X, y)


def test_scml_output_iter_against_max_iter():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=r"output_iter=20 must be at most max_iter=10"):
        fastmetric.SCML_Supervised(max_iter=10, output_iter=20).fit(X, y)


def test_mmc_logdet_reg_needs_the_full_lbfgs_solver():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=r"logdet_reg > 0 is only supported.*diagonal=True"):
        fastmetric.MMC_Supervised(logdet_reg=0.5, diagonal=True).fit(X, y)


# --------------------------------------------------------------------------
# The shared fragments and the public triplet function
# --------------------------------------------------------------------------
def test_shared_fragments_are_copies():
    a = fm_params.shared("max_iter")
    a["max_iter"].append(None)
    assert None not in fm_params.shared("max_iter")["max_iter"]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
def test_a_shared_parameter_has_one_rule_everywhere(cls):
    # n_jobs, verbose, callback, random_state, preprocessor, max_iter and
    # n_constraints obey the shared rule in every learner that has them.
    for name in ("n_jobs", "verbose", "callback", "random_state", "preprocessor",
                 "max_iter", "n_constraints", "n_components", "normalize"):
        if name in cls._parameter_constraints:
            assert repr(cls._parameter_constraints[name]) == repr(
                fm_params.shared(name)[name]), f"{cls.__name__}.{name}"


def test_booleans_are_not_numbers():
    assert not fm_params.integers(0).is_satisfied_by(True)
    assert not fm_params.reals(0).is_satisfied_by(np.bool_(False))
    assert fm_params.integers(0).is_satisfied_by(np.uint8(3))
    assert fm_params.reals(0, 1, closed="both").is_satisfied_by(np.float32(1.0))


@pytest.mark.parametrize("kwargs, name", [
    ({"k_genuine": 0}, "k_genuine"), ({"k_impostor": 1.5}, "k_impostor"),
    ({"n_jobs": 0}, "n_jobs"), ({"warn": "yes"}, "warn"),
])
def test_generate_knn_triplets_checks_its_parameters(kwargs, name):
    X, y = load_iris(return_X_y=True)
    with pytest.raises(InvalidParameterError,
                       match=rf"'{name}' parameter of generate_knn_triplets"):
        generate_knn_triplets(X, y, **kwargs)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
def test_init_stores_exactly_its_arguments(cls):
    # store_params sets every constructor argument, unchanged, and nothing
    # else: the attributes are exactly the signature's parameters.
    names = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    marker = {name: object() for name in names}
    est = cls(**marker)
    assert sorted(vars(est)) == sorted(names)
    for name in names:
        assert getattr(est, name) is marker[name], f"{cls.__name__}.{name}"
