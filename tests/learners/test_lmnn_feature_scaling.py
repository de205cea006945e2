"""LMNN's ``feature_scaling``: features in different units.

LMNN finds its target neighbours once, in the metric of its start, and
keeps impostors one unit (squared) beyond them: on raw data whose columns
span 1e-3 to 1e3 both are taken in the largest column's units.
``feature_scaling='auto'`` computes a named start on the features divided
by their ranges (powers of two, :func:`fastmetric._core.init.feature_scales`)
and searches over ``L * ranges`` (L-BFGS with its preconditioner, the
halving descent, and Adam/SGD with per-feature steps).  The tests check
that a fit then depends on the columns' units only through
``components_``'s columns (bit for bit, every solver), that data in one
unit are fitted as without it, and that it learns where the unscaled fit
does not.
"""
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import make_classification
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError

from fastmetric import LMNN
from fastmetric._core.init import feature_scales

from .test_feature_scaling import holdout_accuracies

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Column ranges from 1e-3 to 1e3: six orders of magnitude.
UNITS = np.logspace(-3, 3, 8)
# Powers of two the columns are multiplied by in the invariance tests.
POWERS = np.ldexp(1.0, np.array([5, -7, 0, 12, -3, 9, -11, 2]))


def classes_in_mixed_units(seed=0, n=240):
    X, y = make_classification(n_samples=n, n_features=8, n_informative=5, n_redundant=0,
                               n_classes=3, random_state=seed)
    return X * UNITS, y


STOCHASTIC = dict(batch_size=32, n_candidates=64, max_iter=3, convergence_tol=0.0)
SOLVERS = [
    pytest.param(dict(max_iter=15), id="lbfgs"),
    pytest.param(dict(solver="gd", max_iter=15, learn_rate=1e-3), id="gd"),
    pytest.param(dict(solver="adam", init_subsample=None, learning_rate=0.01, **STOCHASTIC),
                 id="adam"),
    pytest.param(dict(solver="adam", init_subsample=120, learning_rate=0.01, **STOCHASTIC),
                 id="adam-subsample"),
    pytest.param(dict(solver="sgd", init_subsample=None, learning_rate=1e-3, **STOCHASTIC),
                 id="sgd"),
]


@pytest.mark.parametrize("params", SOLVERS)
def test_units_of_the_columns_only_rescale_the_map(params):
    """Columns multiplied by powers of two: the same fit, bit for bit, with
    ``components_``'s columns divided by them (the start and its targets,
    the preconditioned search, the stochastic solvers' per-feature steps
    all follow the units).  Without feature scaling the fit differs."""
    X, y = classes_in_mixed_units()
    kw = dict(params, random_state=0, n_jobs=1)
    fit = LMNN(**kw).fit(X, y)
    rescaled = LMNN(**kw).fit(X * POWERS, y)
    assert fit.n_iter_ > 1
    assert np.all(np.isfinite(fit.components_))
    assert_array_equal(rescaled.components_ * POWERS, fit.components_)
    assert_array_equal(rescaled.transform(X * POWERS), fit.transform(X))
    assert rescaled.loss_ == fit.loss_
    plain = LMNN(**kw, feature_scaling=None).fit(X * POWERS, y)
    assert not np.allclose(plain.components_ * POWERS, fit.components_)


def test_auto_is_the_fit_on_the_scaled_features():
    """On mixed units, 'auto' is the fit on ``X / scales`` (data in one
    unit, which 'auto' leaves alone), its columns divided by the scales."""
    X, y = classes_in_mixed_units()
    scales = feature_scales(X)
    assert scales is not None
    kw = dict(max_iter=15, random_state=0, n_jobs=1)
    fit = LMNN(**kw).fit(X, y)
    on_scaled = LMNN(**kw).fit(X / scales, y)
    assert_array_equal(fit.components_, on_scaled.components_ / scales)


def test_partial_fit_follows_the_units():
    X, y = classes_in_mixed_units()
    kw = dict(solver="adam", init_subsample=None, batch_size=32, n_candidates=64,
              learning_rate=0.01, random_state=0, n_jobs=1)
    fit, rescaled = LMNN(**kw), LMNN(**kw)
    for rows in (slice(0, 120), slice(120, 240)):
        fit.partial_fit(X[rows], y[rows])
        rescaled.partial_fit(X[rows] * POWERS, y[rows])
    assert_array_equal(rescaled.components_ * POWERS, fit.components_)


