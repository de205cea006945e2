"""The LDML objective glue: initial scale, objective, full-batch and minibatch fits.

LDML (Guillaumin, Verbeek & Schmid, 2009) models the probability that a
pair ``(x, x')`` is similar as ``sigmoid(bias - ||L (x - x')||^2)`` and fits
``L`` and ``bias`` by minimising, over pairs with targets ``t`` in [0, 1]
and weights ``w``,

    f(L, bias) = sum_p w_p [softplus(z_p) - t_p z_p] / sum_p w_p
                 + (alpha / 2) ||L - L0||_F^2,          z_p = bias - D_p.

The loss and gradient of the data term come from the OpenMP kernel
:class:`fastmetric.kernels.pair_loss.PairLossProblem` (or, on a dask array,
:class:`fastmetric._core.dask_support.DaskPairLossProblem`).  This module
holds what sits between the pairs and the solvers of
:mod:`fastmetric._core.solvers`: the start-up scale and bias
(:func:`initial_scale_bias`, :func:`initial_theta`), the objective over
``theta = [vec(L), bias]`` (:func:`ldml_objective`), the full fit
(:func:`fit_ldml`: L-BFGS, or minibatch Adam/SGD over fixed pairs or over
pairs drawn per minibatch, :class:`LabelBatches`) and one ``partial_fit``
epoch (:func:`partial_fit_epoch`).  The learners :class:`fastmetric.LDML`,
:class:`fastmetric.LDML_Supervised` and :class:`fastmetric.ClusterLDML`
(one LDML per cluster) call them.
"""
from dataclasses import dataclass
from functools import partial

import numpy as np

from fastmetric._core.dask_support import is_dask_array
from fastmetric._core.init import feature_scales, initialize_components
from fastmetric._core.objectives.pair_loss import PAIRS_PER_THREAD, PairLossProblem
from fastmetric._core.rows import evenly_spaced, l2_normalize_rows
from fastmetric._core.solvers import (
    ADAM_EPSILON,
    SolverResult,
    StochasticOptimizer,
    epoch_order,
    minibatch_epochs,
    minimize_lbfgs,
    minimize_stochastic,
    progress,
    quadratic_pull,
    run_epoch,
    stream_epochs,
)
from fastmetric._core.threads import team_threads, threads_for_work

__all__ = ["INIT_MAX_PAIRS", "LDMLFit", "LabelBatches", "fit_ldml", "initial_scale_bias",
           "initial_theta", "ldml_objective", "ldml_optimizer", "normalize_points",
           "partial_fit_epoch", "theta_of"]

# Pairs used to fit the initial scale and bias (see initial_scale_bias).
INIT_MAX_PAIRS = 20_000
# A named start of LDML on pairs is computed on at most this many of the
# pairs' distinct points.
INIT_MAX_ROWS = 100_000


