import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from threadpoolctl import threadpool_limits

from fastmetric.pairwise import mahalanobis_distances, paired_mahalanobis_distances

from ..conftest import tolerance


def numpy_pairwise(X, Y, L):
    """Reference: explicit differences, no expansion tricks."""
    diff = X[:, None, :] - Y[None, :, :]
    return np.sqrt(((diff @ L.T) ** 2).sum(-1))


def numpy_paired(X, pairs, L):
    return np.sqrt((((X[pairs[:, 0]] - X[pairs[:, 1]]) @ L.T) ** 2).sum(1))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(83, 9))
    Y = rng.normal(size=(41, 9))
    L = rng.normal(size=(9, 9))
    return X, Y, L


@pytest.mark.parametrize("n_components", [9, 4, 1, 12])
def test_pairwise_matches_numpy(data, dtype, n_components):
    X, Y, L = data
    L = np.random.default_rng(1).normal(size=(n_components, 9))
    ref = numpy_pairwise(X, Y, L)
    out = mahalanobis_distances(X.astype(dtype), Y.astype(dtype), components=L.astype(dtype))
    assert out.dtype == dtype
    assert out.shape == (83, 41)
    # The GEMM expansion loses about eps * ||Lx||^2 in the squared distance.
    scale = np.sqrt(np.finfo(dtype).eps) * np.abs(X @ L.T).max() * 10
    assert_allclose(out, ref, rtol=tolerance(dtype), atol=scale)
    sq = mahalanobis_distances(X.astype(dtype), Y.astype(dtype), components=L.astype(dtype),
                               squared=True)
    assert_allclose(sq, ref**2, rtol=tolerance(dtype) * 10, atol=scale**2 * 10)


def test_pairwise_self_has_zero_diagonal_and_is_symmetric(data, dtype):
    X, _, L = data
    X = np.vstack([X, X[:5]]).astype(dtype)  # duplicated points too
    D = mahalanobis_distances(X, components=L.astype(dtype))
    assert_array_equal(np.diag(D), 0)
    assert_allclose(D, D.T, rtol=tolerance(dtype), atol=1e-5)
    assert (D >= 0).all()
    # Duplicated rows are at distance ~0 from their copies.
    assert_allclose(D[np.arange(5), 83 + np.arange(5)], 0, atol=1e-2 if dtype == np.float32 else 1e-6)


def test_pairwise_identity_is_euclidean(data):
    from scipy.spatial.distance import cdist

    X, Y, _ = data
    assert_allclose(mahalanobis_distances(X, Y), cdist(X, Y), atol=1e-10)


@pytest.fixture
def large_data():
    # Large enough that the kernels really use 2 threads (small calls stay
    # on one).
    rng = np.random.default_rng(5)
    return rng.normal(size=(700, 9)), rng.normal(size=(300, 9)), rng.normal(size=(9, 9))


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_pairwise_chunk_size_and_threads(large_data, chunk_size):
    X, Y, L = large_data
    ref = mahalanobis_distances(X, Y, components=L)
    with threadpool_limits(1):
        one = mahalanobis_distances(X, Y, components=L, chunk_size=chunk_size)
    with threadpool_limits(2):
        two = mahalanobis_distances(X, Y, components=L, chunk_size=chunk_size)
    assert_array_equal(one, two)
    assert_allclose(one, ref, rtol=1e-12, atol=1e-12)
    assert_array_equal(mahalanobis_distances(X, Y, components=L, chunk_size=chunk_size, n_jobs=1),
                       mahalanobis_distances(X, Y, components=L, chunk_size=chunk_size, n_jobs=2))


