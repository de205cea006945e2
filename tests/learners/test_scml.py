"""SCML and SCML_Supervised: kernels against numpy twins, the learners' contract."""
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmetric import SCML, SCML_Supervised
from fastmetric._core.constraints import generate_knn_triplets
from fastmetric.kernels.scml import (
    _knn_triplet_neighbors,
    _sgd_run,
    _triplet_hinge,
)

from .._sklearn_checks import NO_FIT_CHECKS


# --------------------------------------------------------------------------
# numpy twins
# --------------------------------------------------------------------------
def _sgd_reference(Z, triplets, batches, w, S, A, t0, beta, gamma, delta=1e-3):
    """The plain update, written out with numpy on all bases."""
    Z = Z.astype(np.float64)
    w, S, A = w.copy(), S.copy(), A.copy()
    m = batches.shape[1]
    for i, batch in enumerate(batches):
        a, p, q = triplets[batch].T
        dd = (Z[a] - Z[p]) ** 2 - (Z[a] - Z[q]) ** 2
        active = 1.0 + dd @ w > 0
        g = dd[active].sum(axis=0) / m
        S += g
        A += g * g
        w = np.maximum(-(S + beta * (t0 + i + 1)), 0.0) / (gamma * (delta + np.sqrt(A)))
    return w, S, A


def _knn_bruteforce(X, y, kg, ki):
    X = X.astype(np.float64)
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    n = X.shape[0]
    gen, imp = [], []
    for i in range(n):
        same = np.flatnonzero((y == y[i]) & (np.arange(n) != i))
        other = np.flatnonzero(y != y[i])
        gen.append(same[np.lexsort((same, D[i, same]))][:kg])
        imp.append(other[np.lexsort((other, D[i, other]))][:ki])
    return gen, imp


def _triplets_reference(X, y, kg, ki):
    gen, imp = _knn_bruteforce(X, y, kg, ki)
    rows = []
    for c in np.unique(y):
        for a in np.flatnonzero(y == c):
            for p in gen[a]:
                for q in imp[a]:
                    rows.append((a, p, q))
    return np.array(rows)


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.RandomState(0)
    centres = rng.randn(4, 5) * 3
    y = np.repeat(np.arange(4), 20)
    X = centres[y] + rng.randn(80, 5)
    return X, y


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------
def test_sgd_kernel_matches_numpy(dtype):
    rng = np.random.RandomState(0)
    n, K = 30, 12
    Z = rng.randn(n, K).astype(dtype)
    triplets = rng.randint(0, n, size=(60, 3)).astype(np.intp)
    batches = rng.randint(0, 60, size=(80, 5)).astype(np.intp)
    zeros = np.zeros(K)
    ref = _sgd_reference(Z, triplets, batches, zeros, zeros, zeros, 0, 1e-3, 0.5)
    w, S, A = np.zeros(K), np.zeros(K), np.zeros(K)
    n_hinge = _sgd_run(Z, triplets, batches, w, S, A, 0, 1e-3, 0.5, 1e-3)
    assert n_hinge > 0 and 0 < np.count_nonzero(w) < K  # sparse, not empty
    for got, want in zip((w, S, A), ref):
        assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # Split into runs: the same (the iteration counter carries the threshold).
    w2, S2, A2 = np.zeros(K), np.zeros(K), np.zeros(K)
    for start in (0, 7, 40):
        stop = {0: 7, 7: 40, 40: 80}[start]
        _sgd_run(Z, triplets, batches[start:stop], w2, S2, A2, start, 1e-3, 0.5, 1e-3)
    assert_allclose(w2, w, rtol=1e-12, atol=1e-15)


def test_sgd_kernel_many_bases_sparse_and_rebuilds():
    # Many bases, so that the compact copy of the active columns is rebuilt.
    rng = np.random.RandomState(1)
    n, K = 50, 300
    Z = rng.randn(n, K)
    triplets = rng.randint(0, n, size=(200, 3)).astype(np.intp)
    batches = rng.randint(0, 200, size=(300, 4)).astype(np.intp)
    zeros = np.zeros(K)
    ref = _sgd_reference(Z, triplets, batches, zeros, zeros, zeros, 0, 1e-2, 0.05)
    w, S, A = np.zeros(K), np.zeros(K), np.zeros(K)
    _sgd_run(Z, triplets, batches, w, S, A, 0, 1e-2, 0.05, 1e-3)
    assert_allclose(w, ref[0], rtol=1e-9, atol=1e-12)