def initial_scale_bias(sq_dist, targets, weights, ridge=1e-6, max_iter=50):
    """Scale ``gamma`` of the squared distances and bias that best fit the pairs.

    The initial map ``L0`` fixes a direction in the space of maps, not a
    scale: on raw data (pixels, say) ``||L0 d||^2`` may be in the thousands,
    where the sigmoid is saturated and L-BFGS crawls.  We therefore start
    from ``sqrt(gamma) L0`` and ``bias``, the best pair of the one-feature
    logistic regression

        z_p = bias - gamma D_p,   min  sum_p w_p [softplus(z_p) - t_p z_p] / W,

    a convex problem in (gamma, bias).  A learner that is already fitted
    (a warm start) gets gamma close to 1.  For conditioning it is solved on
    the standardised feature ``u = (D - m) / s`` (m the median, s the
    median absolute deviation of D, a scale that heavy tails of D do not
    inflate): ``z = beta' - gamma' u``, with a tiny ridge ``ridge/2
    gamma'^2`` and capped Newton steps that keep gamma finite when D
    separates the pairs perfectly.  Damped Newton steps; derivatives, with r = sigmoid(z) - t
    and h = sigmoid(z)(1 - sigmoid(z)) (weights w/W):
    ``g_beta = sum w r``, ``g_gamma = -sum w r u + ridge gamma'``,
    ``H = [[sum w h, -sum w h u], [-sum w h u, sum w h u^2 + ridge]]``.
    When D does not rank the similar pairs first (gamma' < 0.1: an
    uninformative or adverse initial map) gamma' is set to 1, which spreads
    z over a few units, and only the bias is fitted.

    Returns
    -------
    gamma : float > 0
    bias : float
    """
    from scipy.special import expit

    D = np.asarray(sq_dist, dtype=np.float64)
    w = (np.ones_like(D) if weights is None else weights) / (
        D.shape[0] if weights is None else weights.sum())
    m = float(np.median(D))
    s = float(np.median(np.abs(D - m)))
    if not s > 0:  # over half the distances tie at the median
        s = float(np.std(D))
    if not s > 1e-12 * max(1.0, abs(m)):  # all distances equal: no scale to fit
        u = np.zeros_like(D)
        s = 1.0
        fit_gamma = False
    else:
        u = (D - m) / s
        fit_gamma = True

    def objective(theta):
        z = theta[0] - theta[1] * u
        return float(np.dot(w, np.logaddexp(0.0, z) - targets * z)
                     + 0.5 * ridge * theta[1] ** 2)

    def newton(theta, fit_gamma):
        f = objective(theta)
        for _ in range(max_iter):
            z = theta[0] - theta[1] * u
            sig = expit(z)
            r = w * (sig - targets)
            h = w * sig * (1 - sig)
            if fit_gamma:
                g = np.array([r.sum(), -np.dot(r, u) + ridge * theta[1]])
                hu = np.dot(h, u)
                H = np.array([[h.sum() + 1e-12, -hu], [-hu, np.dot(h, u * u) + ridge]])
                step = -np.linalg.solve(H, g)
            else:
                step = np.array([-r.sum() / max(h.sum(), 1e-12), 0.0])
            # Cap the step (separable pairs drive the logistic optimum far
            # away), then backtrack until the objective does not increase.
            norm = np.linalg.norm(step)
            if norm > 10.0:
                step *= 10.0 / norm
            t = 1.0
            while t > 1e-8:
                f_new = objective(theta + t * step)
                if f_new <= f:
                    break
                t *= 0.5
            else:
                break
            theta = theta + t * step
            converged = f - f_new <= 1e-12 * max(1.0, abs(f))
            f = f_new
            if converged:
                break
        return theta

    theta = newton(np.array([0.0, 1.0 if fit_gamma else 0.0]), fit_gamma)
    if fit_gamma and theta[1] < 0.1:
        theta = newton(np.array([theta[0], 1.0]), False)
        theta[1] = 1.0
    if not fit_gamma:
        # u = 0: z = beta' = bias - D with D = m for every pair (gamma = 1).
        return 1.0, float(theta[0] + m)
    # z = beta' - gamma' (D - m) / s = (beta' + gamma' m / s) - gamma D
    return float(theta[1] / s), float(theta[0] + theta[1] * m / s)


def ldml_objective(problem, shape, dtype, L0, alpha, n_threads, scales=None):
    """``fun(theta) -> (loss, grad)`` over theta = [vec(L), bias] (float64).

    ``problem.loss_grad(L, bias, n_threads)`` gives the data term; the pull
    ``alpha/2 ||L - L0||_F^2`` (gradient ``alpha (L - L0)``;
    :func:`~fastmetric._core.solvers.quadratic_pull`, NCA's too) is added here,
    with per-feature ``scales`` in the coordinates of the search,
    ``alpha/2 ||(L - L0) * scales||_F^2``: then the units of the columns
    only rescale the fitted map, pull included.
    """
    k, d = shape
    pull = quadratic_pull(np.reshape(L0, (k, d)), 0.5 * alpha,
                          None if scales is None else np.asarray(scales, dtype=np.float64))

    def fun(theta):
        L = theta[:-1].reshape(k, d)
        loss, grad_L, grad_bias = problem.loss_grad(
            np.ascontiguousarray(L, dtype=dtype), theta[-1], n_threads
        )
        grad = np.empty_like(theta)
        grad[:-1] = grad_L.ravel()
        grad[-1] = grad_bias
        if pull is not None:
            pull_loss, pull_grad = pull(L)
            loss += pull_loss
            grad[:-1] += pull_grad.ravel()
        return loss, grad

    return fun


