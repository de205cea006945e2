"""Tests of the LMNN objective of the core: target neighbours and the
objective against plain numpy, gradients, the candidate-set rule and
threads."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import check_grad

from fastmetric._core.objectives.lmnn import LMNNProblem, find_target_neighbors, sort_by_class
from fastmetric.kernels.lmnn import _dense_loss_grad


# --------------------------------------------------------------------------
# Plain numpy references
# --------------------------------------------------------------------------
def numpy_targets(X, y, k, L=None):
    """k nearest same-class points (ties: smaller index), -1 padded."""
    Z = X if L is None else X @ L.T
    n = X.shape[0]
    out = np.full((n, k), -1)
    for i in range(n):
        same = np.flatnonzero((y == y[i]) & (np.arange(n) != i))
        d = ((Z[same] - Z[i]) ** 2).sum(1)
        best = same[np.lexsort((same, d))[:k]]
        out[i, : best.shape[0]] = best
    return out


def numpy_lmnn(X, y, targets, L, mu):
    """The LMNN objective and its gradient, term by term."""
    X = X.astype(np.float64)
    L = L.astype(np.float64)
    Z = X @ L.T
    D = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    other = y[:, None] != y[None, :]
    loss, M = 0.0, np.zeros((X.shape[1], X.shape[1]))
    for i in range(X.shape[0]):
        for j in targets[i]:
            if j < 0:
                continue
            dij = X[i] - X[j]
            h = 1.0 + D[i, j] - D[i]
            active = (h > 0) & other[i]
            loss += (1 - mu) * D[i, j] + mu * h[active].sum()
            M += ((1 - mu) + mu * active.sum()) * np.outer(dij, dij)
            dil = X[i] - X[active]
            M -= mu * dil.T @ dil
    return loss, 2 * L @ M


def sorted_problem(X, y, k=3, mu=0.5, n_threads=1, slack=0.1, L0=None, budget=None):
    classes, y_enc = np.unique(y, return_inverse=True)
    order, class_ptr = sort_by_class(y_enc, classes.shape[0])
    Xs = np.ascontiguousarray(X[order])
    ys = y_enc[order]
    targets, n_t = find_target_neighbors(Xs, ys, k, components=L0)
    kw = {} if budget is None else {"pair_budget": budget}
    problem = LMNNProblem(Xs, class_ptr, targets.astype(np.intc), n_t.astype(np.intc), mu,
                          n_threads, slack=slack, **kw)
    return problem, Xs, ys, targets


def blobs(n=90, d=4, classes=3, seed=0, dtype=np.float64, spread=1.0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % classes
    centers = rng.randn(classes, d) * 1.5
    X = centers[y] + spread * rng.randn(n, d)
    return np.ascontiguousarray(X, dtype=dtype), y


# --------------------------------------------------------------------------
# Kernels against numpy
# --------------------------------------------------------------------------
@pytest.mark.parametrize("low_rank", [False, True])
def test_target_neighbors_match_brute_force(dtype, low_rank):
    X, y = blobs(120, 5, 4, seed=1, dtype=dtype)
    X[5] = X[17]  # duplicates within a class: distance-0 ties
    X[9] = X[13]
    L = np.random.RandomState(2).randn(2, 5) if low_rank else None
    targets, n_t = find_target_neighbors(X, y, 4, components=L)
    ref = numpy_targets(X.astype(np.float64), y, 4, L)
    if dtype == np.float32:
        # Ranks may swap only between near-equal float32 distances.
        Z = X.astype(np.float64) @ (np.eye(5) if L is None else L).T
        def d(i, j):
            return ((Z[i] - Z[j]) ** 2).sum()

        for i in range(X.shape[0]):
            for a, b in zip(targets[i], ref[i]):
                assert a == b or abs(d(i, a) - d(i, b)) <= 1e-4 * max(d(i, b), 1.0)
    else:
        assert_array_equal(targets, ref)
    assert_array_equal(n_t, 4)


def test_target_neighbors_small_classes():
    X, y = blobs(20, 3, 2, seed=0)
    y = y.copy()
    y[:3] = 7  # a class of 3 points -> 2 targets each
    y[3] = 9  # a class of 1 point -> no target
    targets, n_t = find_target_neighbors(X, y, 4)
    assert_array_equal(n_t[:3], 2)
    assert n_t[3] == 0 and (targets[3] == -1).all()
    assert_array_equal(targets, numpy_targets(X, y, 4))


@pytest.mark.parametrize("mu", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("k_out", [4, 2])
def test_objective_matches_numpy(dtype, mu, k_out):
    X, y = blobs(90, 4, 3, seed=3, dtype=dtype)
    problem, Xs, ys, targets = sorted_problem(X, y, k=3, mu=mu)
    L = np.random.RandomState(4).randn(k_out, 4) * 0.8
    loss, grad, n_active = problem.loss_grad(L)
    ref_loss, ref_grad = numpy_lmnn(Xs, ys, targets, L.astype(dtype), mu)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    assert_allclose(loss, ref_loss, rtol=rtol)
    assert_allclose(grad, ref_grad, rtol=rtol, atol=rtol * np.abs(ref_grad).max())
    assert grad.shape == (k_out, 4) and grad.dtype == np.float64
    # The dense kernel (used when the impostors are too many to store).
    Z = problem.embed(L)
    d_loss, d_active, d_grad = _dense_loss_grad(
        problem.X, Z, problem.class_start, problem.class_end, problem.targets,
        problem.n_targets, problem.Dt, problem.radius, *problem.tin, mu, True, 1)
    assert d_active == n_active
    assert_allclose(d_loss, ref_loss, rtol=rtol)
    assert_allclose(d_grad, ref_grad, rtol=rtol, atol=rtol * np.abs(ref_grad).max())


def test_objective_does_not_depend_on_the_candidate_set():
    """Inactive candidates add nothing and active ones are summed in a fixed
    order: any valid candidate set gives the same bits."""
    X, y = blobs(150, 5, 3, seed=5)
    L = np.random.RandomState(6).randn(5, 5)
    results = []
    for slack in (0.0, 0.05, 0.5, 1.0):
        problem, *_ = sorted_problem(X, y, slack=slack)
        loss, grad, _ = problem.loss_grad(L)
        results.append((loss, grad, problem.P_last))
    for loss, grad, _ in results[1:]:
        assert loss == results[0][0]
        assert_array_equal(grad, results[0][1])
    assert results[0][2] < results[-1][2]  # the sets did differ


@pytest.mark.parametrize("slack", [0.0, 0.3])
def test_impostor_search_matches_brute_force(dtype, slack):
    X, y = blobs(160, 6, 4, seed=7, dtype=dtype, spread=1.5)
    X[3] = X[100]  # a duplicate across classes (distance 0: always an impostor)
    problem, Xs, ys, _ = sorted_problem(X, y, slack=slack)
    L = np.random.RandomState(8).randn(3, 6).astype(dtype)
    Z = problem.embed(L)
    problem.search(L, Z)
    Z64 = Z.astype(np.float64)
    D = ((Z64[:, None] - Z64[None]) ** 2).sum(-1)
    r = problem.radius
    other = ys[:, None] != ys[None, :]
    must = other & (D < np.maximum(r[:, None], r[None, :]))  # every impostor pair
    rho = np.where(problem.has_targets, problem.rho, -1.0)
    thr = np.maximum(rho[:, None], rho[None, :])
    may = other & (D < np.sign(thr) * thr**2 * (1 + 1e-4) + 1e-4)  # within the enlarged radius
    found = np.zeros_like(must)
    off, oth = problem.inc_offsets, problem.inc_other
    for u in range(Xs.shape[0]):
        lst = oth[off[u]:off[u + 1]]
        assert np.all(np.diff(lst) > 0)  # increasing, no duplicates
        found[u, lst] = True
    assert_array_equal(found, found.T)
    assert not (must & ~found).any(), "an impostor pair is missing"
    assert not (found & ~may).any(), "a pair outside the enlarged radius"
    assert found[np.flatnonzero(np.all(Xs == X[3], axis=1))].any()


def test_gradient_finite_differences():
    X, y = blobs(40, 4, 3, seed=9)
    problem, Xs, ys, targets = sorted_problem(X, y, k=2, mu=0.6)
    rng = np.random.RandomState(10)
    shape = (3, 4)
    checked = 0
    for _ in range(6):
        L = rng.randn(*shape)
        # Away from the hinge kinks: no triplet within 1e-4 of its margin.
        Z = Xs @ L.T
        D = ((Z[:, None] - Z[None]) ** 2).sum(-1)
        h = np.concatenate([1 + D[i, targets[i][targets[i] >= 0], None] - D[i, ys != ys[i]]
                            for i in range(Xs.shape[0])], axis=None)
        if np.abs(h).min() < 1e-4:
            continue
        def f(v):
            return problem.loss_grad(v.reshape(shape))[0]

        def g(v):
            return problem.loss_grad(v.reshape(shape))[1].ravel()

        err = check_grad(f, g, L.ravel(), epsilon=1e-6)
        assert err <= 1e-5 * np.linalg.norm(g(L.ravel()))
        checked += 1
    assert checked >= 3


def test_validity_rule_never_drops_an_impostor():
    """Whenever a bound keeps the candidate set, every impostor pair of the
    new map is in it; exercise both bounds (movements, and the relative
    bound on the splits of an ill-conditioned, low-rank L_s)."""
    X, y = blobs(150, 6, 3, seed=25, spread=1.2)
    rng = np.random.RandomState(26)
    U, _ = np.linalg.qr(rng.randn(4, 4))
    V, _ = np.linalg.qr(rng.randn(6, 4))
    L_s = U @ np.diag([1.0, 0.4, 0.02, 0.004]) @ V.T * 2.0  # rank 4 of 6, cond 250
    problem, Xs, ys, _ = sorted_problem(X, y, slack=0.3)
    problem.loss_grad(L_s)
    other = ys[:, None] != ys[None, :]
    rules = set()
    for trial in range(60):
        scale = 10.0 ** rng.uniform(-4, -0.5)
        if trial % 3 == 0:
            L_t = L_s * (1 + scale)  # a common move: only the relative bound holds
        elif trial % 3 == 1:
            L_t = L_s + scale * rng.randn(4, 6)
        else:  # a change in the weak directions only
            L_t = L_s + scale * rng.randn(4, 6) @ (V[:, 2:] @ V[:, 2:].T)
        Z = problem.embed(L_t)
        if not problem._set_is_valid(L_t, Z):
            continue
        rules.add(problem.last_rule.split(" ")[0])
        D = ((Z[:, None] - Z[None]) ** 2).sum(-1)
        impostor = other & (D < problem.radius[:, None])
        impostor |= impostor.T
        found = np.zeros_like(impostor)
        off, oth = problem.inc_offsets, problem.inc_other
        for u in range(Xs.shape[0]):
            found[u, oth[off[u]:off[u + 1]]] = True
        assert not (impostor & ~found).any()
    assert rules == {"movement", "split"}


def test_candidate_set_survives_small_steps_and_stays_exact():
    """Along a path of small steps the set is reused (fewer searches than
    evaluations) and the objective still equals the brute-force one."""
    X, y = blobs(200, 5, 4, seed=11, spread=1.2)
    problem, Xs, ys, targets = sorted_problem(X, y, slack=0.2)
    rng = np.random.RandomState(12)
    L = np.eye(5)
    direction = rng.randn(5, 5)
    for step in range(12):
        L_t = L + 0.004 * step * direction
        loss, grad, _ = problem.loss_grad(L_t)
        ref_loss, ref_grad = numpy_lmnn(Xs, ys, targets, L_t, 0.5)
        assert_allclose(loss, ref_loss, rtol=1e-10)
        assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9 * np.abs(ref_grad).max())
    assert problem.n_evaluations == 12
    assert problem.n_searches <= 4
    # A large step invalidates the set: searched again, still exact.
    before = problem.n_searches
    L_far = 3.0 * L + direction
    assert_allclose(problem.loss_grad(L_far)[0], numpy_lmnn(Xs, ys, targets, L_far, 0.5)[0],
                    rtol=1e-10)
    assert problem.n_searches == before + 1


def test_dense_fallback_when_over_budget():
    X, y = blobs(120, 4, 3, seed=13, spread=3.0)
    problem, Xs, ys, targets = sorted_problem(X, y, budget=50)
    L = np.eye(4) * 0.2  # a small scale: most pairs are impostors
    loss, grad, _ = problem.loss_grad(L)
    assert problem.n_dense == 1
    ref_loss, ref_grad = numpy_lmnn(Xs, ys, targets, L, 0.5)
    assert_allclose(loss, ref_loss, rtol=1e-10)
    assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9 * np.abs(ref_grad).max())


@pytest.fixture
def always_parallel(monkeypatch):
    """Small problems run single-threaded by default: force the threads."""
    import fastmetric._core.objectives.lmnn

    monkeypatch.setattr(fastmetric._core.objectives.lmnn, "_PARALLEL_WORK", 0)


def test_kernels_same_for_one_and_two_threads(always_parallel):
    X, y = blobs(700, 6, 5, seed=14)
    L = np.random.RandomState(15).randn(4, 6)
    out = []
    for n_threads in (1, 2):
        problem, *_ = sorted_problem(X, y, n_threads=n_threads)
        loss, grad, n_active = problem.loss_grad(L)
        Z = problem.embed(L)
        dense = _dense_loss_grad(problem.X, Z, problem.class_start, problem.class_end,
                                 problem.targets, problem.n_targets, problem.Dt,
                                 problem.radius, *problem.tin, 0.5, True, n_threads)
        out.append((loss, grad, n_active, problem.inc_offsets, problem.inc_other, dense))
    a, b = out
    assert_array_equal(find_target_neighbors(X, y, 3, n_jobs=1)[0],
                       find_target_neighbors(X, y, 3, n_jobs=2)[0])
    assert a[0] == b[0] and a[2] == b[2]
    assert_array_equal(a[1], b[1])
    assert_array_equal(a[3], b[3])
    assert_array_equal(a[4], b[4])
    assert a[5][0] == b[5][0]
    assert_array_equal(a[5][2], b[5][2])


def test_float32_objective_agrees_with_float64(dtype):
    X, y = blobs(150, 5, 3, seed=18, dtype=dtype)
    L = np.random.RandomState(19).randn(3, 5)
    p32, *_ = sorted_problem(X.astype(np.float32), y)
    p64, *_ = sorted_problem(X.astype(np.float64), y)
    assert_allclose(p32.loss_grad(L)[0], p64.loss_grad(L)[0], rtol=1e-4)


@pytest.mark.parametrize("team_threads", [2, 3, 8])
@pytest.mark.parametrize("capacity", [0, 40])   # 40 pairs: most blocks searched again
def test_search_on_the_team_gives_the_openmp_result(team_threads, capacity):
    # fm_team.h's team (used under load) finds the same pair lists, whoever
    # searches a block, as OpenMP; so does a budget that is passed.
    from fastmetric.kernels.lmnn import _search
    from fastmetric.kernels.team import team_held

    X, y = blobs(700, 6, 5, seed=14, spread=2.0)
    problem, *_ = sorted_problem(X, y)
    Z = problem.embed(np.random.RandomState(15).randn(4, 6))
    Z32 = np.ascontiguousarray(Z - Z.mean(axis=0), dtype=np.float32)
    rho = np.where(problem.has_targets, 1.5 * np.maximum(problem.radius, 0.0), -1.0)
    ref = _search(Z32, problem.class_end, rho, 10**9, 1)
    assert ref[2] == 0 and ref[1].shape[0] > 1000
    for _ in range(5):
        got = _search(Z32, problem.class_end, rho, 10**9, 1, team_threads, capacity)
        assert got[2] == 0
        assert_array_equal(got[0], ref[0])
        assert_array_equal(got[1], ref[1])
    over = _search(Z32, problem.class_end, rho, ref[1].shape[0] // 4, 1, team_threads,
                   capacity)
    assert over[2] == 1 and over[1].shape[0] == 0
    assert team_held() <= 4


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("min_work, expected", [(0, 3), (10**12, 0)])
def test_fit_searches_on_the_team_under_load(monkeypatch, min_work, expected):
    # Beside busy processes the default n_jobs searches on the team, when a
    # search has enough work to pay for waking the helpers; the fit is
    # bitwise the one of a quiet machine.
    import fastmetric._core.objectives.lmnn as objective_module
    import fastmetric._learners.lmnn as lmnn_module
    from fastmetric._learners.lmnn import LMNN

    X, y = blobs(400, 6, 4, seed=16)
    quiet = LMNN(max_iter=20).fit(X, y)
    seen = []
    original = objective_module._search

    def spy(*args):
        seen.append(args[5] if len(args) > 5 else 0)
        return original(*args)

    monkeypatch.setattr(objective_module, "_search", spy)
    monkeypatch.setattr(objective_module, "_TEAM_SEARCH_WORK", min_work)
    monkeypatch.setattr(lmnn_module, "team_threads", lambda n_jobs=None: 3 if n_jobs is None else 0)
    busy = LMNN(max_iter=20).fit(X, y)
    assert seen and set(seen) == {expected}
    assert_array_equal(busy.components_, quiet.components_)
    seen.clear()
    LMNN(max_iter=5, n_jobs=2).fit(X, y)
    assert set(seen) == {0}
