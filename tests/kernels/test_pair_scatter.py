import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastmetric._core.scatter import weighted_pair_scatter
from fastmetric.kernels.pair_scatter import pair_scatter

METHODS = ["auto", "laplacian", "direct"]


def numpy_scatter(X, a, b, w):
    """Reference: the defining sum, D^T diag(w) D."""
    D = X[a].astype(np.float64) - X[b].astype(np.float64)
    return D.T @ (np.asarray(w, dtype=np.float64)[:, None] * D)


def _case(n, d, n_pairs, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + offset
    a = rng.integers(0, n, n_pairs)
    b = rng.integers(0, n, n_pairs)
    w = rng.normal(size=n_pairs)
    return X, a, b, w


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(40, 3, 15), (120, 21, 900), (300, 70, 40), (50, 130, 600)])
def test_matches_numpy(dtype, method, shape):
    X, a, b, w = _case(*shape)
    X = X.astype(dtype)
    ref = numpy_scatter(X, a, b, w)
    S = weighted_pair_scatter(X, a, b, w, method=method)
    assert S.dtype == np.float64 and S.shape == (shape[1], shape[1])
    assert_array_equal(S, S.T)
    # Accumulation is float64 for both dtypes: only rounding of the sum differs.
    assert_allclose(S, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("method", METHODS)
def test_far_from_origin_keeps_precision(method):
    # Laplacian form: X^T Lap X would cancel catastrophically at offset 1e6
    # without the shift by an occurring row.
    X, a, b, w = _case(200, 10, 2000, offset=1e6)
    ref = numpy_scatter(X, a, b, w)
    S = weighted_pair_scatter(X, a, b, w, method=method)
    assert_allclose(S, ref, rtol=1e-7, atol=1e-7 * np.abs(ref).max())


def test_default_weights_and_special_pairs():
    X, a, b, _ = _case(30, 4, 50)
    a[:5] = b[:5]  # pairs of a point with itself contribute nothing
    w = np.ones(50)
    w[10:15] = 0.0
    for method in METHODS:
        assert_allclose(weighted_pair_scatter(X, a, b, method=method),
                        numpy_scatter(X, a, b, np.ones(50)), rtol=1e-12, atol=1e-12)
        assert_allclose(weighted_pair_scatter(X, a, b, w, method=method),
                        numpy_scatter(X, a, b, w), rtol=1e-12, atol=1e-12)
    # Only degenerate pairs: zero matrix.
    S = weighted_pair_scatter(X, [1, 2], [1, 2], [1.0, 3.0], method="laplacian")
    assert_array_equal(S, np.zeros((4, 4)))


def test_no_pairs_gives_zero():
    X = np.ones((5, 3))
    assert_array_equal(weighted_pair_scatter(X, [], [], []), np.zeros((3, 3)))
    assert_array_equal(weighted_pair_scatter(X, np.empty(0, int), np.empty(0, int)),
                       np.zeros((3, 3)))


@pytest.mark.parametrize("method", METHODS)
def test_same_result_for_any_thread_count(method):
    # More rows than one chunk, several tiles.
    X, a, b, w = _case(3000, 40, 9000, seed=3)
    S1 = weighted_pair_scatter(X, a, b, w, n_jobs=1, method=method)
    S2 = weighted_pair_scatter(X, a, b, w, n_jobs=2, method=method)
    S3 = weighted_pair_scatter(X, a, b, w, n_jobs=3, method=method)
    assert_array_equal(S1, S2)
    assert_array_equal(S1, S3)
    assert_allclose(S1, numpy_scatter(X, a, b, w), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_index_built_in_parts_gives_the_same_result(dtype):
    # Enough pairs (2^16 per part) that the Laplacian index is built in
    # several parts; with self pairs and zero weights, which it skips.  The
    # parts are merged in pair order, so 1, 2 and 3 threads agree bitwise.
    X, a, b, w = _case(4000, 12, 200_000, seed=11)
    X = X.astype(dtype)
    w[::7] = 0.0
    b[::13] = a[::13]
    S = [weighted_pair_scatter(X, a, b, w, n_jobs=k, method="laplacian") for k in (1, 2, 3)]
    assert_array_equal(S[0], S[1])
    assert_array_equal(S[0], S[2])
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    ref = numpy_scatter(X, a, b, w)
    assert_allclose(S[0], ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def test_both_methods_agree_on_large_case():
    X, a, b, w = _case(2000, 64, 6000, seed=5)
    S_lap = weighted_pair_scatter(X, a, b, w, method="laplacian")
    S_dir = weighted_pair_scatter(X, a, b, w, method="direct")
    assert_allclose(S_lap, S_dir, rtol=1e-10, atol=1e-10 * np.abs(S_dir).max())


def test_integer_input_and_lists():
    X = np.arange(12).reshape(4, 3)
    S = weighted_pair_scatter(X.tolist(), [0, 1], [3, 2], [2, 1])
    assert_allclose(S, numpy_scatter(X.astype(float), [0, 1], [3, 2], [2, 1]))


def test_low_level_kernel_writes_out():
    X, a, b, w = _case(20, 5, 30)
    out = np.full((5, 5), np.nan)
    res = pair_scatter(X, a.astype(np.intp), b.astype(np.intp), w, out, 1)
    assert_allclose(out, numpy_scatter(X, a, b, w), rtol=1e-12, atol=1e-12)
    assert np.shares_memory(res, out)
    with pytest.raises(ValueError, match="out must have shape"):
        pair_scatter(X, a.astype(np.intp), b.astype(np.intp), w, np.empty((4, 4)), 1)
    with pytest.raises(ValueError, match="same length"):
        pair_scatter(X, a.astype(np.intp), b[:3].astype(np.intp), w, out, 1)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(X=[[np.nan, 1.0]]), ValueError, "NaN or infinity"),
        (dict(X=np.ones(3)), ValueError, "2-D"),
        (dict(X=np.ones((0, 2))), ValueError, "empty"),
        (dict(a=[0, 5]), ValueError, r"index 5 .*outside"),
        (dict(b=[-1, 0]), ValueError, r"index -1 .*outside"),
        (dict(a=[0.0, 1.0]), TypeError, "integer row indices"),
        (dict(a=[[0, 1]]), ValueError, "1-D"),
        (dict(b=[0]), ValueError, "same length"),
        (dict(weights=[1.0, np.inf]), ValueError, "NaN or infinity"),
        (dict(weights=[1.0]), ValueError, r"shape \(n_pairs,\)"),
        (dict(method="svd"), ValueError, "method must be one of"),
        (dict(n_jobs=0), ValueError, "n_jobs"),
        (dict(n_jobs=1.5), TypeError, "n_jobs"),
    ],
)
def test_bad_input(kwargs, err, match):
    args = dict(X=np.ones((3, 2)), a=[0, 1], b=[1, 2], weights=[1.0, 2.0])
    args.update(kwargs)
    with pytest.raises(err, match=match):
        weighted_pair_scatter(args.pop("X"), args.pop("a"), args.pop("b"), **args)


def test_module_functions_pickle():
    f = pickle.loads(pickle.dumps(weighted_pair_scatter))
    X, a, b, w = _case(10, 3, 8)
    assert_array_equal(f(X, a, b, w), weighted_pair_scatter(X, a, b, w))