def theta_of(L, bias):
    """The solvers' parameter vector ``[vec(L), bias]``."""
    return np.concatenate([np.ravel(L), [bias]])


def initial_theta(X, a, b, targets, weights, class_labels, rng, *, init, n_components,
                  n_jobs, feature_scaling=None):
    """theta0 = [vec(L0), bias0], L0 (the init, scaled to fit the pairs) and
    the per-feature scales of features in different units (or None).

    Two parameters do not need every pair: the scale and bias are fitted
    on at most INIT_MAX_PAIRS evenly spaced pairs, whose distances are
    the only ones computed (and, on a dask array, whose rows are the
    only ones read).

    Parameters
    ----------
    X : ndarray or dask array of shape (n_points, n_features)
    a, b : ndarray of shape (n_pairs,), intp
        The pairs, as row indices into X.
    targets : ndarray of shape (n_pairs,), float64
    weights : ndarray of shape (n_pairs,) or None
    class_labels : ndarray of shape (n_points,) or None
        For ``init='lda'`` (and 'auto' choosing it).
    rng : RandomState
    init, n_components :
        As in :func:`fastmetric._core.base.initialize_components`.
    n_jobs : int or None
        Threads of the distance kernel.
    feature_scaling : {'auto', 'range'} or None
        As in :func:`fastmetric._core.init.feature_scales` (on the rows the
        start is computed from): a named start is then computed on the
        features divided by the scales, which the solvers use too
        (:func:`scaled_lbfgs_objective`, :func:`ldml_optimizer`).
    """
    from fastmetric._core.distances import paired_mahalanobis_distances

    init_rows = None
    if isinstance(init, str) and class_labels is None and not is_dask_array(X):
        # A named start from the points of the pairs only (with an array
        # preprocessor X may hold rows no pair uses), as when the pairs
        # come as points; at most INIT_MAX_ROWS of them, evenly spaced.
        used = np.unique(np.concatenate([a, b]))
        if used.shape[0] < X.shape[0]:
            init_rows = used[evenly_spaced(used.shape[0], INIT_MAX_ROWS)]
    keep = evenly_spaced(a.shape[0], INIT_MAX_PAIRS)
    a, b, targets = a[keep], b[keep], targets[keep]
    weights = None if weights is None else weights[keep]
    if is_dask_array(X):
        # The initial map from at most INIT_MAX_ROWS evenly spaced rows.
        from fastmetric._core.dask_support import gather_rows, sample_rows

        X_init, y_init = sample_rows(X, class_labels)
        rows = gather_rows(X, np.concatenate([a, b]))
        ends = np.arange(a.shape[0])
        pairs = np.column_stack((ends, ends + a.shape[0]))
    else:
        X_init, y_init, rows, pairs = X, class_labels, X, np.column_stack((a, b))
        if init_rows is not None:
            X_init = np.asarray(X[init_rows])
    # The ranges, and a scaled named start, from at most INIT_MAX_ROWS evenly
    # spaced rows: neither needs a pass over (or a scaled copy of) a memmap
    # of millions of rows.
    few = evenly_spaced(X_init.shape[0], INIT_MAX_ROWS)
    X_few = np.asarray(X_init[few])
    scales = feature_scales(X_few, feature_scaling)
    if scales is not None and isinstance(init, str):
        # powers of two: X / scales and L / scales are exact
        L0 = initialize_components(init, X_few / scales.astype(X_few.dtype),
                                   y=None if y_init is None else np.asarray(y_init)[few],
                                   n_components=n_components, random_state=rng) / scales
    else:
        L0 = initialize_components(init, X_init, y=y_init, n_components=n_components,
                                   random_state=rng)
    sq0 = paired_mahalanobis_distances(rows, pairs, components=L0.astype(X.dtype),
                                       squared=True, n_jobs=n_jobs)
    gamma, bias0 = initial_scale_bias(sq0, targets, weights)
    L0 = L0 * np.sqrt(gamma)
    return theta_of(L0, bias0), L0, scales