def test_hinge_kernel_matches_numpy(dtype):
    rng = np.random.RandomState(2)
    E = rng.randn(40, 3).astype(dtype)
    triplets = rng.randint(0, 40, size=(9000, 3)).astype(np.intp)  # > one chunk
    a, p, q = triplets.T
    E64 = E.astype(np.float64)
    h = 1 + ((E64[a] - E64[p]) ** 2).sum(1) - ((E64[a] - E64[q]) ** 2).sum(1)
    total, count = _triplet_hinge(E, triplets, 1)
    assert_allclose(total, np.maximum(h, 0).sum(), rtol=1e-10)
    assert count == np.count_nonzero(h > 0)
    assert _triplet_hinge(E, triplets, 2) == (total, count)


@pytest.mark.parametrize("kg,ki", [(1, 1), (3, 5), (6, 30)])
def test_knn_neighbors_match_bruteforce(dtype, kg, ki):
    rng = np.random.RandomState(3)
    # Integer coordinates: many exact ties, broken by the smaller index.
    X = rng.randint(0, 4, size=(150, 3)).astype(dtype)
    y = rng.randint(0, 3, size=150)
    counts = np.bincount(y)
    n_g = np.minimum(kg, counts - 1)[y].astype(np.intc)
    n_i = np.minimum(ki, 150 - counts)[y].astype(np.intc)
    gen, imp = _knn_triplet_neighbors(X, y.astype(np.intc), n_g, n_i, kg, ki, 2)
    ref_g, ref_i = _knn_bruteforce(X, y, kg, ki)
    for i in range(150):
        assert_array_equal(gen[i, : n_g[i]], ref_g[i])
        assert_array_equal(imp[i, : n_i[i]], ref_i[i])
    gen1, imp1 = _knn_triplet_neighbors(X, y.astype(np.intc), n_g, n_i, kg, ki, 1)
    assert_array_equal(gen1, gen)
    assert_array_equal(imp1, imp)


def test_generate_knn_triplets_layout(blobs, dtype):
    X, y = blobs
    trip = generate_knn_triplets(X.astype(dtype), y, k_genuine=2, k_impostor=3, n_jobs=2)
    assert trip.shape == (80 * 2 * 3, 3) and trip.dtype == np.intp
    assert_array_equal(trip, _triplets_reference(X.astype(dtype), y, 2, 3))
    assert np.all(y[trip[:, 0]] == y[trip[:, 1]]) and np.all(y[trip[:, 0]] != y[trip[:, 2]])
    assert_array_equal(generate_knn_triplets(X, y, 2, 3, n_jobs=1),
                       generate_knn_triplets(X, y, 2, 3, n_jobs=2))


def test_generate_knn_triplets_small_classes_warn():
    rng = np.random.RandomState(4)
    X = rng.randn(12, 2)
    y = np.array([0] * 9 + [1] * 2 + [2])
    with pytest.warns(UserWarning, match="k_genuine"):
        trip = generate_knn_triplets(X, y, k_genuine=3, k_impostor=2)
    # class 1 gets 1 genuine neighbour, class 2 (one point) none.
    assert_array_equal(trip, _triplets_reference(X, y, 3, 2)[: len(trip)])
    assert not np.any(y[trip[:, 0]] == 2)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        generate_knn_triplets(X, y, k_genuine=1, k_impostor=5)
    assert any("k_impostor=5" in str(r.message) for r in rec)
    with pytest.raises(ValueError, match="2 classes"):
        generate_knn_triplets(X, np.zeros(12), 1, 1)
    with pytest.raises(ValueError, match="single sample"):
        generate_knn_triplets(X[:3], [0, 1, 2], 1, 1, warn=False)


# --------------------------------------------------------------------------
# The learners
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    Xs = StandardScaler().fit_transform(X)
    Xtr, Xte, ytr, yte = train_test_split(Xs, y, test_size=0.3, stratify=y, random_state=0)
    return X, y, Xtr, Xte, ytr, yte