@pytest.mark.parametrize("n_pairs", [5, 83, 500])  # both strategies: fewer and more pairs than rows
@pytest.mark.parametrize("n_components", [9, 3])
def test_paired_matches_numpy(data, dtype, n_pairs, n_components):
    X, _, _ = data
    rng = np.random.default_rng(2)
    L = rng.normal(size=(n_components, 9))
    pairs = rng.integers(0, X.shape[0], size=(n_pairs, 2))
    pairs[0] = [3, 3]  # a point with itself
    ref = numpy_paired(X, pairs, L)
    out = paired_mahalanobis_distances(X.astype(dtype), pairs, components=L.astype(dtype))
    assert out.dtype == dtype and out.shape == (n_pairs,)
    assert out[0] == 0
    assert_allclose(out, ref, rtol=tolerance(dtype), atol=1e-4 if dtype == np.float32 else 1e-12)
    sq = paired_mahalanobis_distances(X.astype(dtype), pairs, components=L.astype(dtype), squared=True)
    assert_allclose(sq, ref**2, rtol=tolerance(dtype) * 10, atol=1e-3 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("n_pairs", [5000, 20000])
@pytest.mark.parametrize("chunk_size", [1, 3, 100, 10000])
def test_paired_threads_and_chunks(large_data, n_pairs, chunk_size):
    X, _, L = large_data
    if n_pairs == 5000:
        X = np.random.default_rng(6).normal(size=(9000, 9))  # fewer pairs than rows
    pairs = np.random.default_rng(3).integers(0, X.shape[0], size=(n_pairs, 2))
    ref = numpy_paired(X, pairs, L)
    with threadpool_limits(1):
        one = paired_mahalanobis_distances(X, pairs, components=L, chunk_size=chunk_size)
    with threadpool_limits(2):
        two = paired_mahalanobis_distances(X, pairs, components=L, chunk_size=chunk_size)
    assert_array_equal(one, two)
    assert_allclose(one, ref, rtol=1e-12)


def test_paired_agrees_with_pairwise(data):
    X, _, L = data
    D = mahalanobis_distances(X, components=L)
    pairs = np.array([[i, j] for i in range(0, 83, 7) for j in range(0, 83, 5)])
    assert_allclose(paired_mahalanobis_distances(X, pairs, components=L), D[pairs[:, 0], pairs[:, 1]],
                    rtol=1e-8, atol=1e-7)


def test_empty_pairs_give_empty_output(data):
    X, _, L = data
    out = paired_mahalanobis_distances(X, np.empty((0, 2), dtype=int), components=L)
    assert out.shape == (0,)


def test_non_contiguous_and_integer_input_are_converted(data):
    X, Y, L = data
    Xf = np.asfortranarray(X)
    assert_allclose(mahalanobis_distances(Xf, Y[::2], components=L),
                    mahalanobis_distances(X, Y[::2].copy(), components=L))
    Xi = np.arange(20).reshape(10, 2)
    out = mahalanobis_distances(Xi)
    assert out.dtype == np.float64
    assert_allclose(out, numpy_pairwise(Xi.astype(float), Xi.astype(float), np.eye(2)), atol=1e-12)
    pairs = np.array([[0, 9], [2, 3]], dtype=np.int32)
    assert_allclose(paired_mahalanobis_distances(Xi, pairs[:, ::-1]), [np.hypot(18, 18), np.hypot(2, 2)])


def test_mixed_dtypes_upcast(data):
    X, Y, L = data
    out = mahalanobis_distances(X.astype(np.float32), Y, components=L)
    assert out.dtype == np.float64


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(X=[[1.0, np.nan]]), ValueError, "NaN or infinity"),
        (dict(X=[[1.0, np.inf]]), ValueError, "NaN or infinity"),
        (dict(X=np.zeros((0, 3))), ValueError, "empty"),
        (dict(X=np.zeros(3)), ValueError, "2-D"),
        (dict(X=np.zeros((3, 2)), Y=np.zeros((3, 3))), ValueError, "same number of features"),
        (dict(X=np.zeros((3, 2)), components=np.zeros((2, 3))), ValueError, "shape"),
        (dict(X=np.zeros((3, 2)), components=np.zeros(2)), ValueError, "shape"),
        (dict(X=np.zeros((3, 2)), components=[[np.nan, 1.0]]), ValueError, "NaN"),
        (dict(X=np.array([["a", "b"]])), TypeError, "real numbers"),
        (dict(X=np.zeros((3, 2)) + 0j), TypeError, "real numbers"),
        (dict(X=np.zeros((3, 2)), chunk_size=0), ValueError, "chunk_size"),
        (dict(X=np.zeros((3, 2)), n_jobs=0), ValueError, "n_jobs"),
        (dict(X=np.zeros((3, 2)), n_jobs=1.5), TypeError, "n_jobs"),
    ],
)
def test_pairwise_bad_input(kwargs, exc, match):
    kwargs = dict(kwargs)
    X = kwargs.pop("X")
    with pytest.raises(exc, match=match):
        mahalanobis_distances(X, **kwargs)