def _theta_scales(scales, shape):
    """Per-coordinate scales of theta = [vec(L), bias]: each column of L by
    its feature's scale (L's rows one after the other), the bias by 1."""
    return np.append(np.tile(scales, shape[0]), 1.0)


def scaled_lbfgs_objective(fun, scales, shape):
    """``fun`` over theta = [vec(L), bias] as a function of ``phi = theta *
    scales`` (column-wise on L, 1 on the bias): the L-BFGS search over
    ``L * scales``, where every feature spans about one unit.  Returns the
    new function and the vector that divides ``phi`` back into ``theta``
    (None and ``fun`` itself without scales)."""
    if scales is None:
        return fun, None
    full = _theta_scales(scales, shape)

    def scaled(phi):
        loss, grad = fun(phi / full)
        return loss, grad / full  # d f / d phi = (d f / d theta) / scales

    return scaled, full


def ldml_optimizer(solver, learning_rate, scales, shape):
    """Adam or SGD over theta = [vec(L), bias]; with per-feature ``scales``
    (features in different units) the steps are those of the search over
    ``L * scales``: Adam's rate divided by the scale and its guard
    ``epsilon`` multiplied by it, SGD's rate divided by the square."""
    if scales is None:
        return StochasticOptimizer(solver, learning_rate)
    full = _theta_scales(scales, shape)
    if solver == "adam":
        return StochasticOptimizer(solver, learning_rate / full, epsilon=ADAM_EPSILON * full)
    return StochasticOptimizer(solver, learning_rate / full ** 2)


def normalize_points(X):
    """Rows scaled to unit L2 norm, in memory or lazily on a dask array."""
    if is_dask_array(X):
        from fastmetric._core.dask_support import map_rows

        return map_rows(X, l2_normalize_rows, X.shape[1], X.dtype)
    return l2_normalize_rows(X)


def pair_source(X, n_jobs=None):
    """What LDML's minibatches are evaluated on: X itself, or on a dask array a
    :class:`~fastmetric._core.dask_minibatch.DaskPairBatches` that gathers them
    on the workers and steps them there (one per fit, so that it reads the
    next epoch's minibatches ahead)."""
    if is_dask_array(X):
        from fastmetric._core.dask_minibatch import DaskPairBatches

        return DaskPairBatches(X, n_jobs=n_jobs)
    return X


def _pair_minibatches(source, specs, make_fun, n_threads, following=None):
    """The minibatches ``(make_fun(problem, n_threads=n_threads), weight)`` of
    each ``(a, b, targets, weights)`` of ``specs`` whose weight is positive,
    one pair problem over the points each; on a dask array (``source`` from
    :func:`pair_source`) they come in groups that are gathered ahead, with
    the next epoch's (``following()``), and stepped on the workers."""
    if hasattr(source, "minibatches"):
        yield from source.minibatches(specs, make_fun, following)
        return
    for sa, sb, st, bw in specs:
        weight = float(sa.shape[0] if bw is None else bw.sum())
        if weight <= 0:
            continue
        yield make_fun(PairLossProblem(source, sa, sb, st, bw), n_threads=n_threads), weight


