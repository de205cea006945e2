import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import check_grad
from scipy.special import expit
from threadpoolctl import threadpool_limits

from fastmetric._core.objectives.pair_loss import PairLossProblem
from fastmetric.kernels.pair_loss import KEY_SHIFT
from fastmetric.pairwise import ldml_loss


def numpy_ldml_loss(X, pairs, y, L, bias, w=None):
    """Reference: explicit pair differences, O(P k d)."""
    X = X.astype(np.float64)
    L = L.astype(np.float64)
    diff = X[pairs[:, 0]] - X[pairs[:, 1]]
    Z = diff @ L.T
    z = bias - (Z**2).sum(1)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    W = w.sum()
    loss = (w * (np.logaddexp(0.0, z) - y * z)).sum() / W
    g = w * (expit(z) - y)
    return loss, -2.0 * (Z * g[:, None]).T @ diff / W, g.sum() / W


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6))
    L = rng.normal(size=(4, 6)) * 0.5
    pairs = rng.integers(0, 60, size=(300, 2))
    y = rng.random(300)
    w = rng.random(300) + 0.1
    return X, pairs, y, L, w


@pytest.mark.parametrize("n_pairs", [8, 300])  # 8 pairs: the compact-relabelling path
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_numpy(problem, dtype, n_pairs, weighted):
    X, pairs, y, L, w = problem
    pairs, y, w = pairs[:n_pairs], y[:n_pairs], (w[:n_pairs] if weighted else None)
    ref = numpy_ldml_loss(X, pairs, y, L, 1.5, w)
    loss, grad, gb = ldml_loss(X.astype(dtype), pairs, y, L.astype(dtype), 1.5, sample_weight=w)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    assert isinstance(loss, float)
    assert grad.dtype == dtype and grad.shape == L.shape
    assert_allclose(loss, ref[0], rtol=rtol)
    assert_allclose(grad, ref[1], rtol=rtol, atol=rtol * np.abs(ref[1]).max())
    assert_allclose(gb, ref[2], rtol=rtol, atol=1e-12)
    assert_allclose(ldml_loss(X.astype(dtype), pairs, y, L.astype(dtype), 1.5, sample_weight=w,
                              return_gradient=False), ref[0], rtol=rtol)


def test_gradient_finite_differences(problem):
    X, pairs, y, L, w = problem
    k, d = L.shape

    def f(theta):
        return ldml_loss(X, pairs, y, theta[:-1].reshape(k, d), theta[-1], sample_weight=w,
                         return_gradient=False)

    def g(theta):
        _, gL, gb = ldml_loss(X, pairs, y, theta[:-1].reshape(k, d), theta[-1], sample_weight=w)
        return np.append(gL.ravel(), gb)

    theta = np.append(L.ravel(), 2.0)
    err = check_grad(f, g, theta, epsilon=1e-7)
    assert err < 1e-5 * max(1.0, np.linalg.norm(g(theta)))


def test_low_rank_and_wide_maps(problem):
    X, pairs, y, _, _ = problem
    for k in (1, 3, 10):
        L = np.random.default_rng(k).normal(size=(k, 6)) * 0.3
        ref = numpy_ldml_loss(X, pairs, y, L, 0.7)
        out = ldml_loss(X, pairs, y, L, 0.7)
        assert_allclose(out[0], ref[0], rtol=1e-10)
        assert_allclose(out[1], ref[1], rtol=1e-9, atol=1e-12)


@pytest.fixture
def large_problem():
    # Large enough that the kernel really runs on 2 threads (it keeps small
    # problems on one thread).
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 6))
    L = rng.normal(size=(4, 6)) * 0.5
    pairs = rng.integers(0, 3000, size=(20000, 2))
    return X, pairs, rng.random(20000), L, rng.random(20000) + 0.1


