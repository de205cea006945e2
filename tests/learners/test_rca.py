"""RCA, RCA_Supervised and the chunk sampler."""
import doctest
import pickle
import warnings

import numpy as np
import pytest
import scipy.linalg
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastmetric._core.sampling as chunks_module
from fastmetric import RCA, RCA_Supervised
from fastmetric._core.covariance import chunk_residuals
from fastmetric._core.sampling import sample_chunks


# --------------------------------------------------------------------------
# Chunk sampler
# --------------------------------------------------------------------------
def _check_chunk_properties(chunks, labels, n_chunks, chunk_size):
    assert chunks.shape == labels.shape and chunks.dtype == np.intp
    assigned = chunks[chunks >= 0]
    assert set(np.unique(chunks)) <= set(range(-1, n_chunks))
    # Every chunk holds exactly chunk_size samples (so chunks are disjoint:
    # each sample carries a single id), all of one label.
    assert_array_equal(np.bincount(assigned, minlength=n_chunks), chunk_size)
    for j in range(n_chunks):
        assert np.unique(labels[chunks == j]).shape[0] == 1


@pytest.mark.parametrize("n_chunks,chunk_size", [(1, 2), (40, 2), (25, 3), (0, 2), (60, 1)])
def test_chunk_properties(n_chunks, chunk_size):
    labels = np.random.RandomState(0).randint(0, 4, 120)
    chunks = sample_chunks(labels, n_chunks, chunk_size, random_state=3)
    _check_chunk_properties(chunks, labels, n_chunks, chunk_size)


def test_chunks_can_use_every_possible_chunk():
    labels = np.array([0] * 7 + [1] * 4 + [2] * 1 + [3] * 5)  # 3 + 2 + 0 + 2 = 7 chunks of 2
    chunks = sample_chunks(labels, 7, 2, random_state=0)
    _check_chunk_properties(chunks, labels, 7, 2)
    counts = np.bincount(labels[chunks >= 0], minlength=4)
    assert_array_equal(counts, [6, 4, 0, 4])


def test_chunks_depend_only_on_seed_and_threads_do_not_matter(monkeypatch):
    labels = np.random.RandomState(1).randint(0, 7, 3000)
    a = sample_chunks(labels, 500, 3, random_state=42, n_jobs=1)
    assert_array_equal(sample_chunks(labels, 500, 3, random_state=42, n_jobs=1), a)
    assert not np.array_equal(sample_chunks(labels, 500, 3, random_state=43), a)
    monkeypatch.setattr(chunks_module, "_MIN_MEMBERS_PER_THREAD", 1)  # really use threads
    assert_array_equal(sample_chunks(labels, 500, 3, random_state=42, n_jobs=2), a)
    assert_array_equal(sample_chunks(labels, 500, 3, random_state=42, n_jobs=4), a)
    # A RandomState seeded alike gives the same chunks.
    assert_array_equal(
        sample_chunks(labels, 50, 2, random_state=np.random.RandomState(5)),
        sample_chunks(labels, 50, 2, random_state=np.random.RandomState(5)),
    )


def test_chunk_classes_are_uniform_among_available_classes():
    # 3 classes of very different sizes; while all can supply chunks, each
    # chunk's class is uniform among them.
    labels = np.repeat([0, 1, 2], [400, 100, 40])
    counts = np.zeros(3)
    for seed in range(200):
        ch = sample_chunks(labels, 15, 2, random_state=seed)
        counts += np.bincount(labels[ch >= 0], minlength=3) / 2
    freq = counts / counts.sum()
    assert_allclose(freq, 1 / 3, atol=0.03)


def test_chunk_members_are_uniform_within_class():
    labels = np.zeros(10, dtype=int)
    hits = np.zeros(10)
    for seed in range(2000):
        hits += sample_chunks(labels, 1, 3, random_state=seed) >= 0
    assert_allclose(hits / 2000, 0.3, atol=0.04)