@pytest.mark.parametrize(
    "pairs, exc, match",
    [
        ([[0, 5]], ValueError, r"index 5 .*outside"),
        ([[-1, 2]], ValueError, r"index -1 .*outside"),
        ([[0, 1, 2]], ValueError, r"shape \(n_pairs, 2\)"),
        ([0, 1], ValueError, r"shape \(n_pairs, 2\)"),
        ([[0.0, 1.0]], TypeError, "integer"),
        ([[True, False]], TypeError, "integer"),
    ],
)
def test_paired_bad_pairs(pairs, exc, match):
    X = np.zeros((5, 2))
    with pytest.raises(exc, match=match):
        paired_mahalanobis_distances(X, pairs)


def test_large_values_do_not_overflow_to_nan():
    X = np.array([[1e150, 0.0], [-1e150, 0.0]])
    D = paired_mahalanobis_distances(X, [[0, 1]], squared=False)
    assert np.isfinite(D).all() or np.isinf(D).all()  # never NaN
    assert not np.isnan(mahalanobis_distances(X)).any()


@pytest.mark.parametrize("n_pairs", [3, 40])  # direct path / mapped-rows path
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_paired_one_nonfinite_value_of_X_is_named(dtype, n_pairs, bad):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 4)).astype(dtype)
    X[17, 1] = bad
    pairs = rng.integers(0, 17, size=(n_pairs, 2))  # row 17 is in no pair
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at index \(17, 1\)"):
        paired_mahalanobis_distances(X, pairs, components=rng.normal(size=(2, 4)))


def test_paired_sorted_path_for_mapped_rows_beyond_cache(dtype):
    # Mapped rows larger than the sorting threshold: the pairs are bucketed
    # by their first row before the distances are computed, and every
    # distance must still land at its own pair's position.
    from fastmetric.kernels import distances as _distances

    rng = np.random.default_rng(8)
    n, d = 70_000, 64
    X = rng.normal(size=(n, d)).astype(dtype)
    L = (rng.normal(size=(d, d)) * 0.2).astype(dtype)
    assert n * d * X.itemsize > _distances.DEF_SORT_ABOVE_BYTES
    pairs = rng.integers(0, n, size=(n + 4000, 2))
    pairs[10] = [5, 5]
    pairs[11] = pairs[12] = [n - 1, 0]
    ref = numpy_paired(X.astype(np.float64), pairs, L.astype(np.float64)) ** 2
    with threadpool_limits(1):
        one = paired_mahalanobis_distances(X, pairs, components=L, squared=True)
    two = paired_mahalanobis_distances(X, pairs, components=L, squared=True, n_jobs=2, chunk_size=7)
    assert_array_equal(one, two)
    assert one[10] == 0 and one[11] == one[12]
    assert_allclose(one, ref, rtol=tolerance(dtype) * 10)