@pytest.mark.parametrize("chunk_size", [1, 5, 64, 100000])
def test_same_result_for_any_thread_count(large_problem, chunk_size, dtype):
    X, pairs, y, L, w = large_problem
    X, L = X.astype(dtype), L.astype(dtype)
    with threadpool_limits(1):
        one = ldml_loss(X, pairs, y, L, 1.0, sample_weight=w, chunk_size=chunk_size)
    with threadpool_limits(2):
        two = ldml_loss(X, pairs, y, L, 1.0, sample_weight=w, chunk_size=chunk_size)
    # Chunk boundaries do not depend on the thread count: bitwise equal.
    assert one[0] == two[0] and one[2] == two[2]
    assert_array_equal(one[1], two[1])
    three = ldml_loss(X, pairs, y, L, 1.0, sample_weight=w, chunk_size=chunk_size, n_jobs=2)
    assert_array_equal(one[1], three[1])
    # Different chunk sizes only change the rounding.
    ref = ldml_loss(X, pairs, y, L, 1.0, sample_weight=w)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(one[0], ref[0], rtol=rtol)
    assert_allclose(one[1], ref[1], rtol=rtol * 10, atol=rtol)


def test_prepared_problem_reuses_index(problem):
    X, pairs, y, L, w = problem
    prob = PairLossProblem(X, pairs[:, 0].copy(), pairs[:, 1].copy(), y, w)
    for bias in (0.0, 3.0):
        out = prob.loss_grad(L, bias, 2)
        ref = ldml_loss(X, pairs, y, L, bias, sample_weight=w)
        assert out[0] == ref[0]
        assert_array_equal(out[1], ref[1])


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e4, 1e150])
def test_stable_for_any_distance(problem, scale):
    X, pairs, y, L, _ = problem
    yb = (y > 0.5).astype(float)
    with np.errstate(all="raise"):
        loss, grad, gb = ldml_loss(X * scale, pairs, yb, L, 1.0)
    assert np.isfinite(loss) and loss >= 0
    assert np.isfinite(gb)
    # For huge distances the gradient may be huge but not NaN.
    assert not np.isnan(grad).any()


def test_perfect_separation_gives_small_loss():
    X = np.array([[0.0], [0.1], [10.0]])
    loss = ldml_loss(X, [[0, 1], [0, 2]], [1, 0], [[1.0]], 5.0, return_gradient=False)
    assert 0 < loss < 0.01


def test_self_pairs_and_duplicates_are_fine():
    X = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 2.0]])
    pairs = [[0, 0], [0, 1], [1, 2], [1, 2]]
    out = ldml_loss(X, pairs, [1, 1, 0, 0], np.eye(2), 1.0)
    ref = numpy_ldml_loss(X, np.array(pairs), np.array([1, 1, 0, 0.0]), np.eye(2), 1.0)
    assert_allclose(out[0], ref[0])
    assert_allclose(out[1], ref[1], atol=1e-14)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(y=np.full(300, 1.5)), ValueError, r"\[0.0, 1.0\]"),
        (dict(y=np.full(300, -1.0)), ValueError, r"\[0.0, 1.0\]"),
        (dict(y=np.ones(299)), ValueError, "shape"),
        (dict(y=np.full(300, np.nan)), ValueError, "NaN"),
        (dict(sample_weight=-np.ones(300)), ValueError, "non-negative"),
        (dict(sample_weight=np.zeros(300)), ValueError, "sums to 0"),
        (dict(pairs=np.array([[0, 60]])), ValueError, "outside"),
        (dict(pairs=np.array([[0, 1, 2]])), ValueError, "shape"),
        (dict(pairs=np.zeros((0, 2), dtype=int)), ValueError, "empty"),
        (dict(L=np.ones((4, 5))), ValueError, "shape"),
        (dict(bias=np.nan), ValueError, "bias"),
        (dict(bias="1"), TypeError, "bias"),
        (dict(X=np.full((60, 6), np.inf)), ValueError, "NaN or infinity"),
    ],
)
def test_bad_input(problem, change, exc, match):
    X, pairs, y, L, _ = problem
    args = dict(X=X, pairs=pairs, y=y, L=L, bias=1.0, sample_weight=None)
    args.update(change)
    if "pairs" in change and "y" not in change:
        args["y"] = np.ones(len(args["pairs"]))
    with pytest.raises(exc, match=match):
        ldml_loss(args["X"], args["pairs"], args["y"], args["L"], args["bias"],
                  sample_weight=args["sample_weight"])


