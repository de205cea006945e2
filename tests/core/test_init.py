"""The one prior helper (fastmetric._core.init.prior_matrix) and the learners that use it.

ITML, LSML, SDML (prior=) and MMC (a square init=) check a user-given metric
the same way: one symmetry tolerance, one definiteness rule, fitted learners
accepted everywhere (their L^T L), one set of messages.
"""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning

from fastmetric import ITML, LSML, MMC, SDML, Covariance
from fastmetric._core.init import (
    PRIOR_NAMES,
    initialize_components,
    prior_matrix,
    unsaturated_start,
)


@pytest.fixture
def spd():
    rng = np.random.RandomState(0)
    A = rng.randn(4, 4)
    return A @ A.T + 4 * np.eye(4)


@pytest.fixture
def fitted():
    X = np.random.RandomState(1).randn(40, 4) * [1.0, 2.0, 0.5, 3.0]
    return Covariance().fit(X)


def test_identity_and_symmetric_array(spd):
    assert_array_equal(prior_matrix("identity", 3, "ITML"), np.eye(3))
    M0 = prior_matrix(spd, 4, "ITML")
    assert M0.dtype == np.float64 and M0.flags.c_contiguous
    assert_array_equal(M0, spd)
    assert_array_equal(prior_matrix(spd.astype(np.float32), 4, "ITML"),
                       spd.astype(np.float32).astype(np.float64))


def test_rounding_asymmetry_is_removed(spd):
    A = spd.copy()
    A[0, 1] += 1e-9 * np.abs(spd).max()
    M0 = prior_matrix(A, 4, "LSML")
    assert_array_equal(M0, M0.T)
    assert_array_equal(M0, 0.5 * (A + A.T))


def test_nearly_symmetric_is_rejected(spd):
    # 1e-6 of the largest entry: ITML's old np.allclose accepted this; the
    # one tolerance (1e-7 of the largest entry) rejects it for every learner.
    A = spd.copy()
    A[0, 1] += 1e-6 * np.abs(spd).max()
    with pytest.raises(ValueError, match="prior is not symmetric"):
        prior_matrix(A, 4, "ITML")


def test_fitted_learner_gives_its_metric(fitted):
    L = fitted.components_
    assert_array_equal(prior_matrix(fitted, 4, "SDML"), 0.5 * ((L.T @ L) + (L.T @ L).T))
    assert_array_equal(prior_matrix(fitted, 4, "SDML"), fitted.get_mahalanobis_matrix())


def test_bad_priors(spd):
    with pytest.raises(ValueError, match="not fitted"):
        prior_matrix(Covariance(), 4, "ITML")
    with pytest.raises(ValueError, match=r"prior='pca' is not one of"):
        prior_matrix("pca", 4, "ITML")
    with pytest.raises(TypeError, match="real array"):
        prior_matrix(None, 4, "ITML")
    with pytest.raises(TypeError, match="real array"):
        prior_matrix(np.array([["a"] * 4] * 4), 4, "ITML")
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        prior_matrix(np.eye(3), 4, "ITML")
    with pytest.raises(ValueError, match="NaN"):
        prior_matrix(np.full((4, 4), np.nan), 4, "ITML")
    with pytest.raises(np.linalg.LinAlgError, match="positive definite .SDML"):
        prior_matrix(np.diag([1.0, 1.0, 1.0, 0.0]), 4, "SDML")
    # definite=False (MMC's square init) only asks for symmetry.
    singular = np.diag([1.0, 1.0, 1.0, 0.0])
    assert_array_equal(prior_matrix(singular, 4, "MMC", what="init", definite=False), singular)
    with pytest.raises(ValueError, match="init is not symmetric"):
        prior_matrix(np.triu(np.ones((4, 4))), 4, "MMC", what="init", definite=False)
    assert PRIOR_NAMES == ("identity", "covariance", "random")


def test_init_and_prior_take_fitted_learners_the_same_way(fitted):
    X = np.random.RandomState(2).randn(10, 4)
    L0 = initialize_components(fitted, X)
    assert_array_equal(L0, fitted.components_)
    with pytest.raises(ValueError, match="init is an estimator .* not fitted"):
        initialize_components(Covariance(), X)


def _pair_problem():
    rng = np.random.RandomState(3)
    X = rng.randn(30, 4)
    idx = rng.randint(0, 30, size=(60, 2))
    y = np.where(np.abs(X[idx[:, 0], 0] - X[idx[:, 1], 0]) < 0.7, 1, -1)
    quads = rng.randint(0, 30, size=(60, 4))
    return X, idx, y, quads


def _fits(prior):
    """components_ of ITML, LSML and SDML fitted with ``prior``."""
    X, idx, y, quads = _pair_problem()
    return [
        ITML(prior=prior, max_iter=20, preprocessor=X, n_jobs=1).fit(idx, y).components_,
        LSML(prior=prior, max_iter=20, preprocessor=X, n_jobs=1).fit(quads).components_,
        SDML(prior=prior, preprocessor=X, n_jobs=1).fit(idx, y).components_,
    ]