def test_stochastic_steps_are_per_feature_on_mixed_units():
    X, y = classes_in_mixed_units()
    rng = check_random_state(0)
    _, _, step_scale = LMNN(solver="adam", init_subsample=None)._stochastic_init(X, y, rng)
    assert_array_equal(step_scale, 1.0 / feature_scales(X))
    X = MinMaxScaler().fit_transform(X)
    _, _, step_scale = LMNN(solver="adam", init_subsample=None)._stochastic_init(X, y, rng)
    assert np.ndim(step_scale) == 0


@pytest.mark.parametrize("params", SOLVERS)
@pytest.mark.parametrize("scaler", [MinMaxScaler, StandardScaler])
def test_data_in_one_unit_fit_as_without_feature_scaling(params, scaler):
    X, y = classes_in_mixed_units()
    X = scaler().fit_transform(X)
    assert feature_scales(X) is None
    kw = dict(params, random_state=0, n_jobs=1)
    assert_array_equal(LMNN(**kw).fit(X, y).components_,
                       LMNN(**kw, feature_scaling=None).fit(X, y).components_)


def test_extreme_global_scale_still_rescales_the_start():
    """Data in one unit at an extreme scale: without feature scaling the
    named start is brought to the margin's scale (``rescaled_start``) and
    the fit learns; 'auto' brings the data to a range of one by a common
    power of two, so that the fit is the same at 2^-80 and 2^-40, up to the
    scale.  On mixed units at that scale the scaled start is already
    there: the fit is that of the data at ordinary scale, its map
    multiplied back."""
    X, y = classes_in_mixed_units()
    kw = dict(max_iter=10, random_state=0, n_jobs=1)
    tiny = StandardScaler().fit_transform(X) * 2.0 ** -80
    plain = LMNN(**kw, feature_scaling=None).fit(tiny, y)
    assert plain.n_iter_ > 1 and 2.0 ** 77 < np.abs(plain.components_).max() < 2.0 ** 82
    fit = LMNN(**kw).fit(tiny, y)
    assert fit.n_iter_ > 1 and 2.0 ** 77 < np.abs(fit.components_).max() < 2.0 ** 82
    assert_array_equal(fit.components_ * 2.0 ** -40,
                       LMNN(**kw).fit(tiny * 2.0 ** 40, y).components_)
    fit = LMNN(**kw).fit(X, y)
    assert_array_equal(LMNN(**kw).fit(X * 2.0 ** -80, y).components_ * 2.0 ** -80,
                       fit.components_)


def test_array_init_is_kept_and_the_search_is_scaled():
    """An array start is the user's map (neither scaled nor rescaled); the
    search still runs in the scaled coordinates."""
    X, y = classes_in_mixed_units()
    L0 = np.eye(8) / UNITS
    assert_array_equal(LMNN(init=L0)._start(X, y, check_random_state(0), feature_scales(X)), L0)
    kw = dict(init=L0, max_iter=5, random_state=0, n_jobs=1)
    scaled = LMNN(**kw).fit(X, y)
    plain = LMNN(**kw, feature_scaling=None).fit(X, y)
    assert not np.allclose(scaled.components_, plain.components_)


def test_lmnn_learns_on_mixed_units():
    """Raw mixed units: the unscaled fit stays far below LMNN on
    standardised features (0.662 against 0.775 3-NN accuracy); with
    feature scaling it scores as on standardised features (0.779)."""
    X, y = make_classification(n_samples=800, n_features=10, n_informative=6, n_classes=3,
                               random_state=0)
    X = X * np.logspace(-3, 3, 10)
    scaled, plain, on_std = holdout_accuracies(lambda **kw: LMNN(random_state=0, **kw), X, y)
    assert scaled > plain + 0.08
    assert scaled >= on_std - 0.03


def test_feature_scaling_rejects_unknown_values():
    X, y = classes_in_mixed_units(n=30)
    with pytest.raises(InvalidParameterError, match="feature_scaling"):
        LMNN(feature_scaling="std").fit(X, y)