@pytest.mark.parametrize("which", ["X", "Y"])
def test_pairwise_names_the_nonfinite_entry(data, dtype, which):
    # The values are checked while the rows are mapped; the error names the
    # array and the first bad entry.
    X, Y, L = (a.astype(dtype) for a in data)
    bad = X if which == "X" else Y
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match=rf"{which} contains NaN or infinity \(first at index \(3, 1\)"):
        mahalanobis_distances(X, Y, components=L)


def test_tiny_points_get_their_distances_not_zero(dtype):
    """Points within 1e-200 of each other (float64; 1e-25 in float32) had
    squared distances below the smallest float: the distances came out 0.
    The embedded rows are now brought to norms near one by a power of two
    and the distances scaled back."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20, 3)).astype(dtype)
    Y = rng.normal(size=(6, 3)).astype(dtype)
    scale = dtype(1e-200 if dtype == np.float64 else 1e-25)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(mahalanobis_distances(X * scale) / scale, mahalanobis_distances(X), rtol=rtol)
    assert_allclose(mahalanobis_distances(X * scale, Y * scale, components=np.eye(3) * 2) / scale,
                    mahalanobis_distances(X, Y, components=np.eye(3) * 2), rtol=rtol)
    assert_array_equal(mahalanobis_distances(np.zeros((3, 2), dtype=dtype)), 0.0)


def test_pairwise_kernel_returns_the_norms_bound_that_spares_the_overflow_scan(dtype):
    # |2 u.v| <= ||u||^2 + ||v||^2: below a quarter of the dtype's range the
    # caller skips scanning the result; near it the scan still runs.
    from fastmetric.kernels.distances import _pairwise

    rng = np.random.default_rng(4)
    XL = rng.normal(size=(30, 3)).astype(dtype)
    YL = rng.normal(size=(7, 3)).astype(dtype)
    out = np.empty((30, 7), dtype=dtype)
    bound = _pairwise(XL, YL, out, False, False, 8, 2)
    expected = (XL.astype(np.float64) ** 2).sum(1).max() + (YL.astype(np.float64) ** 2).sum(1).max()
    assert bound == pytest.approx(expected, rel=1e-5)
    assert np.all(np.abs(out) <= 2 * bound)
    big = np.finfo(dtype).max ** 0.5
    X = np.array([[big, 0.0], [-big, 0.0]], dtype=dtype)
    with pytest.raises(ValueError, match="overflow"):
        mahalanobis_distances(X)


@pytest.mark.parametrize("team_threads", [2, 3, 8])
@pytest.mark.parametrize("take_sqrt", [False, True])
def test_paired_kernel_on_the_team_gives_the_openmp_result(dtype, team_threads, take_sqrt):
    # fm_team.h's team (used under load) computes each chunk of pairs as
    # OpenMP does, whoever computes it: bitwise the same, call after call.
    from fastmetric.kernels.distances import _paired_transformed
    from fastmetric.kernels.team import team_held

    rng = np.random.default_rng(9)
    XL = rng.normal(size=(300, 7)).astype(dtype)
    a = rng.integers(0, 300, size=5003).astype(np.intp)
    b = rng.integers(0, 300, size=5003).astype(np.intp)
    ref = np.empty(5003, dtype=dtype)
    _paired_transformed(XL, a, b, ref, take_sqrt, 64, 1)
    for _ in range(10):
        got = np.full(5003, np.nan, dtype=dtype)
        _paired_transformed(XL, a, b, got, take_sqrt, 64, 1, team_threads)
        assert_array_equal(got, ref)
    assert team_held() <= 4


def test_paired_distances_use_the_team_only_under_load(monkeypatch):
    import fastmetric._core.distances as core_distances
    from fastmetric.kernels import distances as kernel_distances

    seen = []
    original = kernel_distances._paired_transformed

    def spy(*args):
        seen.append(args[-1])
        return original(*args)

    monkeypatch.setattr(core_distances, "_paired_transformed", spy)
    monkeypatch.setattr(core_distances, "_TEAM_MIN_PAIRS", 1000)
    rng = np.random.default_rng(10)
    X = rng.normal(size=(200, 5))
    pairs = rng.integers(0, 200, size=(20000, 2))
    # The load is given, not read: the machine running the tests may be busy.
    monkeypatch.setattr(core_distances, "team_threads", lambda n_jobs=None: 0)
    quiet = paired_mahalanobis_distances(X, pairs)
    monkeypatch.setattr(core_distances, "team_threads",
                        lambda n_jobs=None: 3 if n_jobs is None else 0)
    busy = paired_mahalanobis_distances(X, pairs)
    explicit = paired_mahalanobis_distances(X, pairs, n_jobs=2)
    # Too few pairs per thread to pay for waking the team's helpers.
    monkeypatch.setattr(core_distances, "_TEAM_MIN_PAIRS", 20000 // 2 + 1)
    few = paired_mahalanobis_distances(X, pairs)
    assert seen == [0, 3, 0, 0]
    assert_array_equal(busy, quiet)
    assert_array_equal(explicit, quiet)
    assert_array_equal(few, quiet)


@pytest.mark.parametrize("n_pairs", [5, 60])  # the direct path (fewer pairs than rows), the mapped rows
@pytest.mark.parametrize("tiny", ["data", "map"])
def test_tiny_pairs_get_their_distances_not_zero(dtype, n_pairs, tiny):
    """As test_tiny_points_get_their_distances_not_zero for the paired
    distances: float64 points (or a map) of 1e-200 gave pairs at distance 0.
    The rows of the pairs (and the map) are now brought near one by a power
    of two and the distances scaled back; neither the caller's map nor its
    data change.  (float32 pairs of 1e-25 are summed in double: they never
    underflowed, and must not now.)"""
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20, 3)).astype(dtype)
    L = rng.normal(size=(2, 3)).astype(dtype)
    pairs = rng.integers(0, 20, size=(n_pairs, 2))
    scale = dtype(1e-200 if dtype == np.float64 else 1e-25)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    X_small, L_small = (X * scale, L) if tiny == "data" else (X, L * scale)
    kept_X, kept_L = X_small.copy(), L_small.copy()
    out = paired_mahalanobis_distances(X_small, pairs, components=L_small)
    assert_allclose(out / scale, paired_mahalanobis_distances(X, pairs, components=L), rtol=rtol)
    assert_array_equal(X_small, kept_X)
    assert_array_equal(L_small, kept_L)
    # Pairs of one point stay exactly 0, on every path.
    assert_array_equal(paired_mahalanobis_distances(X_small, np.zeros((n_pairs, 2), dtype=int),
                                                    components=L_small), 0.0)


def test_float32_distances_of_rows_far_from_the_origin():
    """float32 distances come from ||a||^2 + ||b||^2 - 2 a.b, whose rounding
    grew with the rows' norms: rows about 1000 from the origin with unit
    spread had distances wrong by up to 1.4 (a point 1.4 from itself, near
    duplicates at 0 or 1).  The embedded rows are centred first."""
    from fastmetric.pairwise import mahalanobis_distances

    rng = np.random.RandomState(0)
    X = (1000.0 + rng.randn(200, 10)).astype(np.float32)
    Y = (1000.0 + rng.randn(50, 10)).astype(np.float32)
    L = rng.randn(6, 10).astype(np.float32)
    X64, Y64, L64 = X.astype(np.float64), Y.astype(np.float64), L.astype(np.float64)
    for got, ref in [
        (mahalanobis_distances(X, components=L), mahalanobis_distances(X64, components=L64)),
        (mahalanobis_distances(X, Y, components=L),
         mahalanobis_distances(X64, Y64, components=L64)),
    ]:
        assert got.dtype == np.float32
        # float32's own rounding of the map and of the centred expansion
        assert np.abs(got - ref).max() < 1e-2 * np.median(ref)
    assert np.all(np.diag(mahalanobis_distances(X, components=L)) == 0)