def test_digits_quality_and_raw(digits):
    X, y, Xtr, Xte, ytr, yte = digits
    est = SCML_Supervised(random_state=0).fit(Xtr, ytr)
    knn = KNeighborsClassifier(3).fit(est.transform(Xtr), ytr)
    assert knn.score(est.transform(Xte), yte) >= 0.9696
    assert est.triplets_.shape == (len(ytr) * 30, 3)
    assert est.basis_.shape == (1280, 64)
    # The objective falls along the run (from ~100 after the first steps,
    # as with metric-learn), and the best evaluated weights are kept.
    assert est.loss_curve_[-1] < 0.1 * est.loss_curve_[0]
    assert est.loss_ == min(est.loss_curve_)
    assert len(est.loss_curve_) == 20 and est.n_iter_ == 10000
    # Two threads (the k-NN search is then parallel): the same model.
    est2 = SCML_Supervised(random_state=0, n_jobs=2).fit(Xtr, ytr)
    assert_array_equal(est2.components_, est.components_)
    # A small subset (where metric-learn 0.7's LDA basis fails) works.
    small = SCML_Supervised(random_state=0, max_iter=500).fit(Xtr[:300], ytr[:300])
    assert np.isfinite(small.components_).all()
    raw = SCML_Supervised(random_state=0, max_iter=2000).fit(X, y)
    M = raw.get_mahalanobis_matrix()
    assert np.isfinite(M).all() and np.linalg.eigvalsh(M).min() > -1e-8 * np.abs(M).max()


def test_threads_and_dtypes(blobs, dtype):
    X, y = blobs
    X = X.astype(dtype)
    kw = dict(random_state=0, max_iter=600, output_iter=100, n_basis=24)
    a = SCML_Supervised(n_jobs=1, **kw).fit(X, y)
    b = SCML_Supervised(n_jobs=2, **kw).fit(X, y)
    assert_array_equal(a.components_, b.components_)
    assert a.components_.dtype == np.float64 and np.isfinite(a.components_).all()
    assert a.transform(X).dtype == dtype
    assert a.loss_ == min(a.loss_curve_)
    idx = generate_knn_triplets(X, y, 3, 10)
    s1 = SCML(n_jobs=1, preprocessor=X, **kw).fit(idx)
    s2 = SCML(n_jobs=2, preprocessor=X, **kw).fit(idx)
    assert_array_equal(s1.components_, s2.components_)


def test_float32_close_to_float64(blobs):
    X, y = blobs
    kw = dict(random_state=0, max_iter=600, output_iter=100, n_basis=24, n_jobs=1)
    a = SCML_Supervised(**kw).fit(X, y)
    b = SCML_Supervised(**kw).fit(X.astype(np.float32), y)
    assert_allclose(b.get_mahalanobis_matrix(), a.get_mahalanobis_matrix(), rtol=1e-3,
                    atol=1e-3 * np.abs(a.get_mahalanobis_matrix()).max())


def test_scml_on_triplets_learns_the_relevant_feature():
    rng = np.random.RandomState(10)
    X = rng.randn(80, 3)
    idx = rng.randint(0, 80, size=(600, 3))
    gap = np.abs(X[idx[:, 0], 0] - X[idx[:, 1], 0]) - np.abs(X[idx[:, 0], 0] - X[idx[:, 2], 0])
    idx[gap > 0] = idx[gap > 0][:, [0, 2, 1]]
    est = SCML(n_basis=40, max_iter=3000, random_state=0, n_jobs=1).fit(X[idx])
    assert est.score(X[idx]) > 0.9
    M = est.get_mahalanobis_matrix()
    assert M[0, 0] > 5 * max(M[1, 1], M[2, 2])
    # The index form with a preprocessor gives the same model.
    est_i = SCML(n_basis=40, max_iter=3000, random_state=0, n_jobs=1, preprocessor=X).fit(idx)
    assert_allclose(est_i.get_mahalanobis_matrix(), M, rtol=1e-6, atol=1e-9)
    assert_array_equal(est.predict(X[idx[:5]]), est_i.predict(idx[:5]))


