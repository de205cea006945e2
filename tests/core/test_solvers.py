"""The solvers of the core that the learners share: metric-learn's halving
gradient descent and the minibatch epochs of the stochastic solvers."""
import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import check_grad

from fastmetric._core.solvers import (
    minibatch_epochs,
    minimize_halving_descent,
    quadratic_pull,
    stream_epochs,
)


def _quadratic(x):
    A = np.diag([1.0, 10.0])
    return 0.5 * float(x @ A @ x), A @ x


def test_halving_descent_decreases_and_converges():
    seen = []

    def on_iteration(iteration, x, loss):
        seen.append((iteration, loss))
        return False

    res = minimize_halving_descent(_quadratic, np.array([1.0, 1.0]), learning_rate=1.0,
                                   max_iter=300, on_iteration=on_iteration)
    curve = res.loss_curve
    assert [loss for _, loss in seen] == curve
    assert [it for it, _ in seen] == list(range(1, len(curve) + 1))
    assert all(b <= a for a, b in itertools.pairwise(curve))  # steps never increase f
    assert res.fun < 1e-12 and res.fun == curve[-1]


def test_halving_descent_stops_on_callback_and_on_underflow():
    res = minimize_halving_descent(_quadratic, np.array([1.0, 1.0]), learning_rate=0.1,
                                   max_iter=100, on_iteration=lambda it, x, f: it >= 3)
    assert res.n_iter == 3 and not res.converged and "callback" in res.message

    def uphill(x):  # the gradient points away from the minimum: no step decreases f
        return float(x @ x), -x

    x0 = np.array([1.0, -2.0])
    res = minimize_halving_descent(uphill, x0, learning_rate=1.0, max_iter=10,
                                   on_iteration=lambda it, x, f: False)
    assert res.converged and res.n_iter == 0 and res.message == "step size underflow"
    assert_array_equal(res.x, x0)


def test_minibatch_epochs_orders_are_permutations_fixed_by_seed_and_epoch():
    def orders(seed):
        epochs = minibatch_epochs(10, 4, seed, lambda order: [order[:4], order[4:8], order[8:]])
        return [np.concatenate(list(epochs(e))) for e in range(3)]

    first, again, other = orders(5), orders(5), orders(6)
    for order in first:
        assert_array_equal(np.sort(order), np.arange(10))
    for a, b in zip(first, again):
        assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])  # a fresh order every epoch
    assert not np.array_equal(first[0], other[0])


def test_stream_epochs_draw_every_minibatch_of_every_epoch():
    def batches_of_epoch(epoch):
        return (((epoch, i), 1.0) for i in range(3))

    epochs = stream_epochs(3, batches_of_epoch)
    assert list(epochs(2)) == [((2, 0), 1.0), ((2, 1), 1.0), ((2, 2), 1.0)]


@pytest.mark.parametrize("column_scales", [None, np.array([0.5, 1.0, 2.0])])
def test_quadratic_pull_is_its_formula_and_its_gradient(column_scales):
    """The one pull toward a start that NCA, MLKR and LDML add: its value is
    the squared distance to the centre after scaling the columns, its
    gradient the derivative (column scales broadcast over the rows of a 2-D
    map), and a weight of zero is no pull."""
    rng = np.random.RandomState(0)
    center, x = rng.randn(2, 3), rng.randn(2, 3)
    pull = quadratic_pull(center, 0.7, column_scales)
    scales = np.ones(3) if column_scales is None else column_scales
    assert_allclose(pull(x)[0], 0.7 * np.sum(((x - center) * scales) ** 2), rtol=1e-13)
    assert pull(x)[1].shape == center.shape
    assert check_grad(lambda t: pull(t)[0], lambda t: pull(t)[1].ravel(), x.ravel()) < 1e-6
    assert pull(center) == (0.0, pytest.approx(np.zeros((2, 3))))
    assert quadratic_pull(center, 0.0, column_scales) is None


def test_quadratic_pull_with_scales_whose_squares_overflow():
    """Data at 1e200 get per-feature scales near 1e200 and a map near
    1e-200: the scaled steps are of order one, and so is the pull."""
    center = np.array([[1e-200, 2e-200]])
    pull = quadratic_pull(center, 0.5, np.array([2.0 ** 664, 2.0 ** 665]))
    loss, grad = pull(3 * center)
    assert np.isfinite(loss) and loss > 0 and np.all(np.isfinite(grad))
