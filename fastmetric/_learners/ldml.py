"""LDML: Logistic Discriminant Metric Learning (Guillaumin, Verbeek & Schmid, 2009).

The model gives a pair ``(x, x')`` the probability of being similar

    p = sigmoid(bias - ||L (x - x')||^2),

and LDML fits ``L`` and ``bias`` by minimising, over pairs with targets
``t`` in [0, 1] (1 = similar) and weights ``w``,

    f(L, bias) = sum_p w_p [softplus(z_p) - t_p z_p] / sum_p w_p
                 + (alpha / 2) ||L - L0||_F^2,          z_p = bias - D_p,

the weighted mean log-loss plus an optional pull toward the initial map
``L0``.  The loss and its gradient come from the OpenMP kernel
:class:`fastmetric.kernels.pair_loss.PairLossProblem`; this module only prepares
the pairs, initialises, and hands the objective to a solver (full-batch
L-BFGS, or minibatch Adam/SGD for pair sets too large for full batches).

:class:`LDML` learns from labelled pairs; :class:`LDML_Supervised` from
class labels, drawing the pairs with :func:`fastmetric.kernels.sampling.sample_pairs`.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import validate_data

from fastmetric._core.validation import check_int_param as _check_int, check_real_param as _check_real
from fastmetric._core.base import (
    MahalanobisMixin,
    PairsClassifierMixin,
    check_pair_targets,
    check_pairs,
    encode_pair_labels,
    evenly_spaced,
    initialize_components,
    l2_normalize_rows,
)
from fastmetric._core.dask_support import is_dask_array
from fastmetric.kernels.pair_loss import PairLossProblem
from fastmetric._core.solvers import (
    IterationPrinter,
    StochasticOptimizer,
    minimize_lbfgs,
    minimize_stochastic,
    run_epoch,
)
from fastmetric._core.threads import effective_n_threads, single_threaded_blas
from fastmetric._core.validation import check_pair_vector

__all__ = ["LDML", "LDML_Supervised"]

_SOLVERS = ("lbfgs", "adam", "sgd")
# Pairs used to fit the initial scale and bias (see _initial_scale_bias).
_INIT_MAX_PAIRS = 20_000


def _stochastic_solver(estimator):
    """partial_fit exists only for the minibatch solvers (as in sklearn's MLP)."""
    if estimator.solver == "lbfgs":
        raise AttributeError(
            "partial_fit is only available with a stochastic solver (solver='adam' or "
            "'sgd'); solver='lbfgs' needs the whole data at each iteration: use fit."
        )
    return True


def _progress(batches, total, verbose, desc):
    """``batches`` wrapped in a tqdm bar when ``verbose >= 2`` and tqdm is there."""
    if verbose is True or verbose < 2:
        return batches
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return batches
    return tqdm(batches, total=total, desc=desc, unit="batch", leave=False)


def _initial_scale_bias(sq_dist, targets, weights, ridge=1e-6, max_iter=50):
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


class _LDMLBase(MahalanobisMixin):
    """Parameter checks, the objective and the solvers shared by both learners."""

    # -- parameters --------------------------------------------------------
    def _validate_params(self):
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver={self.solver!r} is not one of {_SOLVERS}.")
        self._max_iter = _check_int(self.max_iter, "max_iter", 1)
        self._tol = _check_real(self.tol, "tol", 0.0)
        self._alpha = _check_real(self.alpha, "alpha", 0.0)
        self._batch_size = _check_int(self.batch_size, "batch_size", 1)
        self._learning_rate = _check_real(self.learning_rate, "learning_rate", 0.0, low_inclusive=False)
        self._n_iter_no_change = _check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        if not isinstance(self.verbose, (bool, np.bool_)):
            _check_int(self.verbose, "verbose", 0)
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be None or callable; got {self.callback!r}.")
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise TypeError(f"normalize must be a bool; got {self.normalize!r}.")

    # -- the objective -----------------------------------------------------
    def _objective(self, problem, shape, dtype, L0, n_threads):
        """``fun(theta) -> (loss, grad)`` over theta = [vec(L), bias] (float64)."""
        k, d = shape
        alpha = self._alpha

        def fun(theta):
            L = theta[:-1].reshape(k, d)
            loss, grad_L, grad_bias = problem.loss_grad(
                np.ascontiguousarray(L, dtype=dtype), theta[-1], n_threads
            )
            grad = np.empty_like(theta)
            grad[:-1] = grad_L.ravel()
            grad[-1] = grad_bias
            if alpha > 0:
                diff = L - L0
                loss += 0.5 * alpha * float(np.dot(diff.ravel(), diff.ravel()))
                grad[:-1] += alpha * diff.ravel()
            return loss, grad

        return fun

    def _initial_theta(self, X, a, b, targets, weights, class_labels, rng):
        """theta0 = [vec(L0), bias0] and L0: the init, scaled to fit the pairs.

        Two parameters do not need every pair: the scale and bias are fitted
        on at most _INIT_MAX_PAIRS evenly spaced pairs, whose distances are
        the only ones computed (and, on a dask array, whose rows are the
        only ones read).
        """
        from fastmetric.kernels.distances import paired_mahalanobis_distances

        keep = evenly_spaced(a.shape[0], _INIT_MAX_PAIRS)
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
        L0 = initialize_components(self.init, X_init, y=y_init,
                                   n_components=self.n_components, random_state=rng)
        sq0 = paired_mahalanobis_distances(rows, pairs, components=L0.astype(X.dtype),
                                           squared=True, n_jobs=self.n_jobs)
        gamma, bias0 = _initial_scale_bias(sq0, targets, weights)
        L0 = L0 * np.sqrt(gamma)
        return np.concatenate([L0.ravel(), [bias0]]), L0

    def _set_theta(self, theta, shape):
        self.components_ = np.ascontiguousarray(theta[:-1].reshape(shape))
        self.bias_ = float(theta[-1])

    def _fit_pairs(self, X, a, b, targets, weights, *, class_labels=None, stream=None,
                   rng=None):
        """Fit L and the bias on index pairs (a, b) into the points X.

        ``stream`` (LDML_Supervised) gives the stochastic solvers fresh pairs
        per minibatch; ``weights`` is None or per-pair weights of the fixed
        pairs.
        """
        self._validate_params()
        rng = check_random_state(self.random_state) if rng is None else rng
        n_threads = effective_n_threads(self.n_jobs)
        on_dask = is_dask_array(X)
        if on_dask and self.solver != "lbfgs":
            raise NotImplementedError(
                f"{type(self).__name__} fits dask arrays with solver='lbfgs' only (the "
                f"minibatch solvers on dask are not implemented yet); got "
                f"solver={self.solver!r}. Use solver='lbfgs', or partial_fit on blocks "
                "computed one at a time."
            )
        if self.normalize:
            if on_dask:
                from fastmetric._core.dask_support import map_rows

                X = map_rows(X, l2_normalize_rows, X.shape[1], X.dtype)
            else:
                X = l2_normalize_rows(X)
        dtype = X.dtype
        with single_threaded_blas():  # identical results for any BLAS thread count
            theta0, L0 = self._initial_theta(X, a, b, targets, weights, class_labels, rng)
            k, d = L0.shape

            printer = IterationPrinter(type(self).__name__,
                                       "iter" if self.solver == "lbfgs" else "epoch")

            def on_iteration(iteration, theta, loss):
                if self.verbose:
                    printer(iteration, loss)
                if self.callback is not None:
                    self._set_theta(theta, (k, d))
                    return bool(self.callback(self, iteration, loss))
                return False

            self._optimizer = None
            if self.solver == "lbfgs":
                if on_dask:
                    from fastmetric._core.dask_support import DaskPairLossProblem

                    problem = DaskPairLossProblem(X, a, b, targets, weights,
                                                  n_jobs=self.n_jobs)
                else:
                    problem = PairLossProblem(X, a, b, targets, weights, n_threads=n_threads)
                fun = self._objective(problem, (k, d), dtype, L0, n_threads)
                result = minimize_lbfgs(fun, theta0, max_iter=self._max_iter, tol=self._tol,
                                        on_iteration=on_iteration)
            else:
                batch_seed = int(rng.randint(0, np.iinfo(np.int32).max))
                if stream is None:
                    epoch_batches = self._epoch_batches(
                        X, a, b, targets, weights, batch_seed, (k, d), dtype, L0, n_threads)
                else:
                    epoch_batches = self._stream_batches(
                        X, stream, (k, d), dtype, L0, n_threads)
                self._optimizer = StochasticOptimizer(self.solver, self._learning_rate)
                self._partial_seed = batch_seed
                result = minimize_stochastic(
                    epoch_batches, theta0, max_epochs=self._max_iter, tol=self._tol,
                    n_iter_no_change=self._n_iter_no_change, on_iteration=on_iteration,
                    optimizer=self._optimizer,
                )

        self._set_theta(result.x, (k, d))
        self._L0 = L0
        self.n_iter_ = int(result.n_iter)
        self.loss_ = float(result.fun)
        self.loss_curve_ = list(result.loss_curve)
        self.n_features_in_ = d
        return self

    def _minibatches(self, X, a, b, targets, weights, order, shape, dtype, L0, n_threads):
        """``(batch objective, weight)`` of consecutive slices of ``order``."""
        batch_size = self._batch_size
        for start in range(0, order.shape[0], batch_size):
            idx = order[start:start + batch_size]
            bw = None if weights is None else weights[idx]
            weight = float(idx.shape[0] if bw is None else bw.sum())
            if weight <= 0:
                continue
            problem = PairLossProblem(X, a[idx], b[idx], targets[idx], bw)
            yield self._objective(problem, shape, dtype, L0, n_threads), weight

    def _epoch_batches(self, X, a, b, targets, weights, seed, shape, dtype, L0, n_threads):
        """Minibatches of fixed pairs, in an order fixed by ``seed`` and the epoch."""
        n_batches = -(-a.shape[0] // self._batch_size)

        def epoch_batches(epoch):
            order = np.random.default_rng([seed, epoch]).permutation(a.shape[0])
            return _progress(
                self._minibatches(X, a, b, targets, weights, order, shape, dtype, L0,
                                  n_threads),
                n_batches, self.verbose, f"epoch {epoch + 1}")

        return epoch_batches

    def _stream_batches(self, X, stream, shape, dtype, L0, n_threads):
        """Minibatches of pairs drawn as they are needed (bounded memory).

        ``stream(epoch, batch) -> (a, b, targets)`` or None after the last
        minibatch of the epoch.
        """
        def batches(epoch):
            for i in range(stream.n_batches):
                a, b, t = stream(epoch, i)
                problem = PairLossProblem(X, a, b, t, None)
                yield self._objective(problem, shape, dtype, L0, n_threads), float(a.shape[0])

        def epoch_batches(epoch):
            return _progress(batches(epoch), stream.n_batches, self.verbose,
                             f"epoch {epoch + 1}")

        return epoch_batches

    def _partial_fit_pairs(self, X, a, b, targets, weights, class_labels=None):
        """One epoch of the stochastic solver over these pairs, continuing the fit."""
        self._validate_params()
        first = getattr(self, "_optimizer", None) is None or not hasattr(self, "components_")
        if self.normalize:
            X = l2_normalize_rows(X)
        n_threads = effective_n_threads(self.n_jobs)
        with single_threaded_blas():
            if first:
                rng = check_random_state(self.random_state)
                theta, L0 = self._initial_theta(X, a, b, targets, weights, class_labels, rng)
                self._L0 = L0
                self._partial_seed = int(rng.randint(0, np.iinfo(np.int32).max))
                self._optimizer = StochasticOptimizer(self.solver, self._learning_rate)
                self.n_iter_ = 0
                self.loss_curve_ = []
                self.n_features_in_ = L0.shape[1]
            else:
                theta = np.concatenate([self.components_.ravel(), [self.bias_]])
            shape = self._L0.shape
            order = np.random.default_rng([self._partial_seed, self.n_iter_]).permutation(
                a.shape[0])
            batches = _progress(
                self._minibatches(X, a, b, targets, weights, order, shape, X.dtype, self._L0,
                                  n_threads),
                -(-a.shape[0] // self._batch_size), self.verbose,
                f"partial_fit {self.n_iter_ + 1}")
            theta, loss, finite, interrupted = run_epoch(batches, theta, self._optimizer)
        if interrupted:
            warnings.warn("partial_fit was interrupted (KeyboardInterrupt); the model keeps "
                          "the parameters after the last completed minibatch.", UserWarning,
                          stacklevel=3)
        if not finite:
            warnings.warn("the objective became non-finite in partial_fit; the model keeps "
                          "the last finite parameters. Lower learning_rate or scale the data.",
                          ConvergenceWarning, stacklevel=3)
        self._set_theta(theta, shape)
        self.n_iter_ += 1
        if np.isfinite(loss):
            self.loss_ = float(loss)
            self.loss_curve_.append(float(loss))
            if self.verbose:
                print(f"[{type(self).__name__}] partial_fit {self.n_iter_}: mean loss "
                      f"{loss:.7g}")
        return self

    def _pair_probability(self, sq_dist):
        """P(similar) = sigmoid(bias_ - d^2) of LDML's model."""
        from scipy.special import expit

        return expit(self.bias_ - sq_dist)


class LDML(PairsClassifierMixin, _LDMLBase):
    """Logistic Discriminant Metric Learning from labelled pairs.

    Learns ``L`` (``components_``) and a bias so that ``sigmoid(bias_ -
    ||L(x - x')||^2)`` is the probability that ``x`` and ``x'`` are similar,
    by minimising the weighted mean log-loss over the pairs plus
    ``alpha/2 ||L - L0||_F^2`` (``L0``: the initial map).

    Parameters
    ----------
    n_components : int, optional
        Rows of ``L`` (the embedding dimension); default ``n_features`` or
        the rows of an array ``init``.
    init : {'auto', 'identity', 'pca', 'covariance', 'random'}, array or \
            fitted learner, default='auto'
        Initial ``L``; see :func:`fastmetric._core.base.initialize_components`.
        An array or a fitted learner refines a pre-trained metric.
        (``'lda'`` needs class labels: only in :class:`LDML_Supervised`.)
    normalize : bool, default=False
        L2-normalise the points first (cosine geometry), in fit, transform
        and every distance.
    alpha : float, default=0.0
        Strength of the pull ``alpha/2 ||L - L0||_F^2`` toward the initial
        map.
    solver : {'lbfgs', 'adam', 'sgd'}, default='lbfgs'
        Full-batch L-BFGS-B, or minibatch Adam / SGD with momentum (for
        pair sets too large to evaluate in full at every iteration).
    max_iter : int, default=100
        L-BFGS iterations, or epochs of the stochastic solvers.
    tol : float, default=1e-5
        L-BFGS: relative decrease of the objective and largest gradient
        entry; stochastic: minimal relative improvement of an epoch.
    batch_size : int, default=10000
        Pairs per minibatch (stochastic solvers).
    learning_rate : float, default=0.01
        Step size of the stochastic solvers.
    n_iter_no_change : int, default=5
        Stochastic solvers stop after this many epochs without improvement.
    preprocessor : array-like of shape (n_samples, n_features) or callable
        When set, ``pairs`` may be index pairs ``(n_pairs, 2)`` into it (or
        passed to it, if callable): rows are never copied pair by pair.
    random_state : int, RandomState instance or None
        Seeds the 'random' init, randomised PCA and the minibatch order.
    n_jobs : int, optional
        OpenMP threads of the kernels (None: what OpenMP allows, -1: all
        CPUs).  Results do not depend on it.
    verbose : int, default=0
        1: print a table with the loss at each iteration (epoch).  2 or more,
        with a stochastic solver: also a progress bar over the minibatches of
        each epoch, when tqdm is installed (``pip install fastmetric[progress]``).
        Ctrl-C stops any fit cleanly: it warns and keeps the last consistent
        parameters.
    callback : callable, optional
        ``callback(estimator, iteration, loss)`` after each iteration (with
        ``components_`` and ``bias_`` set to the current iterate); returning
        True stops the fit.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned map ``L``.
    bias_ : float
        The model's bias: pairs with ``d^2 < bias_`` have ``P(similar) >
        1/2``.
    threshold_ : float
        Threshold on :meth:`decision_function` (``-distance``) used by
        :meth:`predict`; after fit ``-sqrt(max(bias_, 0))``, so that
        ``predict`` says +1 exactly when the model's P(similar) > 1/2.
        Changed by :meth:`set_threshold` / :meth:`calibrate_threshold`.
    classes_ : ndarray of shape (2,)
        ``[-1, 1]``.
    n_iter_ : int
        Iterations (or epochs) done.
    loss_ : float
        Final objective.
    loss_curve_ : list of float
        Objective after each iteration (epoch).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric import LDML
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(40, 3)
    >>> pairs = rng.randint(0, 40, size=(200, 2))
    >>> y = np.where(np.abs(X[pairs[:, 0], 0] - X[pairs[:, 1], 0]) < 0.5, 1, -1)
    >>> ldml = LDML(preprocessor=X, random_state=0).fit(pairs, y)
    >>> ldml.predict(pairs[:3]).shape
    (3,)
    """

    def __init__(self, n_components=None, init="auto", normalize=False, alpha=0.0,
                 solver="lbfgs", max_iter=100, tol=1e-5, batch_size=10000,
                 learning_rate=0.01, n_iter_no_change=5, preprocessor=None,
                 random_state=None, n_jobs=None, verbose=0, callback=None):
        self.n_components = n_components
        self.init = init
        self.normalize = normalize
        self.alpha = alpha
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_iter_no_change = n_iter_no_change
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.callback = callback

    def fit(self, pairs, y, sample_weight=None):
        """Learn the metric from labelled pairs.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or index pairs into ``preprocessor``.
        y : array-like of shape (n_pairs,)
            +1/-1 (metric-learn's convention), 1/0, or soft targets in
            [0, 1]: 1 similar, -1 or 0 dissimilar.
        sample_weight : array-like of shape (n_pairs,), optional
            Non-negative pair weights (positive sum).

        Returns
        -------
        self
        """
        X, a, b, targets, weights = self._validated_pairs(pairs, y, sample_weight)
        if np.all(targets == 1.0) or np.all(targets == 0.0):
            kind = "similar" if targets[0] == 1.0 else "dissimilar"
            raise ValueError(
                f"y marks every pair {kind}: LDML needs both similar and dissimilar pairs "
                "(with one kind only, the bias grows without bound)."
            )
        self._fit_pairs(X, a, b, targets, weights)
        self.classes_ = np.array([-1, 1])
        # d^2 < bias  <=>  -d > -sqrt(bias): predict agrees with P(similar) > 1/2.
        self.threshold_ = -float(np.sqrt(max(self.bias_, 0.0)))
        return self

    def _validated_pairs(self, pairs, y, sample_weight):
        """(X, a, b, targets, weights) from the pair input of fit/partial_fit.

        With a dask array as ``preprocessor``, ``pairs`` must be index pairs
        into it; X is then that (lazy) dask array.
        """
        if is_dask_array(self.preprocessor):
            return self._validated_dask_pairs(pairs, y, sample_weight)
        X, idx = check_pairs(pairs, self.preprocessor, dedupe=True)
        n_pairs = idx.shape[0]
        targets = check_pair_targets(y, n_pairs)
        weights = None
        if sample_weight is not None:
            weights = check_pair_vector(sample_weight, n_pairs, "sample_weight", np.float64,
                                        nonneg=True)
            if not weights.sum() > 0:
                raise ValueError("sample_weight sums to 0; at least one pair needs a "
                                 "positive weight.")
        if isinstance(self.init, str) and self.init == "lda":
            raise ValueError(
                "init='lda' needs class labels, which pair constraints do not give; use "
                "LDML_Supervised, or init='auto', 'pca', 'identity', 'covariance', "
                "'random' or an array."
            )
        a = np.ascontiguousarray(idx[:, 0])
        b = np.ascontiguousarray(idx[:, 1])
        return X, a, b, targets, weights

    def _validated_dask_pairs(self, pairs, y, sample_weight):
        from fastmetric._core.dask_support import assert_all_finite, check_dask_points
        from fastmetric._core.validation import check_index_pairs

        X = check_dask_points(self.preprocessor, name="preprocessor")
        arr = np.asarray(pairs)
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "iu":
            raise ValueError(
                "with a dask array as preprocessor, pairs must be index pairs of shape "
                f"(n_pairs, 2) into it; got an array of shape {arr.shape} and dtype "
                f"{arr.dtype}."
            )
        a, b = check_index_pairs(arr, X.shape[0], name="pairs")
        targets = check_pair_targets(y, a.shape[0])
        weights = None
        if sample_weight is not None:
            weights = check_pair_vector(sample_weight, a.shape[0], "sample_weight",
                                        np.float64, nonneg=True)
            if not weights.sum() > 0:
                raise ValueError("sample_weight sums to 0; at least one pair needs a "
                                 "positive weight.")
        if isinstance(self.init, str) and self.init == "lda":
            raise ValueError("init='lda' needs class labels, which pair constraints do not "
                             "give; use LDML_Supervised.")
        assert_all_finite(X, "preprocessor")
        return X, np.ascontiguousarray(a), np.ascontiguousarray(b), targets, weights

    @available_if(_stochastic_solver)
    def partial_fit(self, pairs, y, sample_weight=None):
        """One epoch of the stochastic solver on a batch of labelled pairs.

        The pairs are visited once, in minibatches of ``batch_size`` (order
        from ``random_state``), continuing from the state left by the
        previous call or by ``fit`` (Adam moments included).  The first call
        initialises ``L`` and the bias from its batch.  Only with
        ``solver='adam'`` or ``'sgd'``.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            As in :meth:`fit`.
        y : array-like of shape (n_pairs,)
            As in :meth:`fit`.
        sample_weight : array-like of shape (n_pairs,), optional

        Returns
        -------
        self
        """
        X, a, b, targets, weights = self._validated_pairs(pairs, y, sample_weight)
        if hasattr(self, "n_features_in_") and getattr(self, "_optimizer", None) is not None \
                and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (from the previous partial_fit)."
            )
        self._partial_fit_pairs(X, a, b, targets, weights)
        self.classes_ = np.array([-1, 1])
        self.threshold_ = -float(np.sqrt(max(self.bias_, 0.0)))
        return self


class LDML_Supervised(_LDMLBase):
    """LDML from class labels: pairs drawn from the classes, then LDML.

    Similar pairs join two samples of the same class, dissimilar pairs two
    samples of different classes, drawn by
    :func:`fastmetric.kernels.sampling.sample_pairs`.  With a stochastic solver a
    fresh set of pairs is drawn every epoch.  Like metric-learn's supervised
    learners, this is a transformer (no pair prediction).

    Parameters
    ----------
    n_pairs : int, optional
        Number of pairs (per epoch for the stochastic solvers).  Default
        ``min(20 * n_samples, 200000)``.
    positive_fraction : float in (0, 1), default=0.5
        Share of similar pairs.
    balanced : bool, default=False
        Draw classes uniformly instead of in proportion to their number of
        pairs (see :func:`~fastmetric.kernels.sampling.sample_pairs`).
    n_components, init, normalize, alpha, solver, max_iter, tol, batch_size, \
learning_rate, n_iter_no_change, random_state, n_jobs, verbose, callback
        As in :class:`LDML`; ``init`` may also be ``'lda'`` (and ``'auto'``
        picks it when ``n_components < n_classes``).

    Attributes
    ----------
    components_, bias_, n_iter_, loss_, loss_curve_, n_features_in_
        As in :class:`LDML`.
    feature_names_in_ : ndarray of str
        When X has feature names.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastmetric import LDML_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> ldml = LDML_Supervised(n_pairs=2000, random_state=0).fit(X, y)
    >>> ldml.transform(X).shape
    (150, 4)
    """

    def __init__(self, n_pairs=None, positive_fraction=0.5, balanced=False,
                 n_components=None, init="auto", normalize=False, alpha=0.0,
                 solver="lbfgs", max_iter=100, tol=1e-5, batch_size=10000,
                 learning_rate=0.01, n_iter_no_change=5, random_state=None, n_jobs=None,
                 verbose=0, callback=None):
        self.n_pairs = n_pairs
        self.positive_fraction = positive_fraction
        self.balanced = balanced
        self.n_components = n_components
        self.init = init
        self.normalize = normalize
        self.alpha = alpha
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.callback = callback

    def _labels_and_counts(self, X, y, reset):
        """Validated X (kept float32/float64, C order) and labels encoded 0..C-1.

        A dask array X stays lazy (its values are checked on the workers);
        its labels ``y`` (numpy or dask) are brought to the client.
        """
        if is_dask_array(X):
            from fastmetric._core.dask_support import assert_all_finite, check_dask_points

            X = check_dask_points(X)
            if is_dask_array(y):
                y = y.compute()
            y = np.asarray(y)
            if y.ndim != 1 or y.shape[0] != X.shape[0]:
                raise ValueError(f"y must be 1-D with one label per row of X ({X.shape[0]}); "
                                 f"got shape {y.shape}.")
            if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
                raise ValueError("y contains NaN or infinity.")
            assert_all_finite(X)
            if reset:
                self.n_features_in_ = X.shape[1]
        else:
            X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C",
                                 reset=reset)
        _, labels, _ = encode_pair_labels(y, type(self).__name__)
        return X, labels

    def _pair_counts(self, n):
        """(n_positive, n_negative) per epoch for n labelled rows."""
        n_pairs = min(20 * n, 200_000) if self.n_pairs is None else _check_int(
            self.n_pairs, "n_pairs", 2)
        fraction = _check_real(self.positive_fraction, "positive_fraction", 0.0,
                               low_inclusive=False)
        if not fraction < 1:
            raise ValueError(f"positive_fraction must lie in (0, 1); got {fraction}.")
        n_pos = min(max(int(round(n_pairs * fraction)), 1), n_pairs - 1)
        return n_pos, n_pairs - n_pos

    def fit(self, X, y):
        """Draw pairs from the classes of ``y`` and learn the metric.

        With ``solver='lbfgs'`` the pairs are drawn once.  With the stochastic
        solvers each minibatch is drawn when it is needed (a fresh sample of
        ``n_pairs`` per epoch): memory holds one minibatch of pairs, never
        all of them, so ``X`` may be a large ``numpy.memmap``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            float32 data stay float32 (no copy when X is already a
            C-ordered float32/float64 array or memmap).
        y : array-like of shape (n_samples,)
            Class labels (at least 2 classes, one with 2 or more samples).

        Returns
        -------
        self
        """
        from fastmetric.kernels.sampling import LabelPairStream

        X, labels = self._labels_and_counts(X, y, reset=True)
        self._validate_params()
        n_pos, n_neg = self._pair_counts(X.shape[0])
        rng = check_random_state(self.random_state)
        sample_seed = int(rng.randint(0, np.iinfo(np.int32).max))
        self._pair_seed = sample_seed  # partial_fit after fit continues these streams
        stream = _LabelBatches(LabelPairStream(labels, self.balanced, self.n_jobs), n_pos,
                               n_neg, self._batch_size, sample_seed)
        if self.solver == "lbfgs":
            if is_dask_array(X):
                # The same pairs, drawn on the workers (slices of the streams).
                from fastmetric._core.dask_support import sample_label_pairs

                a, b, targets = sample_label_pairs(labels, n_pos, n_neg, self.balanced,
                                                   sample_seed)
            else:
                a, b, targets = stream.draw(0, 0, n_pos, 0, n_neg)
            self._fit_pairs(X, a, b, targets, None, class_labels=labels, rng=rng)
        else:
            # The initial scale and bias: from the first pairs of epoch 0.
            half = _INIT_MAX_PAIRS // 2
            a, b, targets = stream.draw(0, 0, min(n_pos, half), 0, min(n_neg, half))
            self._fit_pairs(X, a, b, targets, None, class_labels=labels, stream=stream,
                            rng=rng)
        return self

    @available_if(_stochastic_solver)
    def partial_fit(self, X, y):
        """One epoch of the stochastic solver on a batch of labelled rows.

        Pairs are drawn inside the batch (``n_pairs``, default ``min(20 *
        n_batch, 200000)``), then visited once in minibatches of
        ``batch_size``; the solver's state (Adam moments) carries over to
        the next call.  The first call (or the first after ``fit``
        with L-BFGS) initialises ``L`` from this batch.  Stream data that
        does not fit in memory batch by batch, e.g. row blocks of a
        ``numpy.memmap`` (shuffled, so that each block holds several
        classes).

        Only with ``solver='adam'`` or ``'sgd'``.

        Parameters
        ----------
        X : array-like of shape (n_batch, n_features)
        y : array-like of shape (n_batch,)
            Class labels of the batch (at least 2 classes, one with 2 or
            more rows in the batch).

        Returns
        -------
        self
        """
        from fastmetric.kernels.sampling import sample_pairs

        first = getattr(self, "_optimizer", None) is None or not hasattr(self, "components_")
        X, labels = self._labels_and_counts(X, y, reset=first)
        self._validate_params()
        if first:
            self._pair_seed = int(check_random_state(self.random_state).randint(
                0, np.iinfo(np.int32).max))
        n_pos, n_neg = self._pair_counts(X.shape[0])
        # A fresh stream of pairs per call (after fit: continuing its epochs).
        seed = self._pair_seed + 7919 * (0 if first else self.n_iter_)
        pairs, t = sample_pairs(labels, n_pos, n_neg, balanced=self.balanced,
                                random_state=seed, n_jobs=self.n_jobs)
        return self._partial_fit_pairs(
            X, np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]),
            t.astype(np.float64), None, class_labels=labels)


class _LabelBatches:
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
