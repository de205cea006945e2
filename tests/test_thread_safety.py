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