def test_every_prior_learner_accepts_a_fitted_learner(fitted):
    # LSML and ITML refused a fitted learner before the one rule; SDML took it.
    for by_learner, by_matrix in zip(_fits(fitted), _fits(fitted.get_mahalanobis_matrix())):
        assert_array_equal(by_learner, by_matrix)


@pytest.mark.parametrize("make", [
    lambda X, prior: ITML(prior=prior, preprocessor=X, max_iter=5),
    lambda X, prior: LSML(prior=prior, preprocessor=X, max_iter=5),
    lambda X, prior: SDML(prior=prior, preprocessor=X),
])
def test_every_prior_learner_rejects_a_nearly_symmetric_prior(make, spd):
    X, idx, y, quads = _pair_problem()
    A = spd.copy()
    A[0, 1] += 1e-6 * np.abs(spd).max()
    est = make(X, A)
    with pytest.raises(ValueError, match="prior is not symmetric"):
        est.fit(quads) if isinstance(est, LSML) else est.fit(idx, y)


def test_mmc_square_init_uses_the_same_check(spd):
    X, idx, y, _ = _pair_problem()
    A = spd.copy()
    A[0, 1] += 1e-6 * np.abs(spd).max()
    with pytest.raises(ValueError, match="init is not symmetric"):
        MMC(init=A, preprocessor=X, max_iter=2).fit(idx, y)


def test_unsaturated_start():
    """Shrinks L so the median squared nearest-neighbour distance is 1, only when
    it is above 1; duplicates and constant data do not count as neighbours."""
    rng = np.random.RandomState(0)
    X = rng.rand(199, 5) * 40.0  # odd, and doubled still under the 500 sampled rows
    L = rng.randn(3, 5)
    S = unsaturated_start(L, X)
    factor = S[0, 0] / L[0, 0]
    assert 0 < factor < 1
    assert_allclose(S, factor * L)  # a scalar: the directions are kept
    Z = X @ S.T
    D = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    assert_allclose(np.median(D.min(axis=1)), 1.0, rtol=1e-10)
    # Already unsaturated: unchanged (the same values).
    small = X / 1000.0
    assert_array_equal(unsaturated_start(L, small), L)
    # Duplicated rows are skipped as neighbours: same result as without them.
    assert_allclose(unsaturated_start(L, np.vstack([X, X])), S)
    # Nothing to measure: one point, or every point the same.
    assert_array_equal(unsaturated_start(L, X[:1]), L)
    assert_array_equal(unsaturated_start(L, np.ones((10, 5))), L)


# --------------------------------------------------------------------------
# init from any fitted estimator with a linear map
# --------------------------------------------------------------------------
def _iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


@pytest.mark.parametrize("whiten", [False, True])
def test_init_from_pca_is_its_transform(whiten):
    from sklearn.decomposition import PCA

    X, _ = _iris()
    pca = PCA(n_components=2, whiten=whiten).fit(X)
    L = initialize_components(pca, X)
    assert L.shape == (2, 4)
    Z = pca.transform(X)
    assert_allclose((X - X[0]) @ L.T, Z - Z[0], atol=1e-10)
    if not whiten:
        assert_allclose(L, pca.components_, atol=1e-12)


def test_init_from_lda_uses_its_scalings_and_n_components():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y = _iris()
    for solver in ("svd", "eigen"):
        lda = LinearDiscriminantAnalysis(n_components=1, solver=solver).fit(X, y)
        L = initialize_components(lda, X)
        assert L.shape == (1, 4)
        assert_allclose(L, lda.scalings_[:, :1].T, rtol=1e-8, atol=1e-10)


def test_init_from_a_linear_model_is_its_coef():
    from sklearn.linear_model import Ridge

    X, y = _iris()
    model = Ridge().fit(X, np.eye(3)[y])
    assert_array_equal(initialize_components(model, X), model.coef_)


def test_init_refuses_unfitted_and_nonlinear_transformers():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import PolynomialFeatures, QuantileTransformer

    X, _ = _iris()
    with pytest.raises(ValueError, match=r"init is an estimator \(PCA\) that is not fitted"):
        initialize_components(PCA(n_components=2), X)
    quantile = QuantileTransformer(n_quantiles=20).fit(X)
    with pytest.raises(ValueError, match=r"QuantileTransformer\) whose transform is not linear"):
        initialize_components(quantile, X)
    poly = PolynomialFeatures(degree=2).fit(X)
    with pytest.raises(ValueError, match=r"PolynomialFeatures\) whose transform is not linear"):
        initialize_components(poly, X)
    with pytest.raises(ValueError, match="n_features"):
        initialize_components(PCA(n_components=2).fit(X), X[:, :3])


def test_every_learner_takes_a_fitted_transformer_as_init():
    """The one helper serves every learner: a PCA start for NCA and LDML."""
    from sklearn.decomposition import PCA

    from fastmetric import NCA, LDML_Supervised

    X, y = _iris()
    pca = PCA(n_components=2).fit(X)
    for learner in (NCA(init=pca, max_iter=1, n_jobs=1),
                    LDML_Supervised(init=pca, max_iter=1, random_state=0, n_jobs=1)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=1 on purpose
            learner.fit(X, y)
        assert learner.components_.shape == (2, 4)