def test_chunk_labels_of_any_type():
    labels = np.array(["b", "a", "b", "a", "c", "b"])
    ch = sample_chunks(labels, 2, 2, random_state=0)
    _check_chunk_properties(ch, labels, 2, 2)


def test_chunk_errors():
    labels = np.array([0, 0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match=r"at most 2 chunks"):
        sample_chunks(labels, 3, 2)
    with pytest.raises(ValueError, match=r"at most 1 chunks"):
        sample_chunks(labels, 2, 3)
    with pytest.raises(ValueError, match="chunk_size"):
        sample_chunks(labels, 1, 0)
    with pytest.raises(TypeError, match="n_chunks"):
        sample_chunks(labels, 1.5, 2)
    with pytest.raises(TypeError, match="chunk_size"):
        sample_chunks(labels, 1, True)
    with pytest.raises(ValueError, match="n_chunks"):
        sample_chunks(labels, -1, 2)
    with pytest.raises(ValueError, match="missing"):
        sample_chunks(np.array([0.0, np.nan, 1.0]), 1, 1)
    with pytest.raises(ValueError, match="1-D"):
        sample_chunks(np.zeros((3, 2)), 1, 1)
    with pytest.raises(ValueError, match="empty"):
        sample_chunks(np.array([]), 1, 1)
    with pytest.raises(TypeError, match="n_jobs"):
        sample_chunks(labels, 1, 2, n_jobs=1.5)


def test_chunk_ids_beyond_int64_are_named():
    """uint64 chunk ids of 2^63 and more were reported as negative numbers
    (the int64 cast wrapped them)."""
    X = np.random.RandomState(0).randn(20, 3)
    chunks = np.arange(20, dtype=np.uint64) // 2
    chunks[0] = 2**63 + 5
    with pytest.raises(ValueError, match=r"chunks holds 9223372036854775813: chunk ids must "
                                         r"fit int64"):
        RCA().fit(X, chunks)
    with pytest.raises(ValueError, match=r"chunks holds 1e\+19: chunk ids must fit int64"):
        RCA().fit(X, np.where(chunks == chunks[0], 1e19, chunks.astype(float)))


def test_chunk_sampler_docstring():
    parser = doctest.DocTestParser()
    test = parser.get_doctest(sample_chunks.__doc__, {}, "sample_chunks", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert test.examples and runner.failures == 0


# --------------------------------------------------------------------------
# RCA against the defining formula
# --------------------------------------------------------------------------
def _chunk_data(n_chunks=60, size=3, d=4, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.randn(n_chunks, d) * 5
    A = rng.randn(d, d) + 2 * np.eye(d)
    X = np.repeat(centres, size, axis=0) + rng.randn(n_chunks * size, d) @ A.T
    chunks = np.repeat(np.arange(n_chunks), size)
    return X, chunks


def _within_covariance(X, chunks):
    """Direct formula: chunk-centred points, averaged over the chunked samples."""
    mask = chunks >= 0
    Z = X[mask].astype(np.float64).copy()
    ids = chunks[mask]
    for c in np.unique(ids):
        Z[ids == c] -= Z[ids == c].mean(axis=0)
    return Z.T @ Z / Z.shape[0]


def test_rca_is_inverse_within_chunk_covariance(dtype):
    X, chunks = _chunk_data()
    X = X.astype(dtype)
    rca = RCA(shrinkage=0.0).fit(X, chunks)
    Cw = _within_covariance(X, chunks)
    rtol = 1e-7 if dtype == np.float64 else 1e-3
    ref = np.linalg.inv(Cw)
    assert_allclose(rca.get_mahalanobis_matrix(), ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    # Symmetric square root: L = Cw^{-1/2}.
    assert_allclose(rca.components_, rca.components_.T, atol=1e-8)


def test_rca_whitens_the_chunks():
    X, chunks = _chunk_data()
    Z = RCA(shrinkage=0.0).fit(X, chunks).transform(X)
    assert_allclose(_within_covariance(Z, chunks), np.eye(X.shape[1]), atol=1e-8)


@pytest.mark.parametrize("a", [0.2, 1.0])
def test_rca_shrinkage_formula(a):
    X, chunks = _chunk_data()
    Cw = _within_covariance(X, chunks)
    C_a = (1 - a) * Cw + a * np.trace(Cw) / 4 * np.eye(4)
    M = RCA(shrinkage=a).fit(X, chunks).get_mahalanobis_matrix()
    assert_allclose(M, np.linalg.inv(C_a), rtol=1e-8)


def test_helmert_residuals_and_ledoit_wolf():
    X, chunks = _chunk_data(n_chunks=10, size=4)
    chunks = chunks.copy()
    chunks[:2] = -1          # a chunk of 2 left
    chunks[5] = 99           # a singleton chunk
    R, n_chunked, n_multi = chunk_residuals(X - X.mean(0), chunks)
    assert n_chunked == 38 and n_multi == 10
    # One residual per member beyond the first of each chunk.
    assert R.shape == (38 - 11, 4)  # 11 chunks (one a singleton)
    assert_allclose(R.T @ R / n_chunked, _within_covariance(X, chunks), rtol=1e-10)
    rca = RCA().fit(X, chunks)
    assert_allclose(rca.shrinkage_, ledoit_wolf_shrinkage(R, assume_centered=True), rtol=1e-10)


def test_rca_reduced_dimension_matches_generalised_eigenproblem():
    X, chunks = _chunk_data(d=5)
    rca = RCA(n_components=2, shrinkage=0.0).fit(X, chunks)
    Cw = _within_covariance(X, chunks)
    Ct = np.cov(X, rowvar=False)
    vals, vecs = scipy.linalg.eigh(Cw, Ct)
    L_ref = (vecs[:, :2] / np.sqrt(vals[:2])).T
    assert rca.components_.shape == (2, 5)
    assert_allclose(rca.get_mahalanobis_matrix(), L_ref.T @ L_ref, rtol=1e-6,
                    atol=1e-8 * np.abs(L_ref).max() ** 2)
    # The kept directions are whitened.
    assert_allclose(rca.components_ @ Cw @ rca.components_.T, np.eye(2), atol=1e-7)


def test_rca_chunk_ids_forms():
    X, chunks = _chunk_data()
    ref = RCA().fit(X, chunks).components_
    # Non-consecutive ids, -1 points, float-valued integer ids.
    assert_allclose(RCA().fit(X, chunks * 7 + 3).components_, ref)
    assert_allclose(RCA().fit(X, chunks.astype(float)).components_, ref)
    assert_allclose(RCA().fit(X, chunks.tolist()).components_, ref)
    extra = np.vstack([X, np.random.RandomState(0).randn(5, 4) * 100])
    with_none = np.r_[chunks, -np.ones(5, dtype=int)]
    assert_allclose(RCA(shrinkage=0.0).fit(extra, with_none).components_,
                    RCA(shrinkage=0.0).fit(X, chunks).components_, rtol=1e-8)


def test_rca_bad_chunks():
    X, chunks = _chunk_data()
    with pytest.raises(ValueError, match="requires y"):
        RCA().fit(X, None)
    with pytest.raises(ValueError, match="shape"):
        RCA().fit(X, chunks[:-1])
    with pytest.raises(ValueError, match="-2"):
        RCA().fit(X, np.where(chunks == 0, -2, chunks))
    with pytest.raises(ValueError, match="integer"):
        RCA().fit(X, chunks + 0.5)
    with pytest.raises(ValueError, match="NaN"):
        RCA().fit(X, np.where(chunks == 0, np.nan, chunks))
    with pytest.raises(TypeError, match="Unknown label type"):
        RCA().fit(X, np.array(["a"] * len(X)))
    with pytest.raises(ValueError, match="2 or more samples"):
        RCA().fit(X, np.arange(len(X)))
    with pytest.raises(ValueError, match="2 or more samples"):
        RCA().fit(X, -np.ones(len(X), dtype=int))
    with pytest.raises(ValueError, match="n_components"):
        RCA(n_components=5).fit(X, chunks)
    with pytest.raises(ValueError, match="shrinkage"):
        RCA(shrinkage=2).fit(X, chunks)
    with pytest.raises(ValueError, match="NaN|infinity"):
        RCA().fit(np.where(X > 3, np.inf, X), chunks)


def _assert_finite_psd(est, X):
    M = est.get_mahalanobis_matrix()
    assert np.isfinite(est.components_).all() and np.isrealobj(est.components_)
    assert np.linalg.eigvalsh(M).min() >= -1e-8 * np.abs(M).max()
    assert np.isfinite(est.transform(X)).all()


@pytest.mark.parametrize("case", ["constant_feature", "d>n", "duplicates", "few_chunks"])
@pytest.mark.parametrize("n_components", [None, 2])
def test_rca_degenerate_data(case, n_components):
    rng = np.random.RandomState(0)
    X, chunks = _chunk_data(n_chunks=10, size=2, d=4)
    if case == "constant_feature":
        X[:, 1] = 3.0
    elif case == "d>n":
        X = rng.randn(12, 30)
        chunks = np.repeat(np.arange(6), 2)
    elif case == "duplicates":
        X[1] = X[0]
        X[3] = X[2]
    else:
        chunks = np.full(len(X), -1)
        chunks[:2] = 0
    for shrinkage in ("ledoit_wolf", "oas", 0.0, 0.5):
        est = RCA(n_components=n_components, shrinkage=shrinkage).fit(X, chunks)
        _assert_finite_psd(est, X)


def test_rca_zero_within_chunk_variation_gives_identity():
    X = np.repeat(np.random.RandomState(0).randn(5, 3), 2, axis=0)
    with pytest.warns(UserWarning, match="identity"):
        rca = RCA().fit(X, np.repeat(np.arange(5), 2))
    assert_array_equal(rca.components_, np.eye(3))


# --------------------------------------------------------------------------
# RCA_Supervised
# --------------------------------------------------------------------------
def test_supervised_uses_the_sampled_chunks():
    rng = np.random.RandomState(0)
    X = rng.randn(90, 3)
    y = np.repeat([0, 1, 2], 30)
    est = RCA_Supervised(n_chunks=20, chunk_size=3, random_state=7).fit(X, y)
    chunks = sample_chunks(y, 20, 3, random_state=7)
    assert_allclose(est.components_, RCA().fit(X, chunks).components_)


def test_supervised_seed_and_threads():
    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]
    a = RCA_Supervised(n_chunks=60, random_state=3, n_jobs=1).fit(X, y).components_
    b = RCA_Supervised(n_chunks=60, random_state=3, n_jobs=2).fit(X, y).components_
    assert_array_equal(a, b)
    c = RCA_Supervised(n_chunks=60, random_state=4, n_jobs=1).fit(X, y).components_
    assert not np.allclose(a, c)


def test_supervised_errors():
    X = np.random.RandomState(0).randn(20, 3)
    y = np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match="at most 10 chunks"):
        RCA_Supervised(n_chunks=11).fit(X, y)
    with pytest.raises(ValueError, match="chunk_size"):
        RCA_Supervised(n_chunks=2, chunk_size=1).fit(X, y)
    with pytest.raises(TypeError, match="n_chunks"):
        RCA_Supervised(n_chunks=2.0).fit(X, y)
    with pytest.raises(ValueError, match="n_chunks"):
        RCA_Supervised(n_chunks=0).fit(X, y)
    with pytest.raises(ValueError, match="n_jobs"):
        RCA_Supervised(n_chunks=2, n_jobs=0).fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type|continuous"):
        RCA_Supervised(n_chunks=2).fit(X, np.linspace(0, 1, 20))


def test_supervised_dtypes_preprocessor_pickle(dtype):
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    est = RCA_Supervised(n_chunks=50, random_state=0).fit(X.astype(dtype), y)
    ref = RCA_Supervised(n_chunks=50, random_state=0).fit(X, y)
    assert est.components_.dtype == np.float64
    scale = np.abs(ref.components_).max()
    assert_allclose(est.components_, ref.components_, atol=1e-4 * scale)
    assert est.transform(X.astype(dtype)).dtype == dtype
    idx = np.arange(300)
    pre = RCA_Supervised(n_chunks=50, random_state=0, preprocessor=X).fit(idx, y)
    assert_allclose(pre.components_, ref.components_)
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.transform(X[:5]), est.transform(X[:5]))


def test_docstring_examples():
    for obj in (RCA, RCA_Supervised):
        parser = doctest.DocTestParser()
        test = parser.get_doctest(obj.__doc__, {}, obj.__name__, None, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        assert test.examples and runner.failures == 0


# --------------------------------------------------------------------------
# scikit-learn contract
# --------------------------------------------------------------------------
def _expected_failures(estimator):
    if type(estimator) is RCA:
        return {
            "check_fit_score_takes_y": (
                "RCA.fit's second argument is named `chunks` (chunk ids, not class "
                "labels), as in metric-learn."
            )
        }
    return {}


@parametrize_with_checks(
    [RCA(), RCA(n_components=1), RCA_Supervised(n_chunks=3, random_state=0, n_jobs=1)],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_checks(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------
# Digits
# --------------------------------------------------------------------------
def test_digits_quality_bar_and_raw_digits():
    X, y = load_digits(return_X_y=True)
    for data in (StandardScaler().fit_transform(X), X):
        Xtr, Xte, ytr, yte = train_test_split(data, y, test_size=0.3, stratify=y,
                                              random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            est = RCA_Supervised(random_state=0).fit(Xtr, ytr)
        _assert_finite_psd(est, Xtr)
        knn = KNeighborsClassifier(n_neighbors=3).fit(est.transform(Xtr), ytr)
        assert knn.score(est.transform(Xte), yte) >= 0.9696


@pytest.mark.parametrize("scale", [1e-200, 1e200])
@pytest.mark.parametrize("n_components", [None, 2])
def test_extreme_magnitudes(scale, n_components):
    X, chunks = _chunk_data()
    ref = RCA(n_components=n_components).fit(X, chunks).transform(X)
    est = RCA(n_components=n_components).fit(X * scale, chunks)
    assert np.isfinite(est.components_).all()
    assert_allclose(est.transform(X * scale), ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())


def test_default_chunk_count_fits_small_sets():
    """n_chunks=None: metric-learn's 100 chunks where the classes supply them,
    else as many as they can (iris: 75 pairs); a given count too large is
    still a ValueError naming how many exist."""
    from sklearn.datasets import load_iris

    from fastmetric import RCA_Supervised
    from fastmetric._core.constraints import chunks_from_labels

    X, y = load_iris(return_X_y=True)
    chunks = chunks_from_labels(y, None, 2, random_state=0)
    _check_chunk_properties(chunks, y, 75, 2)
    big = np.repeat([0, 1], 150)
    assert chunks_from_labels(big, None, 2, random_state=0).max() == 99  # 100 chunks
    assert_array_equal(chunks_from_labels(big, None, 2, random_state=0),
                       chunks_from_labels(big, 100, 2, random_state=0))
    rca = RCA_Supervised(random_state=0).fit(X, y)
    assert np.isfinite(rca.components_).all()
    with pytest.raises(ValueError, match="at most 75 chunks|75 in all"):
        RCA_Supervised(n_chunks=100, random_state=0).fit(X, y)