@pytest.mark.parametrize("targets", ["binary", "soft", "weighted"])
def test_endpoint_index_is_the_same_for_any_thread_count(targets):
    # Enough pairs that the index is built in several parts.
    rng = np.random.default_rng(7)
    X = rng.normal(size=(1000, 3))
    pairs = rng.integers(0, 1000, size=(140_000, 2))
    y = rng.random(140_000) if targets == "soft" else rng.integers(0, 2, 140_000).astype(float)
    w = rng.random(140_000) if targets == "weighted" else None
    one = PairLossProblem(X, pairs[:, 0].copy(), pairs[:, 1].copy(), y, w, n_threads=1)
    two = PairLossProblem(X, pairs[:, 0].copy(), pairs[:, 1].copy(), y, w, n_threads=2)
    assert_array_equal(one.offsets, two.offsets)
    assert_array_equal(one.keys, two.keys)
    assert_array_equal(one.values, two.values)
    # Point u's keys list its pairs in increasing pair order: the pair's
    # other end, the target bit (0/1 targets without weights) and the side.
    u = 17
    keys = one.keys[one.offsets[u]:one.offsets[u + 1]]
    first, second = np.flatnonzero(pairs[:, 0] == u), np.flatnonzero(pairs[:, 1] == u)
    order = np.argsort(np.r_[first, second], kind="stable")
    p = np.r_[first, second][order]
    side = np.r_[np.zeros(len(first), int), np.ones(len(second), int)][order]
    assert_array_equal(keys & 1, side)
    assert_array_equal(keys >> KEY_SHIFT, pairs[p, 1 - side])
    if targets == "binary":
        # The targets are in the keys; there is no values array.
        assert one.values.shape == (0,)
        assert_array_equal((keys >> 1) & 1, y[p])
    else:
        values = one.values[one.offsets[u]:one.offsets[u + 1]]
        assert_array_equal((keys >> 1) & 1, 0)
        assert_array_equal(values["target"], y[p])
        assert_array_equal(values["weight"], 1.0 if w is None else w[p])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_binary_targets_give_the_same_result_with_or_without_values(n_threads):
    # 0/1 targets without weights take the packed index; the same targets
    # as soft values (the 1-weights make the values array) must agree.
    rng = np.random.default_rng(8)
    X = rng.normal(size=(300, 5))
    a, b = rng.integers(0, 300, 5000), rng.integers(0, 300, 5000)
    y = rng.integers(0, 2, 5000).astype(float)
    L = rng.normal(size=(4, 5))
    packed = PairLossProblem(X, a, b, y, n_threads=n_threads)
    full = PairLossProblem(X, a, b, y, np.ones(5000), n_threads=n_threads)
    assert packed.values.shape == (0,) and full.values.shape == (10000,)
    got = packed.loss_grad(L, 3.0, n_threads)
    ref = full.loss_grad(L, 3.0, n_threads)
    assert got[0] == ref[0] and got[2] == ref[2]
    assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("t", [0.0, 1.0, 0.25])
def test_loss_terms_accurate_for_every_logit(t):
    """Each pair's loss and derivative (computed in a vectorised batch: own
    exp and log1p) match numpy's logaddexp / expit to a few ulps, from
    saturated to tiny values, in both signs of the logit."""
    z = np.concatenate([np.linspace(-60, 60, 481), [0.0, 1e-300, -1e-300, 1e-8, -1e-8,
                                                     36.7, -36.7, 300.0, -300.0, 700.0,
                                                     -700.0, 745.0, -745.0, -1000.0]])
    bias = 1100.0
    X = np.zeros((2, 1))
    for zi in z:
        X[1, 0] = np.sqrt(bias - zi)
        loss, _, grad_bias = ldml_loss(X, [[0, 1]], [t], np.eye(1), bias)
        # the points carry z only up to the rounding of sqrt and its square
        z_eff = bias - X[1, 0] * X[1, 0]
        ref_loss = np.logaddexp(0.0, z_eff) - t * z_eff
        ref_grad = expit(z_eff) - t
        # A few ulps of the terms (softplus - t z and sigmoid - t cancel when
        # t = 1 and z >> 0); below z = -708, exp(z) is taken as exp(-708)
        # (3e-308): negligible.
        scale_loss = np.logaddexp(0.0, z_eff) + abs(t * z_eff)
        scale_grad = expit(z_eff) + t
        assert abs(loss - ref_loss) <= 4e-16 * scale_loss + 4e-308, zi
        assert abs(grad_bias - ref_grad) <= 4e-16 * scale_grad + 4e-308, zi


