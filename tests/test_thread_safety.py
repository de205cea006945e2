"""Threads: one fitted model used by 8 Python threads at once gives the
results of one thread, and two fits running in two threads at once (each
with ``n_jobs=2``) give the models of sequential fits."""
import threading
import warnings

import numpy as np
import pytest

from ._learner_cases import all_cases

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CASES = all_cases()
N_THREADS = 8
ROUNDS = 5


def _outputs(est, case):
    out = [est.transform(case.X), est.pair_distance(case.pairs)]
    if case.tuples is not None:
        out += [est.predict(case.tuples), est.decision_function(case.tuples)]
    return out


def _run_together(functions):
    """Run the functions in threads started together; return their results
    (re-raising the first error)."""
    barrier = threading.Barrier(len(functions))
    results, errors = [None] * len(functions), []

    def worker(i):
        try:
            barrier.wait()
            results[i] = functions[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_model_in_eight_threads(case):
    est = case.fit()
    est.set_params(**({"n_jobs": 2} if "n_jobs" in est.get_params() else {}))
    expected = _outputs(est, case)

    def many():
        return [_outputs(est, case) for _ in range(ROUNDS)]

    for per_thread in _run_together([many] * N_THREADS):
        for got in per_thread:
            for a, b in zip(got, expected):
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", [c for c in CASES if "n_jobs" in c.params],
                         ids=lambda c: c.name)
def test_two_fits_in_two_threads(case):
    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return case.make(n_jobs=2).fit(*case.fit_args)

    sequential = [fit(), fit()]
    together = _run_together([fit, fit])
    for a, b in zip(together, sequential):
        assert a.components_.tobytes() == b.components_.tobytes()
    np.testing.assert_array_equal(together[0].components_, together[1].components_)


# --------------------------------------------------------------------------
# The neighbour search: one fitted index queried from 8 threads at once
# --------------------------------------------------------------------------
def _search_cases():
    import fastmetric as fm

    X = CASES[0].X
    nca = next(c for c in CASES if c.name == "NCA").fit()
    L = np.random.RandomState(0).randn(3, X.shape[1])
    cases = [("euclidean", None, "brute"), ("array", L, "brute"), ("learner", nca, "auto"),
             ("array-float32", L.astype(np.float32), "brute")]
    try:
        import hnswlib  # noqa: F401

        cases.append(("hnsw", L, "hnsw"))
    except ImportError:  # optional dependency
        pass
    return [(name, fm.MahalanobisNeighbors(n_neighbors=7, radius=1.5, metric=metric,
                                           algorithm=algorithm, n_jobs=2), X)
            for name, metric, algorithm in cases]


SEARCH_CASES = _search_cases()


def _search_outputs(nn, X):
    dist, ind = nn.kneighbors(X[::3])
    loo = nn.kneighbors(None, n_neighbors=4, return_distance=False)
    rdist, rind = nn.radius_neighbors(X[1::4])
    graph = nn.kneighbors_graph(X[::5], mode="distance")
    return [dist, ind, loo, *rdist, *rind, graph.data, graph.indices, graph.indptr]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name, nn, X", SEARCH_CASES, ids=[c[0] for c in SEARCH_CASES])
def test_one_neighbour_index_in_eight_threads(name, nn, X):
    """kneighbors, leave-one-out kneighbors, radius_neighbors and the graph
    of one fitted MahalanobisNeighbors (n_jobs=2 inside each call), from 8
    threads at once: every call gives one thread's results, bitwise."""
    nn.fit(X)
    expected = _search_outputs(nn, X)

    def many():
        return [_search_outputs(nn, X) for _ in range(ROUNDS)]

    for per_thread in _run_together([many] * N_THREADS):
        for got in per_thread:
            assert len(got) == len(expected)
            for a, b in zip(got, expected):
                assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.timeout(300)
def test_neighbour_functions_and_evaluate_in_eight_threads():
    """The one-call search functions and evaluate (each builds its own index)
    from 8 threads at once give one thread's results."""
    import fastmetric as fm

    case = next(c for c in CASES if c.name == "NCA")
    nca = case.fit()
    X, y = case.X, case.fit_args[1]

    def outputs():
        dist, ind = fm.neighbors.kneighbors(X[::2], X, 5, metric=nca, n_jobs=2)
        rdist, rind = fm.neighbors.radius_neighbors(X[::7], None, 1.0, metric=nca, n_jobs=2)
        scores = fm.metrics.evaluate(nca, X, y, clustering=False, n_jobs=2)
        return [dist, ind, *rdist, *rind, np.array(sorted(scores.items()), dtype=object)]

    expected = outputs()
    for got in _run_together([outputs] * N_THREADS):
        for a, b in zip(got, expected):
            if a.dtype == object:
                assert a.tolist() == b.tolist()
            else:
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