def _slice_specs(a, b, targets, weights, order, batch_size):
    """The minibatches ``(a, b, targets, weights)`` of consecutive slices of ``order``."""
    return ((a[idx], b[idx], targets[idx], None if weights is None else weights[idx])
            for idx in (order[start:start + batch_size]
                        for start in range(0, order.shape[0], batch_size)))


def _batch_objective(shape, dtype, L0, alpha, scales=None):
    """``make_fun(problem, n_threads=...)`` of :func:`_pair_minibatches`: LDML's
    objective on one minibatch (picklable, for the Dask workers)."""
    return partial(ldml_objective, shape=shape, dtype=dtype, L0=L0, alpha=alpha,
                   scales=scales)


@dataclass
class LDMLFit:
    """What :func:`fit_ldml` returns.

    Attributes
    ----------
    result : SolverResult
        ``result.x`` is ``[vec(L), bias]``.
    L0 : ndarray of shape (n_components, n_features)
        The scaled initial map (the centre of the ``alpha`` pull).
    optimizer : StochasticOptimizer or None
        The minibatch solver's state (None with L-BFGS), for partial_fit.
    batch_seed : int or None
        The seed of the minibatch order, for partial_fit.
    scales : ndarray of shape (n_features,) or None
        The per-feature scales of the fit (:func:`initial_theta`).
    """

    result: SolverResult
    L0: np.ndarray
    optimizer: object = None
    batch_seed: object = None
    scales: object = None


# LDML's default pull toward its start, relative to the start's size:
# ``alpha='auto'`` is ``alpha/2 ||L - L0||^2`` with ``alpha = 2 * 0.01 /
# ||L0||^2``, i.e. 1 % of ``||L - L0||^2 / ||L0||^2``, whatever the units.
# A few hundred pairs can often be separated by some metric, and the
# log-loss then has no minimum: L grows until max_iter and the metric
# generalises poorly.  benchmarks/quality_ldml_pairs.py (iris, wine, breast
# cancer, digits; min-max and standardised; 100, 400 and 2,000 random
# pairs): with the pull all 24 fits converge (6 hit max_iter without it),
# the held-out pair AUC rises by more than 0.001 in 17, moves by at most
# 0.002 in 6 and falls in one (standardised digits, 100 pairs: 0.855 ->
# 0.843, its 3-NN accuracy 0.911 -> 0.950); standardised digits with 400
# pairs: AUC 0.784 -> 0.879, 3-NN 0.863 -> 0.961.  LDML_Supervised draws 20
# pairs per point and keeps alpha=0: there the same pull lowered the mean
# 3-NN accuracy of benchmarks/quality_uci.py (0.8744 -> 0.8722, one draw).
AUTO_RELATIVE_PULL = 0.01


def resolve_alpha(alpha, L0, scales=None):
    """The strength of ``alpha/2 ||L - L0||^2``: ``alpha`` itself, or for
    ``'auto'`` ``2 * AUTO_RELATIVE_PULL / ||L0||_F^2`` (0 for a zero start;
    with per-feature ``scales``, norms of ``L0 * scales``, the coordinates
    of the search, see :func:`ldml_objective`).

    >>> import numpy as np
    >>> resolve_alpha("auto", 10.0 * np.eye(2))  # 1 % of ||L - L0||^2 / 200
    0.0001
    >>> resolve_alpha(0.5, np.eye(2))
    0.5
    """
    if isinstance(alpha, str):  # 'auto' (the parameter's constraint)
        size = float(np.sum(np.square(L0 if scales is None else L0 * scales)))
        return 2.0 * AUTO_RELATIVE_PULL / size if size > 0 else 0.0
    return float(alpha)