def test_array_basis_and_callback(blobs):
    X, y = blobs
    B = np.eye(5)
    seen = []
    est = SCML_Supervised(basis=B, max_iter=200, output_iter=50, random_state=0, n_jobs=1,
                          callback=lambda e, it, loss: seen.append((it, loss)) or it >= 100)
    est.fit(X, y)
    assert [it for it, _ in seen] == [50, 100]
    assert_array_equal(est.basis_, B)
    M = est.get_mahalanobis_matrix()
    assert_allclose(M, np.diag(np.diag(M)), atol=1e-12)  # diagonal: axis-aligned basis
    with pytest.raises(ValueError, match="n_basis"):
        SCML_Supervised(basis=B, n_basis=3).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        SCML_Supervised(basis=np.eye(4)).fit(X, y)


def test_minibatches_drawn_as_metric_learn(blobs):
    # Fixed basis: the weights are those of the plain update run on
    # RandomState(seed).randint(0, n_triplets, (max_iter, batch_size)).
    X, y = blobs
    idx = generate_knn_triplets(X, y, 2, 3)
    B = np.random.RandomState(0).randn(15, 5)
    est = SCML(basis=B, max_iter=300, output_iter=300, random_state=3, preprocessor=X,
               n_jobs=1).fit(idx)
    batches = np.random.RandomState(3).randint(0, len(idx), size=(300, 10))
    zeros = np.zeros(15)
    w, _, _ = _sgd_reference(X @ B.T, idx, batches, zeros, zeros, zeros, 0, 1e-5, 5e-3)
    assert_allclose(est.weights_, w, rtol=1e-9, atol=1e-12)
    assert est.n_iter_ == 300 and len(est.loss_curve_) == 1


def test_verbose_prints(blobs, capsys):
    X, y = blobs
    SCML_Supervised(max_iter=100, output_iter=50, n_basis=10, verbose=True,
                    random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "[SCML_Supervised]" in out and "objective" in out


def test_degenerate_data():
    rng = np.random.RandomState(11)
    # Constant features, duplicated points, more features than samples.
    y = np.tile([0, 0, 1, 1, 2, 2], 2)
    X = np.zeros((12, 20))
    X[:, :2] = 3 * y[:, None] + rng.randn(12, 2)
    X[6:] = X[:6]  # duplicates, in the same class
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: some basis gets a weight
        # ... except the notice that n_basis was chosen (metric-learn's too)
        warnings.filterwarnings("ignore", message="As no value for `n_basis`")
        est = SCML_Supervised(k_genuine=2, k_impostor=3, max_iter=300, output_iter=100,
                              random_state=0).fit(X, y)
    M = est.get_mahalanobis_matrix()
    assert np.abs(M).max() > 0
    assert np.isfinite(M).all() and np.linalg.eigvalsh(M).min() > -1e-8 * max(1, abs(M).max())
    idx = rng.randint(0, 12, size=(6, 3))
    est = SCML(max_iter=200, output_iter=100, random_state=0, preprocessor=X).fit(idx)
    assert np.isfinite(est.components_).all()


def test_zero_weights_warn():
    rng = np.random.RandomState(12)
    X = rng.randn(30, 2)
    y = np.repeat([0, 1], 15)
    with pytest.warns(UserWarning, match="no basis"):
        est = SCML_Supervised(beta=1e6, max_iter=100, output_iter=50, n_basis=4,
                              random_state=0).fit(X, y)
    assert_array_equal(est.components_, np.zeros((1, 2)))


def test_bad_inputs(blobs):
    X, y = blobs
    idx = generate_knn_triplets(X, y, 1, 1)
    with pytest.raises(ValueError, match="not 3"):
        SCML().fit(np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="preprocessor"):
        SCML().fit(idx)  # index triplets without a preprocessor
    with pytest.raises(ValueError, match=r"\(n_triplets, 3\)"):
        SCML(preprocessor=X).fit(idx[:, :2])
    with pytest.raises(ValueError, match="outside"):
        SCML(preprocessor=X).fit(idx + 1000)
    with pytest.raises(ValueError, match="empty"):
        SCML().fit(np.zeros((0, 3, 2)))
    bad = X[idx].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SCML().fit(bad)
    with pytest.raises(ValueError, match="2 classes"):
        SCML_Supervised().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="NaN"):
        SCML_Supervised().fit(np.full_like(X, np.nan), y)
    with pytest.warns(UserWarning, match="k_genuine"):
        SCML_Supervised(k_genuine=25, max_iter=50, output_iter=50, n_basis=6,
                        random_state=0).fit(X, y)
    for params, err, match in [
        (dict(output_iter=20, max_iter=10), ValueError, "output_iter"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(max_iter=10.0), TypeError, "max_iter"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(gamma=0.0), ValueError, "gamma"),
        (dict(beta=-1.0), ValueError, "beta"),
        (dict(beta=np.nan), ValueError, "beta"),
        (dict(basis="pca"), ValueError, "basis"),
        (dict(basis=None), ValueError, "basis"),
        (dict(n_basis=0), ValueError, "n_basis"),
        (dict(n_basis=2.5), TypeError, "n_basis"),
        (dict(k_genuine=0), ValueError, "k_genuine"),
        (dict(k_impostor=1.5), TypeError, "k_impostor"),
        (dict(n_jobs=0), ValueError, "n_jobs"),
        (dict(callback=3), TypeError, "callback"),
        (dict(n_basis=10 ** 6), ValueError, "too large"),
    ]:
        with pytest.raises(err, match=match):
            SCML_Supervised(**params).fit(X, y)
    with pytest.raises(ValueError, match="basis"):
        SCML(basis="lda").fit(X[idx])  # 'lda' needs labels


