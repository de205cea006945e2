"""The exact search kernel against a plain numpy twin."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastmetric.kernels import neighbors as nk
from fastmetric.kernels.smallgemm import _set_small_gemm


def twin_sq(Q, Z):
    """Squared distances by explicit differences in float64."""
    diff = Q[:, None, :].astype(np.float64) - Z[None, :, :].astype(np.float64)
    return (diff**2).sum(-1)


def twin_knn(Q, Z, k, exclude_self=False):
    D = twin_sq(Q, Z)
    if exclude_self:
        D[np.arange(Q.shape[0]), np.arange(Q.shape[0])] = np.inf
    idx = np.stack([np.lexsort((np.arange(Z.shape[0]), row))[:k] for row in D])
    return np.take_along_axis(D, idx, axis=1), idx


def twin_radius(Q, Z, radius, exclude_self=False):
    D = twin_sq(Q, Z)
    if exclude_self:
        D[np.arange(Q.shape[0]), np.arange(Q.shape[0])] = np.inf
    out = []
    for row in D:
        hit = np.flatnonzero(row <= radius * radius)
        out.append(hit[np.lexsort((hit, row[hit]))])
    return out


@pytest.fixture(params=[True, False], ids=["panels", "blas"])
def path(request):
    """Run each test on the AVX-512 panel path (where the CPU has it) and on BLAS."""
    was = nk._panels_in_use()
    on = _set_small_gemm(request.param)
    if request.param and not on:
        _set_small_gemm(was)
        pytest.skip("no AVX-512F here: the panel path does not run")
    yield request.param
    _set_small_gemm(True)


def search(Q, Z, k, **kw):
    return nk._kneighbors(np.ascontiguousarray(Q), nk._pack(np.ascontiguousarray(Z), 1), k, **kw)


@pytest.mark.parametrize("shape", [(37, 129, 5), (200, 70, 64), (13, 64, 1), (7, 33, 70)])
@pytest.mark.parametrize("k", [1, 4, 33])
def test_kneighbors_matches_twin(path, dtype, shape, k):
    nq, n, d = shape
    rng = np.random.default_rng(nq + n + d)
    Q = rng.normal(size=(nq, d)).astype(dtype)
    Z = rng.normal(size=(n, d)).astype(dtype)
    dist, idx = search(Q, Z, k)
    ref_dist, ref_idx = twin_knn(Q, Z, k)
    assert dist.dtype == np.float64 and idx.dtype == np.int64
    assert dist.shape == idx.shape == (nq, k)
    assert_array_equal(idx, ref_idx)
    assert_allclose(dist, ref_dist, rtol=1e-12)
    assert (np.diff(dist, axis=1) >= 0).all()


def test_far_from_origin_is_still_exact(path, dtype):
    # Large norms make the GEMM expansion lose digits: the filter lets more
    # candidates through, and the exact ranking still decides.
    rng = np.random.default_rng(3)
    Z = (rng.normal(size=(300, 8)) + 1000).astype(dtype)
    Q = (rng.normal(size=(20, 8)) + 1000).astype(dtype)
    dist, idx = search(Q, Z, 5)
    ref_dist, ref_idx = twin_knn(Q, Z, 5)
    assert_array_equal(idx, ref_idx)
    assert_allclose(dist, ref_dist, rtol=1e-12)


def test_ties_broken_by_lower_index(path, dtype):
    # Integer points on a small grid, with duplicates: many exactly equal
    # distances, all exact in float arithmetic.
    rng = np.random.default_rng(4)
    Z = rng.integers(0, 3, size=(150, 3)).astype(dtype)
    Q = rng.integers(0, 3, size=(40, 3)).astype(dtype)
    dist, idx = search(Q, Z, 20)
    ref_dist, ref_idx = twin_knn(Q, Z, 20)
    assert_array_equal(dist, ref_dist)
    assert_array_equal(idx, ref_idx)


def test_hand_worked_ties():
    Z = np.array([[1.0], [-1.0], [0.0], [1.0], [2.0]])
    dist, idx = search(np.array([[0.0]]), Z, 4)
    assert idx.tolist() == [[2, 0, 1, 3]]
    assert dist.tolist() == [[0.0, 1.0, 1.0, 1.0]]


def test_thread_counts_and_blocking_give_identical_results(path, dtype):
    rng = np.random.default_rng(5)
    Q = rng.normal(size=(500, 16)).astype(dtype)
    Z = rng.normal(size=(700, 16)).astype(dtype)
    db = nk._pack(Z, 1)
    ref = nk._kneighbors(Q, db, 9, n_threads=1)
    for n_threads, block_rows, col_chunk in [(2, 192, 1024), (2, 7, 50), (1, 1, 1), (2, 600, 3000)]:
        got = nk._kneighbors(Q, db, 9, n_threads=n_threads, block_rows=block_rows,
                             col_chunk=col_chunk)
        assert_array_equal(got[0], ref[0])
        assert_array_equal(got[1], ref[1])
    # Packing with two threads gives the same database.
    got = nk._kneighbors(Q, nk._pack(Z, 2), 9, n_threads=2)
    assert_array_equal(got[1], ref[1])


def test_panel_and_blas_paths_agree_bitwise(dtype):
    if not _set_small_gemm(True):
        pytest.skip("no AVX-512F here")
    rng = np.random.default_rng(6)
    Q = rng.normal(size=(61, 24)).astype(dtype)
    Z = rng.normal(size=(333, 24)).astype(dtype)
    a = search(Q, Z, 12)
    ra = nk._radius(Q, nk._pack(Z, 1), 5.0)
    _set_small_gemm(False)
    try:
        b = search(Q, Z, 12)
        rb = nk._radius(Q, nk._pack(Z, 1), 5.0)
    finally:
        _set_small_gemm(True)
    assert_array_equal(a[0], b[0])
    assert_array_equal(a[1], b[1])
    for x, y in zip(ra, rb):
        assert_array_equal(x, y)


def test_leave_one_out(path, dtype):
    rng = np.random.default_rng(7)
    Z = rng.normal(size=(90, 6)).astype(dtype)
    Z[10] = Z[20]  # a duplicate is still found (at distance 0), itself is not
    dist, idx = search(Z, Z, 5, exclude_self=True)
    ref_dist, ref_idx = twin_knn(Z, Z, 5, exclude_self=True)
    assert_array_equal(idx, ref_idx)
    assert_allclose(dist, ref_dist, rtol=1e-12)
    assert not (idx == np.arange(90)[:, None]).any()
    assert idx[10, 0] == 20 and idx[20, 0] == 10 and dist[10, 0] == 0
    # A shifted self: query row i is database row i + 30.
    dist, idx = search(Z[30:60], Z, 3, exclude_self=True, self_shift=30)
    assert not (idx == np.arange(30, 60)[:, None]).any()
    # k may reach n - 1 with leave-one-out, not n.
    search(Z, Z, 89, exclude_self=True)
    with pytest.raises(ValueError, match="n_neighbors"):
        search(Z, Z, 90, exclude_self=True)


def test_radius_matches_twin_including_empty_rows(path, dtype):
    rng = np.random.default_rng(8)
    Q = rng.normal(size=(50, 4)).astype(dtype)
    Z = rng.normal(size=(260, 4)).astype(dtype)
    Q[0] += 100  # nothing near it
    for radius in [0.0, 0.8, 1.5]:
        indptr, idx, dist2 = nk._radius(Q, nk._pack(Z, 1), radius, n_threads=2, block_rows=7)
        ref = twin_radius(Q, Z, radius)
        assert indptr.shape == (51,) and indptr[0] == 0 and indptr[-1] == idx.shape[0]
        for i in range(50):
            assert_array_equal(idx[indptr[i]:indptr[i + 1]], ref[i])
            assert_allclose(dist2[indptr[i]:indptr[i + 1]], twin_sq(Q[i:i + 1], Z[ref[i]])[0],
                            rtol=1e-12)
        assert indptr[1] == 0  # the far query has no neighbour
    indptr, idx, _ = nk._radius(Z, nk._pack(Z, 1), 0.5, exclude_self=True)
    ref = twin_radius(Z, Z, 0.5, exclude_self=True)
    for i in range(260):
        assert_array_equal(idx[indptr[i]:indptr[i + 1]], ref[i])


def test_not_strict_pads_short_rows():
    Z = np.arange(3.0)[:, None]
    dist, idx = nk._kneighbors(Z, nk._pack(Z, 1), 3, exclude_self=True, strict=False)
    assert idx.tolist() == [[1, 2, -1], [0, 2, -1], [1, 0, -1]]
    assert np.isinf(dist[:, 2]).all()


def test_errors():
    Z = np.ones((5, 3))
    db = nk._pack(Z, 1)
    with pytest.raises(ValueError, match="n_neighbors"):
        nk._kneighbors(Z, db, 6)
    with pytest.raises(ValueError, match="n_neighbors"):
        nk._kneighbors(Z, db, 0)
    with pytest.raises(ValueError, match="no queries"):
        nk._kneighbors(np.ones((0, 3)), db, 1)
    with pytest.raises(ValueError, match="empty"):
        nk._pack(np.ones((0, 3)), 1)
    with pytest.raises(ValueError, match="columns"):
        nk._kneighbors(np.ones((2, 4)), db, 1)
    with pytest.raises(TypeError, match="dtype"):
        nk._kneighbors(np.ones((2, 3), dtype=np.float32), db, 1)
    with pytest.raises(ValueError, match="radius"):
        nk._radius(Z, db, -1.0)
    with pytest.raises(ValueError, match="block_rows"):
        nk._kneighbors(Z, db, 1, block_rows=0)