def fit_ldml(X, a, b, targets, weights, *, rng, init, n_components, alpha, solver,
             max_iter, tol, batch_size, learning_rate, n_iter_no_change, n_jobs, n_threads,
             verbose, on_iteration, class_labels=None, stream=None, name="LDML",
             feature_scaling=None):
    """Fit L and the bias on index pairs (a, b) into the (normalised) points X.

    ``solver='lbfgs'`` runs :func:`~fastmetric._core.solvers.minimize_lbfgs`
    on every pair (on a dask array, through
    :class:`~fastmetric._core.dask_support.DaskPairLossProblem`);
    ``'adam'``/``'sgd'`` run minibatch epochs, over the fixed pairs in an
    order drawn from ``rng`` per epoch, or, with ``stream`` (a
    :class:`LabelBatches`), over pairs drawn per minibatch (on a dask
    array, with the same draws, the minibatches' rows gathered and their
    shares evaluated on the workers:
    :class:`~fastmetric._core.dask_minibatch.DaskPairBatches`).  ``(a, b,
    targets, weights)`` then only serve the initial scale and bias.

    Call inside :func:`~fastmetric._core.threads.single_threaded_blas` for
    results that do not depend on the BLAS thread count.

    Parameters
    ----------
    X : ndarray or dask array of shape (n_points, n_features)
    a, b : ndarray of shape (n_pairs,), intp
    targets : ndarray of shape (n_pairs,), float64 in [0, 1]
    weights : ndarray of shape (n_pairs,) or None
    rng : RandomState
        Draws the init (see :func:`initial_theta`), then the minibatch seed.
    init, n_components, alpha, solver, max_iter, tol, batch_size, learning_rate, \
n_iter_no_change, n_jobs :
        The parameters of :class:`fastmetric.LDML` (validated).
    n_threads : int
        Threads of the kernels (resolved ``n_jobs``).
    verbose : int
        2 or more: progress bars over the minibatches (when tqdm is there).
    on_iteration : callable
        ``on_iteration(iteration, theta, loss) -> bool``; True stops.
    class_labels : ndarray, optional
        Labels of the rows of X, for ``init='lda'``.
    stream : LabelBatches, optional
    name : str
        The learner's name, for messages.
    feature_scaling : {'auto', 'range'} or None
        Features in different units: see :func:`initial_theta` (the
        learners' parameter; ClusterLDML's per-cluster fits leave it None).

    Returns
    -------
    LDMLFit
    """
    on_dask = is_dask_array(X)
    theta0, L0, scales = initial_theta(X, a, b, targets, weights, class_labels, rng, init=init,
                                       n_components=n_components, n_jobs=n_jobs,
                                       feature_scaling=feature_scaling)
    alpha = resolve_alpha(alpha, L0, scales)
    shape = L0.shape
    if solver == "lbfgs":
        if on_dask:
            from fastmetric._core.dask_support import DaskPairLossProblem

            problem = DaskPairLossProblem(X, a, b, targets, weights, n_jobs=n_jobs)
        else:
            problem = PairLossProblem(X, a, b, targets, weights, n_threads=n_threads)
            # Under load the main pass runs on the team (the same result).
            problem.team_threads = threads_for_work(team_threads(n_jobs),
                                                    problem.n_pairs + problem.n_points,
                                                    PAIRS_PER_THREAD)
        fun, full = scaled_lbfgs_objective(
            ldml_objective(problem, shape, X.dtype, L0, alpha, n_threads, scales), scales, shape)
        if full is None:
            result = minimize_lbfgs(fun, theta0, max_iter=max_iter, tol=tol,
                                    on_iteration=on_iteration)
        else:
            result = minimize_lbfgs(
                fun, theta0 * full, max_iter=max_iter, tol=tol,
                on_iteration=lambda it, phi, loss: on_iteration(it, phi / full, loss))
            result.x = result.x / full
        return LDMLFit(result, L0, scales=scales)
    batch_seed = int(rng.randint(0, np.iinfo(np.int32).max))
    source = pair_source(X, n_jobs)
    make_fun = _batch_objective(shape, X.dtype, L0, alpha, scales)

    def next_epoch(epoch):
        # the next epoch's minibatches, read ahead on dask arrays; none after the last
        return (lambda: specs_of(epoch + 1)) if epoch + 1 < max_iter else None

    if stream is None:
        def specs_of(epoch, order=None):
            if order is None:
                order = epoch_order(a.shape[0], batch_seed, epoch)
            return _slice_specs(a, b, targets, weights, order, batch_size)

        epoch_batches = minibatch_epochs(
            a.shape[0], batch_size, batch_seed,
            lambda order, epoch: _pair_minibatches(
                source, specs_of(epoch, order), make_fun, n_threads,
                following=next_epoch(epoch)),
            verbose, with_epoch=True)
    else:
        def specs_of(epoch):
            return ((sa, sb, st, None)
                    for sa, sb, st in (stream(epoch, i) for i in range(stream.n_batches)))

        epoch_batches = stream_epochs(
            stream.n_batches,
            lambda epoch: _pair_minibatches(source, specs_of(epoch), make_fun, n_threads,
                                            following=next_epoch(epoch)),
            verbose)
    optimizer = ldml_optimizer(solver, learning_rate, scales, shape)
    result = minimize_stochastic(
        epoch_batches, theta0, max_epochs=max_iter, tol=tol,
        n_iter_no_change=n_iter_no_change, on_iteration=on_iteration, optimizer=optimizer,
    )
    return LDMLFit(result, L0, optimizer, batch_seed, scales)