def test_pickle_clone_and_refit(blobs):
    X, y = blobs
    est = SCML_Supervised(max_iter=200, output_iter=100, n_basis=12, random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.transform(X), est.transform(X))
    again = clone(est).fit(X, y)
    assert_array_equal(again.components_, est.components_)
    idx = generate_knn_triplets(X, y, 1, 2)
    s = SCML(max_iter=200, output_iter=100, n_basis=12, random_state=0).fit(X[idx])
    r = pickle.loads(pickle.dumps(s))
    assert_array_equal(r.decision_function(X[idx]), s.decision_function(X[idx]))


def test_preprocessor_indices_supervised(blobs):
    X, y = blobs
    kw = dict(max_iter=200, output_iter=100, n_basis=12, random_state=0, n_jobs=1)
    a = SCML_Supervised(**kw).fit(X, y)
    b = SCML_Supervised(preprocessor=X, **kw).fit(np.arange(len(X)), y)
    assert_array_equal(a.components_, b.components_)
    assert_allclose(b.transform(np.arange(5)), a.transform(X[:5]))


# --------------------------------------------------------------------------
# scikit-learn's checks
# --------------------------------------------------------------------------
@parametrize_with_checks(
    [SCML_Supervised(k_genuine=2, k_impostor=3, max_iter=60, output_iter=30, n_basis=8,
                     random_state=0, n_jobs=1)]
)
def test_sklearn_checks_supervised(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


@pytest.mark.parametrize("check", NO_FIT_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_no_fit_checks_triplets(check):
    # SCML learns from triplets, which sklearn's fitting checks cannot make
    # (they feed 2-D points): the non-fitting checks run here, the rest of
    # the contract is tested on triplets above.
    check("SCML", SCML())


def test_lda_basis_batches_bound_the_scatters_memory(monkeypatch):
    """The 'lda' basis batched its neighbourhood sets by their points alone
    (N x d per set) and then made three d x d scatters per set: at d = 2000
    a batch of 52 sets took 5 GB for 150 points.  A batch now counts the
    scatters too."""
    from fastmetric._core import scml_basis

    sizes = []
    original = scml_basis.local_lda_directions

    def spy(sets, *args, **kwargs):
        sizes.append(sets.shape)
        return original(sets, *args, **kwargs)

    monkeypatch.setattr(scml_basis, "local_lda_directions", spy)
    rng = np.random.RandomState(0)
    X = rng.randn(120, 400)
    y = np.arange(120) % 3
    SCML_Supervised(n_basis=240, random_state=0, max_iter=2, output_iter=1).fit(X, y)
    assert sizes
    for n_sets, n_points, d in sizes:
        assert n_sets == 1 or n_sets * (n_points * d + 3 * d * d) <= scml_basis._LDA_BLOCK