@pytest.mark.parametrize("chunk_size", [5, 64])
def test_blocks_of_several_chunks_match_numpy(large_problem, dtype, chunk_size):
    # 3000 points give blocks of several chunks each: the gradient's partial
    # products are accumulated chunk by chunk inside a block.
    X, pairs, y, L, w = large_problem
    ref = numpy_ldml_loss(X, pairs, y, L, 0.5, w)
    loss, grad, gb = ldml_loss(X.astype(dtype), pairs, y, L.astype(dtype), 0.5,
                               sample_weight=w, chunk_size=chunk_size, n_jobs=2)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    assert_allclose(loss, ref[0], rtol=rtol)
    assert_allclose(grad, ref[1], rtol=rtol, atol=rtol * np.abs(ref[1]).max())
    assert_allclose(gb, ref[2], rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("n_pairs", [8, 300])  # compact rows / every row mapped
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_nonfinite_value_of_X_is_named(problem, dtype, n_pairs, bad):
    # X is checked while the kernel maps it; the error names the entry,
    # also when no pair uses that row.
    X, pairs, y, L, _ = problem
    X = X.astype(dtype)
    X[59, 2] = bad
    pairs = pairs[:n_pairs] % 59
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at index \(59, 2\)"):
        ldml_loss(X, pairs, y[:n_pairs], L.astype(dtype), 1.0)


@pytest.mark.parametrize("team_threads", [2, 3, 8])
@pytest.mark.parametrize("n_pairs", [20000, 500])  # 500: the compact-relabelling path
@pytest.mark.parametrize("compute_gradient", [True, False])
def test_team_gives_the_openmp_result(large_problem, dtype, team_threads, n_pairs,
                                      compute_gradient):
    # fm_team.h's team (used under load) computes every block as OpenMP does,
    # whoever computes it: bitwise the same, job after job.
    from fastmetric.kernels.team import team_held

    X, pairs, y, L, w = large_problem
    X, L = X.astype(dtype), L.astype(dtype)
    prob = PairLossProblem(X, pairs[:n_pairs, 0], pairs[:n_pairs, 1], y[:n_pairs],
                           w[:n_pairs], chunk_size=16)
    ref = prob.loss_grad(L, 0.5, n_threads=1, compute_gradient=compute_gradient)
    for _ in range(30):
        got = prob.loss_grad(L, 0.5, n_threads=1, compute_gradient=compute_gradient,
                             team_threads=team_threads)
        assert got[0] == ref[0] and got[2] == ref[2]
        if compute_gradient:
            assert_array_equal(got[1], ref[1])
        else:
            assert got[1] is None
    # What a late helper may read is kept only while one may read it.
    assert team_held() <= 4


def test_team_keeps_nothing_for_a_job_run_alone_or_released():
    from fastmetric.kernels.team import team_held, team_keep

    before = team_held()
    team_keep(0, object())          # run alone (generation 0)
    # No helper is inside any job now: every generation is released.
    team_keep(10**12, object())
    assert team_held() <= before


def test_team_releases_what_it_kept_before_the_interpreter_exits(large_problem):
    # At exit the team waits (boundedly) until no late helper can read the
    # inputs that jobs kept, which the interpreter then frees.
    from fastmetric.kernels import team

    X, pairs, y, L, w = large_problem
    prob = PairLossProblem(X, pairs[:, 0], pairs[:, 1], y, w, chunk_size=16)
    for _ in range(10):
        prob.loss_grad(L, 0.5, n_threads=1, team_threads=8)
    assert team._release_at_exit(timeout=10.0)
    assert team.team_held() == 0