def partial_fit_epoch(X, a, b, targets, weights, theta, L0, optimizer, seed, epoch, *,
                      batch_size, alpha, n_threads, verbose, n_jobs=None, scales=None):
    """One epoch of ``optimizer`` over these pairs, from ``theta``.

    The minibatches are consecutive slices of a permutation drawn from
    ``(seed, epoch)``, so that successive ``partial_fit`` calls visit their
    pairs in fresh orders, reproducibly.

    Returns
    -------
    theta, mean_loss, finite, interrupted
        As :func:`~fastmetric._core.solvers.run_epoch`.
    """
    specs = _slice_specs(a, b, targets, weights, epoch_order(a.shape[0], seed, epoch),
                         batch_size)
    batches = progress(
        _pair_minibatches(pair_source(X, n_jobs), specs,
                          _batch_objective(L0.shape, X.dtype, L0, alpha, scales), n_threads),
        -(-a.shape[0] // batch_size), verbose, f"partial_fit {epoch + 1}")
    return run_epoch(batches, theta, optimizer)


class LabelBatches:
    """Minibatches of pairs drawn from class labels as they are needed.

    Epoch ``e`` is the sample of ``n_positive`` + ``n_negative`` pairs of
    :func:`~fastmetric.kernels.sampling.sample_pairs` with seed ``seed + 7919 e``;
    minibatch ``i`` takes an equal share of its positive and of its negative
    draws (the draws are independent, so consecutive slices are random
    minibatches and no shuffling is needed).
    """

    def __init__(self, stream, n_positive, n_negative, batch_size, seed):
        self.stream = stream
        self.seed = seed
        self.n_batches = max(1, -(-(n_positive + n_negative) // batch_size))
        # Minibatch i takes draws [i n / n_batches, (i + 1) n / n_batches):
        # computed when needed (Python integers), not as tables of
        # n_batches + 1 cuts, which would fill memory for an impossible
        # n_pairs before the sampler could refuse it.
        self.n_positive = n_positive
        self.n_negative = n_negative

    def draw(self, epoch, positive_start, n_positive, negative_start, n_negative):
        pairs, t = self.stream.draw(self.seed + 7919 * epoch, positive_start, n_positive,
                                    negative_start, n_negative)
        return (np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]),
                t.astype(np.float64))

    def __call__(self, epoch, i):
        p0, p1 = (j * self.n_positive // self.n_batches for j in (i, i + 1))
        n0, n1 = (j * self.n_negative // self.n_batches for j in (i, i + 1))
        return self.draw(epoch, p0, p1 - p0, n0, n1 - n0)
