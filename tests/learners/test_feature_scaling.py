"""``feature_scaling`` of NCA, MLKR, LDML and LDML_Supervised: features in
different units.

From a start in the data's units, columns of small range carry no part of
the softmax's distances and get no gradient; ``feature_scaling='auto'``
computes a named start on the features divided by their ranges (powers of
two) and searches over ``L * ranges``.  The tests check the scales, that a
fit then depends on the columns' units only through ``components_``'s
columns (bit for bit, every solver), that data in one unit are fitted as
without it, and that it learns where the unscaled search stalls.
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from fastmetric import (
    ITML,
    LDML,
    LFDA,
    LMNN,
    MLKR,
    MMC,
    NCA,
    SDML,
    ClusterLDML,
    Covariance,
    ITML_Supervised,
    LDML_Supervised,
    LSML_Supervised,
    MMC_Supervised,
    RCA_Supervised,
    SCML_Supervised,
    SDML_Supervised,
)
from fastmetric._core.init import COMMON_RANGE_WINDOW, FEATURE_RANGE_RATIO, feature_scales

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Column ranges from 1e-3 to 1e3: six orders of magnitude.
UNITS = np.logspace(-3, 3, 8)


def classes_in_mixed_units(seed=0, n=300):
    X, y = make_classification(n_samples=n, n_features=8, n_informative=5, n_redundant=0,
                               n_classes=3, random_state=seed)
    return X * UNITS, y


def targets_in_mixed_units(seed=0, n=300):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 8)
    y = X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.1 * rng.randn(n)
    return X * UNITS, y


def holdout_accuracies(make, X, y):
    """3-NN accuracies on a 30 % stratified hold-out of ``(X, y)`` (raw
    units): of ``make()`` fitted on the raw features, of
    ``make(feature_scaling=None)`` there, and of ``make()`` fitted on
    standardised features (the reference a user who scales would get)."""
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                        random_state=0)

    def accuracy(transform):
        knn = KNeighborsClassifier(3).fit(transform(X_train), y_train)
        return knn.score(transform(X_test), y_test)

    std = StandardScaler().fit(X_train)
    on_std = make().fit(std.transform(X_train), y_train)
    return (accuracy(make().fit(X_train, y_train).transform),
            accuracy(make(feature_scaling=None).fit(X_train, y_train).transform),
            accuracy(lambda Z: on_std.transform(std.transform(Z))))


# ---------------------------------------------------------------------------
# feature_scales
# ---------------------------------------------------------------------------
def test_feature_scales_are_powers_of_two_near_the_ranges():
    X, _ = classes_in_mixed_units()
    scales = feature_scales(X)
    ranges = np.ptp(X, axis=0)
    mantissa, _ = np.frexp(scales)
    assert_array_equal(mantissa, 0.5)  # exact powers of two
    assert np.all(ranges / scales >= 2 ** -0.5) and np.all(ranges / scales <= 2 ** 0.5)
    assert_array_equal(feature_scales(X, "range"), scales)


def test_feature_scales_leave_data_in_one_unit_alone():
    X, _ = classes_in_mixed_units()
    # 'auto': ranges within FEATURE_RANGE_RATIO of each other, nothing to do
    assert feature_scales(MinMaxScaler().fit_transform(X)) is None
    assert feature_scales(StandardScaler().fit_transform(X)) is None
    same_unit = X / UNITS * np.linspace(1, 0.9 * FEATURE_RANGE_RATIO, 8)
    assert feature_scales(same_unit) is None
    assert feature_scales(X, None) is None
    # min-max columns have range exactly 1: even 'range' changes nothing
    assert feature_scales(MinMaxScaler().fit_transform(X), "range") is None
    # 'range' on standardised data: scales of a few units
    assert feature_scales(StandardScaler().fit_transform(X), "range") is not None


def test_feature_scales_constant_columns_and_extremes():
    X, _ = classes_in_mixed_units()
    X = np.column_stack([X, np.full(len(X), 7.0), 1e6 + 1e-12 * np.arange(len(X))])
    scales = feature_scales(X)
    assert_array_equal(scales[-2:], 1.0)  # constant, and rounding noise around 1e6
    assert feature_scales(np.ones((5, 3))) is None
    assert feature_scales(np.ones((1, 3))) is None  # one row: no range
    # ranges near the largest float do not overflow
    huge = np.array([[-1e308, 0.0], [1e308, 1e-300], [0.0, 2e-300]])
    scales = feature_scales(huge)
    assert np.all(np.isfinite(scales)) and np.all(scales > 0)
    assert np.all(np.isfinite(huge / scales))


def test_feature_scales_bring_extreme_data_in_one_unit_to_one():
    """Data in one unit whose largest range is outside COMMON_RANGE_WINDOW
    get one common power of two (constant columns keep 1); inside the
    window, and with ``common_scale=False``, nothing changes."""
    X01 = MinMaxScaler().fit_transform(classes_in_mixed_units()[0])
    low, high = COMMON_RANGE_WINDOW
    assert feature_scales(X01 * low) is None and feature_scales(X01 * high) is None
    for exponent in (-4, -30, -1000, 21, 40, 1000):
        assert_array_equal(feature_scales(X01 * 2.0 ** exponent), np.full(8, 2.0 ** exponent))
        assert feature_scales(X01 * 2.0 ** exponent, common_scale=False) is None
        assert feature_scales(X01 * 2.0 ** exponent, None) is None
    with_constant = np.column_stack([X01 * 1e-300, np.full(len(X01), 3.0)])
    scales = feature_scales(with_constant)
    assert scales[-1] == 1.0 and np.all(scales[:-1] == scales[0]) and scales[0] < 1e-299
    # subnormal data: a normal scale, and dividing by it is exact
    tiny = X01 * 1e-310
    scales = feature_scales(tiny)
    assert np.all(scales >= np.finfo(np.float64).tiny)
    assert_array_equal((tiny / scales) * scales, tiny)


# ---------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------
SOLVERS = [
    pytest.param(dict(), id="lbfgs"),
    pytest.param(dict(solver="adam", batch_size=32, n_candidates=64, learning_rate=0.02,
                      max_iter=3, tol=0.0), id="adam"),
    pytest.param(dict(solver="sgd", batch_size=32, n_candidates=64, learning_rate=0.01,
                      max_iter=3, tol=0.0), id="sgd"),
]


@pytest.mark.parametrize("learner, data", [(NCA, classes_in_mixed_units),
                                           (MLKR, targets_in_mixed_units)])
@pytest.mark.parametrize("params", SOLVERS)
def test_units_of_the_columns_only_rescale_the_map(learner, data, params):
    """Columns multiplied by powers of two: the same fit, bit for bit, with
    ``components_``'s columns divided by them (the start, the search and
    the stochastic solvers' per-feature steps all follow the units).
    Without feature scaling the fit differs."""
    X, y = data()
    units = np.ldexp(1.0, np.array([5, -7, 0, 12, -3, 9, -11, 2]))
    kw = dict(params, max_iter=params.get("max_iter", 15), random_state=0, n_jobs=1)
    fit = learner(**kw).fit(X, y)
    rescaled = learner(**kw).fit(X * units, y)
    assert fit.n_iter_ > 1
    assert_array_equal(rescaled.components_ * units, fit.components_)
    assert_array_equal(rescaled.transform(X * units), fit.transform(X))
    plain = learner(**kw, feature_scaling=None)
    assert not np.allclose(plain.fit(X * units, y).components_ * units, fit.components_)


@pytest.mark.parametrize("learner, data", [(NCA, classes_in_mixed_units),
                                           (MLKR, targets_in_mixed_units)])
def test_data_in_one_unit_fit_as_without_feature_scaling(learner, data):
    X, y = data()
    X = MinMaxScaler().fit_transform(X)
    kw = dict(max_iter=10, random_state=0, n_jobs=1)
    assert_array_equal(learner(**kw).fit(X, y).components_,
                       learner(**kw, feature_scaling=None).fit(X, y).components_)


def test_nca_learns_on_mixed_units():
    """The unscaled search stops within a few iterations (the small columns
    carry no gradient) near the Euclidean distance's accuracy; with
    feature scaling NCA scores as on standardised features."""
    X, y = classes_in_mixed_units(n=600)
    scaled, plain, on_std = holdout_accuracies(lambda **kw: NCA(random_state=0, **kw), X, y)
    assert NCA(feature_scaling=None).fit(X, y).n_iter_ < NCA().fit(X, y).n_iter_
    assert scaled > plain + 0.1
    assert scaled >= on_std - 0.03


def test_mlkr_learns_on_mixed_units():
    X, y = targets_in_mixed_units(n=400)
    scaled = MLKR(random_state=0).fit(X, y)
    plain = MLKR(random_state=0, feature_scaling=None).fit(X, y)
    # the two informative columns (ranges 1e-3 and 7e-3) dominate the map
    weight = np.linalg.norm(scaled.components_ * np.ptp(X, axis=0), axis=0)
    assert weight[:2].min() > weight[2:].max()
    weight_plain = np.linalg.norm(plain.components_ * np.ptp(X, axis=0), axis=0)
    assert weight_plain[:2].max() < weight_plain[2:].max()


@pytest.mark.parametrize("learner", [NCA, MLKR, LDML_Supervised, MMC_Supervised,
                                     SCML_Supervised, SDML_Supervised, LSML_Supervised,
                                     RCA_Supervised, LFDA, ITML_Supervised])
def test_feature_scaling_rejects_unknown_values(learner):
    X, y = classes_in_mixed_units(n=30)
    with pytest.raises(InvalidParameterError, match="feature_scaling"):
        learner(feature_scaling="std").fit(X, y)


def test_array_init_is_kept_and_the_search_is_scaled():
    """An array start is the user's map (not rescaled); the search still
    runs in the scaled coordinates."""
    X, y = classes_in_mixed_units()
    L0 = np.eye(8) / UNITS
    assert_array_equal(NCA(init=L0)._initial_components(X, y), L0)
    kw = dict(init=L0, max_iter=5, random_state=0, n_jobs=1)
    scaled = NCA(**kw).fit(X, y)
    plain = NCA(**kw, feature_scaling=None).fit(X, y)
    assert not np.allclose(scaled.components_, plain.components_)


# ---------------------------------------------------------------------------
# LDML
# ---------------------------------------------------------------------------
UNITS_OF_TWO = np.ldexp(1.0, np.array([5, -7, 0, 12, -3, 9, -11, 2]))


def labelled_pairs(X, y, n_pairs=400, seed=0):
    rng = np.random.RandomState(seed)
    a, b = rng.randint(0, len(X), size=(2, n_pairs))
    keep = a != b
    a, b = a[keep], b[keep]
    return np.stack([X[a], X[b]], axis=1), np.where(y[a] == y[b], 1, -1)


@pytest.mark.parametrize("params", SOLVERS)
@pytest.mark.parametrize("from_pairs", [False, True], ids=["labels", "pairs"])
def test_ldml_units_of_the_columns_only_rescale_the_map(params, from_pairs):
    """As for NCA: powers of two on the columns give the same fit, bit for
    bit, with ``components_``'s columns divided by them and the same bias
    (the start, its fitted scale and bias, L-BFGS over ``L * scales`` or the
    per-feature steps of Adam and SGD)."""
    X, y = classes_in_mixed_units()
    params = {k: v for k, v in params.items() if k != "n_candidates"}
    kw = dict(params, max_iter=params.get("max_iter", 15), random_state=0, n_jobs=1)
    if from_pairs:
        pairs, labels = labelled_pairs(X, y)
        data, scaled_data = (pairs, labels), (pairs * UNITS_OF_TWO, labels)
        learner = LDML
    else:
        data, scaled_data = (X, y), (X * UNITS_OF_TWO, y)
        learner = LDML_Supervised
    fit = learner(**kw).fit(*data)
    rescaled = learner(**kw).fit(*scaled_data)
    assert fit.n_iter_ > 1
    assert_array_equal(rescaled.components_ * UNITS_OF_TWO, fit.components_)
    assert rescaled.bias_ == fit.bias_
    plain = learner(**kw, feature_scaling=None).fit(*scaled_data)
    assert not np.allclose(plain.components_ * UNITS_OF_TWO, fit.components_)


def test_ldml_partial_fit_steps_follow_the_units():
    X, y = classes_in_mixed_units()
    kw = dict(solver="adam", batch_size=64, learning_rate=0.02, random_state=0, n_jobs=1)
    pairs, labels = labelled_pairs(X, y)
    fit = LDML(**kw)
    rescaled = LDML(**kw)
    for _ in range(2):
        fit.partial_fit(pairs, labels)
        rescaled.partial_fit(pairs * UNITS_OF_TWO, labels)
    assert_array_equal(rescaled.components_ * UNITS_OF_TWO, fit.components_)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_ldml_data_in_one_unit_fit_as_without_feature_scaling(solver):
    X, y = classes_in_mixed_units()
    X = StandardScaler().fit_transform(X)
    kw = dict(solver=solver, max_iter=10, random_state=0, n_jobs=1)
    auto = LDML_Supervised(**kw).fit(X, y)
    plain = LDML_Supervised(**kw, feature_scaling=None).fit(X, y)
    assert_array_equal(auto.components_, plain.components_)
    assert auto.bias_ == plain.bias_


# ---------------------------------------------------------------------------
# MMC (full-matrix L-BFGS)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("from_pairs", [False, True], ids=["labels", "pairs"])
def test_mmc_units_of_the_columns_only_rescale_the_map(from_pairs):
    """The start, the ridge of the constraint (taken in the scaled
    coordinates) and the L-BFGS search follow the units: powers of two on
    the columns give the same fit, ``components_``'s columns divided by
    them (to rounding: the log-det barrier's LU pivots on the magnitudes)."""
    X, y = classes_in_mixed_units()
    if from_pairs:
        pairs, labels = labelled_pairs(X, y)
        data, scaled_data, learner = (pairs, labels), (pairs * UNITS_OF_TWO, labels), MMC
    else:
        data, scaled_data = (X, y), (X * UNITS_OF_TWO, y)
        learner = MMC_Supervised
    kw = dict(random_state=0, n_jobs=1)
    fit = learner(**kw).fit(*data)
    rescaled = learner(**kw).fit(*scaled_data)
    assert fit.n_iter_ >= 1
    assert_allclose(rescaled.components_ * UNITS_OF_TWO, fit.components_, rtol=1e-8,
                    atol=1e-9 * np.abs(fit.components_).max())
    plain = learner(**kw, feature_scaling=None).fit(*scaled_data)
    assert not np.allclose(plain.components_ * UNITS_OF_TWO, fit.components_, rtol=1e-3)


def test_mmc_data_in_one_unit_and_other_solvers_unchanged():
    X, y = classes_in_mixed_units()
    kw = dict(random_state=0, n_jobs=1)
    X01 = MinMaxScaler().fit_transform(X)
    assert_array_equal(MMC_Supervised(**kw).fit(X01, y).components_,
                       MMC_Supervised(**kw, feature_scaling=None).fit(X01, y).components_)
    # the diagonal and projection solvers do not use it
    for other in (dict(diagonal=True), dict(solver="projection", max_iter=5)):
        assert_array_equal(
            MMC_Supervised(**kw, **other).fit(X, y).components_,
            MMC_Supervised(**kw, **other, feature_scaling=None).fit(X, y).components_)


# ---------------------------------------------------------------------------
# SCML_Supervised (a named basis)
# ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:As no value for `n_basis`")
@pytest.mark.parametrize("basis", ["lda", "triplet_diffs"])
def test_scml_units_of_the_columns_only_rescale_the_map(basis):
    """Triplets, basis and weights found on the scaled features: powers of
    two on the columns give the same triplets and weights, bit for bit, and
    ``basis_`` and ``components_`` with their columns divided by them."""
    X, y = classes_in_mixed_units(n=150)
    kw = dict(basis=basis, max_iter=2000, random_state=0, n_jobs=1)
    fit = SCML_Supervised(**kw).fit(X, y)
    rescaled = SCML_Supervised(**kw).fit(X * UNITS_OF_TWO, y)
    assert_array_equal(rescaled.triplets_, fit.triplets_)
    assert_array_equal(rescaled.weights_, fit.weights_)
    assert np.any(fit.weights_ > 0)
    assert_array_equal(rescaled.basis_ * UNITS_OF_TWO, fit.basis_)
    assert_array_equal(rescaled.components_ * UNITS_OF_TWO, fit.components_)
    plain = SCML_Supervised(**kw, feature_scaling=None).fit(X * UNITS_OF_TWO, y)
    assert not np.array_equal(plain.triplets_, fit.triplets_)


@pytest.mark.filterwarnings("ignore:As no value for `n_basis`")
def test_scml_array_basis_and_one_unit_unchanged():
    X, y = classes_in_mixed_units(n=150)
    kw = dict(max_iter=2000, random_state=0, n_jobs=1)
    X01 = MinMaxScaler().fit_transform(X)
    assert_array_equal(SCML_Supervised(**kw).fit(X01, y).components_,
                       SCML_Supervised(**kw, feature_scaling=None).fit(X01, y).components_)
    basis = np.random.RandomState(0).randn(20, X.shape[1]) / UNITS
    assert_array_equal(
        SCML_Supervised(basis=basis, **kw).fit(X, y).components_,
        SCML_Supervised(basis=basis, **kw, feature_scaling=None).fit(X, y).components_)


@pytest.mark.filterwarnings("ignore:As no value for `n_basis`")
@pytest.mark.parametrize("learner, margin", [(LDML_Supervised, 0.2), (MMC_Supervised, 0.1),
                                             (SCML_Supervised, 0.0)])
def test_learns_on_raw_wine(learner, margin):
    """Raw wine (column ranges 0.53 to 1,402): from the unscaled start LDML
    stops at once near the Euclidean distance (0.648) and MMC stays near it;
    with feature scaling each scores as on standardised features."""
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    scaled, plain, on_std = holdout_accuracies(lambda **kw: learner(random_state=0, **kw), X, y)
    assert scaled > plain + margin
    assert scaled >= on_std - 0.03
    assert scaled > 0.9  # the Euclidean distance: 0.648


# ---------------------------------------------------------------------------
# Learners fitted on the scaled features as a whole (SDML, LSML, RCA, LFDA)
# ---------------------------------------------------------------------------
WHOLE_FIT = [
    pytest.param(SDML_Supervised, dict(random_state=0), id="SDML_Supervised"),
    pytest.param(LSML_Supervised, dict(random_state=0, max_iter=50), id="LSML_Supervised"),
    pytest.param(RCA_Supervised, dict(random_state=0), id="RCA_Supervised"),
    pytest.param(ITML_Supervised, dict(random_state=0, max_iter=100), id="ITML_Supervised"),
    pytest.param(LFDA, dict(), id="LFDA"),
    pytest.param(LFDA, dict(embedding_type="orthonormalized"), id="LFDA-orthonormalized"),
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("learner, kw", WHOLE_FIT)
def test_whole_fits_follow_the_units(learner, kw):
    """The metric is learned on X / scales and its factor divided by them:
    powers of two on the columns give ``components_`` with its columns
    divided by them, bit for bit; without feature scaling the prior (or the
    shrinkage target, or the neighbours) is in the raw units and the fit
    differs.  Min-max data are fitted as without it."""
    X, y = classes_in_mixed_units(n=200)
    fit = learner(**kw).fit(X, y)
    rescaled = learner(**kw).fit(X * UNITS_OF_TWO, y)
    assert_array_equal(rescaled.components_ * UNITS_OF_TWO, fit.components_)
    plain = learner(**kw, feature_scaling=None).fit(X * UNITS_OF_TWO, y)
    assert not np.allclose(plain.components_ * UNITS_OF_TWO, fit.components_, rtol=1e-3)
    X01 = MinMaxScaler().fit_transform(X)
    assert_array_equal(learner(**kw).fit(X01, y).components_,
                       learner(**kw, feature_scaling=None).fit(X01, y).components_)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("learner", [SDML_Supervised, LSML_Supervised, ITML_Supervised])
def test_an_array_prior_is_the_users_metric(learner):
    """A prior given as an array is a metric of the raw features: no scaling."""
    X, y = classes_in_mixed_units(n=200)
    prior = np.diag(1.0 / np.ptp(X, axis=0) ** 2)
    kw = dict(prior=prior, random_state=0)
    assert_array_equal(learner(**kw).fit(X, y).components_,
                       learner(**kw, feature_scaling=None).fit(X, y).components_)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("learner, kw", WHOLE_FIT)
def test_whole_fits_learn_in_mixed_units(learner, kw):
    """On the mixed units (1e-3 to 1e3) the scaled fit scores within 0.03 of
    the fit on standardised features."""
    X, y = classes_in_mixed_units(n=600)
    scaled, _, on_std = holdout_accuracies(lambda **more: learner(**kw, **more), X, y)
    assert scaled >= on_std - 0.03


def test_mlkr_shrinks_a_saturated_start():
    """Features in one unit but large (every pair many squared units apart):
    from the unscaled identity each leave-one-out prediction is the nearest
    neighbour's target, the gradient vanishes and L-BFGS stops within a few
    iterations; the
    default start is shrunk (as NCA's) and learns."""
    rng = np.random.RandomState(0)
    X = rng.randn(300, 6)
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.randn(300)
    X = 30.0 * X  # one unit (no feature scaling), saturated kernel
    X_test = 30.0 * rng.randn(200, 6)
    y_test = np.sin(2 * X_test[:, 0] / 30.0)

    def r2(est):
        from sklearn.neighbors import KNeighborsRegressor

        knn = KNeighborsRegressor(5).fit(est.transform(X), y)
        return knn.score(est.transform(X_test), y_test)

    unscaled = MLKR(init=np.eye(6), random_state=0).fit(X, y)
    shrunk = MLKR(random_state=0).fit(X, y)
    assert unscaled.n_iter_ <= 3
    assert shrunk.n_iter_ > 10
    assert r2(shrunk) > r2(unscaled) + 0.2


def test_itml_given_bounds_are_raw_distances():
    """Bounds given by the user are distances of the raw data: no scaling."""
    X, y = classes_in_mixed_units(n=200)
    kw = dict(random_state=0, max_iter=50)
    bounds = (1.0, 100.0)
    assert_array_equal(
        ITML_Supervised(**kw).fit(X, y, bounds=bounds).components_,
        ITML_Supervised(**kw, feature_scaling=None).fit(X, y, bounds=bounds).components_)


# ---------------------------------------------------------------------------
# The fitted attribute feature_scales_
# ---------------------------------------------------------------------------
ALL_SCALING = [NCA, MLKR, LMNN, LDML_Supervised, MMC_Supervised, SCML_Supervised,
               SDML_Supervised, LSML_Supervised, ITML_Supervised, RCA_Supervised, LFDA]


def short_fit(learner, y):
    """The targets ``learner`` takes (MLKR: reals) and parameters for a short
    seeded fit."""
    if learner is MLKR:
        y = y.astype(float)
    kw = {"max_iter": 20} if "max_iter" in learner().get_params() else {}
    if learner is SCML_Supervised:
        kw = {"max_iter": 1000, "output_iter": 100}
    if "random_state" in learner().get_params():
        kw["random_state"] = 0
    return y, kw


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("learner", ALL_SCALING)
def test_feature_scales_attribute(learner, tmp_path):
    """``feature_scales_`` holds the scales the fit used: those of
    :func:`feature_scales` on mixed units, None on min-max data and with
    ``feature_scaling=None``; a model file keeps it."""
    import fastmetric

    X, y = classes_in_mixed_units(n=150)
    y, kw = short_fit(learner, y)
    fitted = learner(**kw).fit(X, y)
    assert_array_equal(fitted.feature_scales_, feature_scales(X))
    assert learner(**kw).fit(MinMaxScaler().fit_transform(X), y).feature_scales_ is None
    assert learner(**kw, feature_scaling=None).fit(X, y).feature_scales_ is None
    path = tmp_path / "model.npz"
    fastmetric.save(fitted, path)
    assert_array_equal(fastmetric.load(path).feature_scales_, fitted.feature_scales_)


# ---------------------------------------------------------------------------
# Data in one unit at an extreme scale
# ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("learner", [est for est in ALL_SCALING if est is not LFDA])
def test_extreme_scales_fit_as_a_range_of_one(learner):
    """Min-max data times 2^-30 or 2^40 are fitted as the min-max data (a
    range of one) and the map multiplied back, bit for bit: absolute
    tolerances and default bounds no longer stop the fit at its start (LDML,
    NCA, MMC, LSML and SDML returned their start on such data, SCML a zero
    metric)."""
    X, y = classes_in_mixed_units(n=120)
    X01 = MinMaxScaler().fit_transform(X)
    y, kw = short_fit(learner, y)
    ref = learner(**kw).fit(X01, y).components_
    for exponent in (-30, 40):
        fitted = learner(**kw).fit(X01 * 2.0 ** exponent, y)
        assert_array_equal(fitted.components_ * 2.0 ** exponent, ref)
        assert_array_equal(fitted.feature_scales_, np.full(8, 2.0 ** exponent))


def test_lfda_is_left_at_its_scale():
    """LFDA takes its scatters in the data's own unit and keeps orthonormal
    rows orthonormal: no common scale."""
    X, y = classes_in_mixed_units(n=120)
    X01 = MinMaxScaler().fit_transform(X) * 2.0 ** -30
    fitted = LFDA(embedding_type="orthonormalized").fit(X01, y)
    assert fitted.feature_scales_ is None
    assert_allclose(fitted.components_ @ fitted.components_.T, np.eye(8), atol=1e-10)


@pytest.mark.parametrize("learner", [RCA_Supervised, LFDA])
def test_a_metric_beyond_float64_is_a_clear_error(learner):
    """Subnormal data (1e-310) need a map near 1e310: the closed-form fits
    returned components_ of infinity; now a ValueError, and no map."""
    X, y = classes_in_mixed_units(n=60)
    est = learner()
    with pytest.raises(ValueError, match=r"beyond float64's range \(the data's non-zero "
                                         r"magnitudes run from .*e-31"):
        est.fit(MinMaxScaler().fit_transform(X) * 1e-310, y)
    assert not hasattr(est, "components_")


@pytest.mark.parametrize("learner", [NCA, MLKR])
def test_softmax_learners_on_float32_data_at_extreme_scales(learner):
    """The softmax problem is posed on X / scales: float32 data at 2^-100 or
    2^100 fit as at a range of one (their map, near 2^100, used to leave
    float32's range in the kernels: no iteration at 2^-100, a ValueError at
    2^100)."""
    X, y = classes_in_mixed_units(n=120)
    X01 = MinMaxScaler().fit_transform(X).astype(np.float32)
    if learner is MLKR:
        y = y.astype(float)
    ref = learner(random_state=0, max_iter=20).fit(X01, y)
    assert ref.n_iter_ > 1
    for exponent in (-100, 100):
        fitted = learner(random_state=0, max_iter=20).fit(X01 * np.float32(2.0 ** exponent), y)
        assert_array_equal(fitted.components_ * 2.0 ** exponent, ref.components_)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("learner, rtol", [(ITML, 0.0), (SDML, 0.0), (MMC, 0.0),
                                           (LDML, 1e-6)])
def test_pair_learners_at_extreme_scales(learner, rtol):
    """Pairs of min-max points times 2^-30 or 2^40 fit as at a range of one.
    MMC's log-det term is now taken in the scaled coordinates: on L it
    carried a constant that made L-BFGS stop after one step at 2^-30 (12 at
    a range of one, maps 38 % apart).  LDML's last bits differ at 2^-30.
    At 2^+-664 each is the same fit too; MMC, which fits data in one unit
    divided by their common scale, bit for bit."""
    X, y = classes_in_mixed_units(n=120)
    X01 = MinMaxScaler().fit_transform(X)
    rng = np.random.RandomState(0)
    idx = rng.randint(0, len(X01), (300, 2))
    labels = np.where(y[idx[:, 0]] == y[idx[:, 1]], 1, -1)
    kw = {"random_state": 0} if "random_state" in learner().get_params() else {}
    ref = learner(**kw).fit(X01[idx], labels)
    # 2^+-664 (about 1e+-200): scales whose squares overflow (LDML's pull
    # toward its start squared them: its objective was not finite there;
    # MMC's pair scatter and start, sums of squares in the data's units,
    # overflowed: it now fits the points divided by their common scale).
    for exponent in (-30, 40, -664, 664):
        fitted = learner(**kw).fit(X01[idx] * 2.0 ** exponent, labels)
        assert fitted.n_iter_ == ref.n_iter_
        assert_allclose(fitted.components_ * 2.0 ** exponent, ref.components_, rtol=rtol,
                        atol=rtol * np.abs(ref.components_).max())


EXTREME_LEARNERS = [*ALL_SCALING, Covariance, ClusterLDML]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("learner", EXTREME_LEARNERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("scale, dtype", [(1e-310, np.float64), (1e-40, np.float32),
                                          (2.0 ** -60, np.float64), (2.0 ** 60, np.float64),
                                          (1e300, np.float64)])
def test_every_learner_on_extreme_data_fits_finite_or_says_why(learner, scale, dtype):
    """Never a map of NaN or infinity, nor a crash: a finite fit whose
    transform of the training data is finite, or a ValueError with a message
    (subnormal data need a map beyond float64's range)."""
    X, y = classes_in_mixed_units(n=60)
    X = (MinMaxScaler().fit_transform(X) * scale).astype(dtype)
    y, kw = short_fit(learner, y)
    if learner is ClusterLDML:
        kw, y = {"n_clusters": 3, "random_state": 0, "max_rounds": 2}, None
    try:
        fitted = learner(**kw).fit(X, y)
    except ValueError as exc:
        assert str(exc).strip()
        return
    assert np.isfinite(fitted.components_).all()
    assert np.isfinite(fitted.transform(X)).all()


def test_float32_transform_beyond_float32_says_so():
    """A map fitted on tiny float64 data (entries near 1e40) sends float32
    rows of ordinary size beyond float32's range: transform returned
    infinity there; it now raises a ValueError that names the magnitudes and
    the float64 way out.  Rows it can map stay float32 and finite."""
    X, y = classes_in_mixed_units(n=60)
    X = MinMaxScaler().fit_transform(X)
    fitted = Covariance().fit(X * 1e-40)
    with pytest.raises(ValueError, match=r"beyond float32's range.*astype\(np\.float64\)"):
        fitted.transform(X.astype(np.float32))
    assert_allclose(fitted.transform(X), fitted.transform(X * 1e-40) * 1e40, rtol=1e-10)
    tiny = (X * 1e-40).astype(np.float32)
    Z = fitted.transform(tiny)
    assert Z.dtype == np.float32 and np.isfinite(Z).all()
    assert_allclose(Z, fitted.transform(tiny.astype(np.float64)), rtol=1e-6)


def test_float32_dask_transform_with_a_map_beyond_float32_says_so():
    """The lazy transform of a float32 dask array cast such a map to float32
    (infinity, then NaN rows); it now raises at once, as the in-memory
    transform does."""
    da = pytest.importorskip("dask.array")
    X, _ = classes_in_mixed_units(n=60)
    X = MinMaxScaler().fit_transform(X)
    fitted = Covariance().fit(X * 1e-40)
    assert np.abs(fitted.components_).max() > np.finfo(np.float32).max
    with pytest.raises(ValueError, match=r"beyond float32's range.*astype\(np\.float64\)"):
        fitted.transform(da.from_array(X.astype(np.float32), chunks=20))
    Z = fitted.transform(da.from_array(X, chunks=20)).compute()
    assert_allclose(Z, fitted.transform(X))
