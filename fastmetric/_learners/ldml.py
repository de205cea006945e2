"""LDML: Logistic Discriminant Metric Learning (Guillaumin, Verbeek & Schmid, 2009).

The model gives a pair ``(x, x')`` the probability of being similar

    p = sigmoid(bias - ||L (x - x')||^2),

and LDML fits ``L`` and ``bias`` by minimising, over pairs with targets
``t`` in [0, 1] (1 = similar) and weights ``w``,

    f(L, bias) = sum_p w_p [softplus(z_p) - t_p z_p] / sum_p w_p
                 + (alpha / 2) ||L - L0||_F^2,          z_p = bias - D_p,

the weighted mean log-loss plus an optional pull toward the initial map
``L0``.  The objective, its start-up scale and the full-batch (L-BFGS) and
minibatch (Adam/SGD, for pair sets too large for full batches) fits are in
:mod:`fastmetric._core.objectives.ldml`; this module checks the parameters,
prepares the pairs and keeps the fitted state.

:class:`LDML` learns from labelled pairs; :class:`LDML_Supervised` from
class labels, drawing the pairs with :func:`fastmetric.kernels.sampling.sample_pairs`.
"""

from typing import ClassVar

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.constraints import label_pairs, neighbor_pairs, split_pair_count
from fastmetric._core.dask_support import is_dask_array
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import feature_scales
from fastmetric._core.inputs import (
    check_pairs,
    encode_pair_labels,
    validate_points,
)
from fastmetric._core.minibatch_learner import starts_partial_fit
from fastmetric._core.objectives.ldml import (
    INIT_MAX_PAIRS,
    LabelBatches,
    fit_ldml,
    initial_theta,
    ldml_optimizer,
    normalize_points,
    partial_fit_epoch,
    resolve_alpha,
    theta_of,
)
from fastmetric._core.pairs import PairsClassifierMixin
from fastmetric._core.params import (
    fit_context,
    integers,
    options_or_array,
    reals,
    shared,
    store_params,
)
from fastmetric._core.solvers import (
    IterationPrinter,
    record_partial_epoch,
)
from fastmetric._core.threads import effective_n_threads, multiply_adds
from fastmetric._core.validation import check_weights

__all__ = ["LDML", "LDML_Supervised"]

_SOLVERS = ("lbfgs", "adam", "sgd")


def _stochastic_solver(estimator):
    """partial_fit exists only for the minibatch solvers (as in sklearn's MLP)."""
    if estimator.solver == "lbfgs":
        raise AttributeError(
            "partial_fit is only available with a stochastic solver (solver='adam' or "
            "'sgd'); solver='lbfgs' needs the whole data at each iteration: use fit."
        )
    return True


def _evaluation_work(n_points, n_pairs, n_features):
    """Multiply-adds of one evaluation of the pair loss, the ``work`` that
    sets the default thread count under load: the points mapped (n d^2 at
    k = d) and the pairs' mapped differences (P d)."""
    return multiply_adds((n_points, n_features, n_features), (n_pairs, n_features))


class _LDMLBase(MahalanobisMixin):
    """Parameter checks, the objective and the solvers shared by both learners."""

    _parameter_constraints: ClassVar[dict] = {
        **shared("n_components", "init", "normalize", "max_iter", "tol", "random_state",
                 "n_jobs", "verbose", "callback"),
        "alpha": [reals(0), StrOptions({"auto"})],
        "solver": [StrOptions(set(_SOLVERS))],
        "batch_size": [integers(1)],
        "learning_rate": [reals(0, closed="neither")],
        "n_iter_no_change": [integers(1)],
        "feature_scaling": [StrOptions({"auto", "range"}), None],
    }

    # -- the fit (the objective and solvers are in the core) -----------------
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
        rng = check_random_state(self.random_state) if rng is None else rng
        n_pairs = a.shape[0] if stream is None else min(a.shape[0], int(self.batch_size))
        n_threads = effective_n_threads(self.n_jobs,
                                        work=_evaluation_work(X.shape[0], n_pairs, X.shape[1]))
        if self.normalize:
            X = normalize_points(X)
        printer = IterationPrinter(type(self).__name__,
                                   "iter" if self.solver == "lbfgs" else "epoch")
        d = X.shape[1]

        def on_iteration(iteration, theta, loss):
            if self.verbose:
                printer(iteration, loss)
            if self.callback is not None:
                self._set_theta(theta, (-1, d))
                return bool(self.callback(self, iteration, loss))
            return False

        self._optimizer = None
        fit = fit_ldml(
            X, a, b, targets, weights, rng=rng, init=self.init,
            n_components=self.n_components, alpha=self.alpha, solver=self.solver,
            max_iter=int(self.max_iter), tol=float(self.tol), batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate), n_iter_no_change=int(self.n_iter_no_change),
            n_jobs=self.n_jobs, n_threads=n_threads, verbose=self.verbose,
            on_iteration=on_iteration, class_labels=class_labels,
            stream=stream, name=type(self).__name__, feature_scaling=self.feature_scaling,
        )
        if fit.optimizer is not None:
            self._optimizer = fit.optimizer
            self._partial_seed = fit.batch_seed
        result = fit.result
        self._set_theta(result.x, fit.L0.shape)
        self._L0 = fit.L0
        self.feature_scales_ = fit.scales
        self.n_iter_ = int(result.n_iter)
        self.loss_ = float(result.fun)
        self.loss_curve_ = list(result.loss_curve)
        if self.n_iter_ == 0:
            # L-BFGS met its tolerance where it started: the fit was the
            # start-up fit of the scale and bias (initial_theta), which moved
            # the map.  It is the one step done; n_iter_ = 0 would read as no
            # fitting at all (scikit-learn's check_transformer_n_iter).
            self.n_iter_ = 1
            self.loss_curve_ = [self.loss_]
        self.n_features_in_ = fit.L0.shape[1]
        return self

    def _partial_fit_pairs(self, X, a, b, targets, weights, class_labels=None):
        """One epoch of the stochastic solver over these pairs, continuing the fit."""
        first = starts_partial_fit(self)  # (partial_fit warned)
        if self.normalize:
            X = normalize_points(X)  # lazily on a dask array
        n_threads = effective_n_threads(self.n_jobs, work=_evaluation_work(
            X.shape[0], min(a.shape[0], int(self.batch_size)), X.shape[1]))
        if first:
            rng = check_random_state(self.random_state)
            theta, L0, scales = initial_theta(
                X, a, b, targets, weights, class_labels, rng, init=self.init,
                n_components=self.n_components, n_jobs=self.n_jobs,
                feature_scaling=self.feature_scaling)
            self._L0 = L0
            self.feature_scales_ = scales
            self._partial_seed = int(rng.randint(0, np.iinfo(np.int32).max))
            self._optimizer = ldml_optimizer(self.solver, self.learning_rate, scales,
                                             L0.shape)
            self.n_iter_ = 0
            self.loss_curve_ = []
            self.n_features_in_ = L0.shape[1]
        else:
            theta = theta_of(self.components_, self.bias_)
        theta, loss, finite, interrupted = partial_fit_epoch(
            X, a, b, targets, weights, theta, self._L0, self._optimizer,
            self._partial_seed, self.n_iter_, batch_size=int(self.batch_size),
            alpha=resolve_alpha(self.alpha, self._L0, self.feature_scales_),
            n_threads=n_threads, verbose=self.verbose, scales=self.feature_scales_,
            n_jobs=self.n_jobs)
        self._set_theta(theta, self._L0.shape)
        record_partial_epoch(self, loss, finite, interrupted)
        return self

    def _pair_probability(self, sq_dist):
        """P(similar) = sigmoid(bias_ - d^2) of LDML's model."""
        from scipy.special import expit

        return expit(self.bias_ - sq_dist)


@shared_docs
class LDML(PairsClassifierMixin, _LDMLBase):
    """Logistic Discriminant Metric Learning from labelled pairs.

    Learns ``L`` (``components_``) and a bias so that ``sigmoid(bias_ -
    ||L(x - x')||^2)`` is the probability that ``x`` and ``x'`` are similar,
    by minimising the weighted mean log-loss over the pairs plus
    ``alpha/2 ||L - L0||_F^2`` (``L0``: the initial map).

    Parameters
    ----------
    {n_components}
    init : {'auto', 'identity', 'pca', 'covariance', 'random'}, array or \
            fitted learner, default='auto'
        Initial ``L``; see :func:`fastmetric._core.init.initialize_components`.
        An array or a fitted learner refines a pre-trained metric.
        (``'lda'`` needs class labels: only in :class:`LDML_Supervised`.)
    normalize : bool, default=False
        L2-normalise the points first (cosine geometry), in fit, transform
        and every distance.
    alpha : float or 'auto', default='auto'
        Strength of the pull ``alpha/2 ||L - L0||_F^2`` toward the initial
        map.  ``'auto'``: ``alpha = 0.02 / ||L0||_F^2``, a pull of 1 % of
        ``||L - L0||^2 / ||L0||^2`` that does not depend on the units.  A
        few hundred pairs can often be separated by some metric, and the
        log-loss then has no minimum: without the pull ``L`` grows until
        ``max_iter`` (a ConvergenceWarning in 6 of the 24 fits of
        ``benchmarks/quality_ldml_pairs.py``, none with it, where the
        held-out pair AUC rises in 17 of them and falls in one).  ``alpha=0``
        is the plain log-loss (the default before 2026-12-07).  Where the
        features are scaled (``feature_scales_`` set) the pull is taken in
        the scaled coordinates, ``||(L - L0) * feature_scales_||^2``.
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
    {preprocessor_pairs}
    random_state : int, RandomState instance or None
        Seeds the 'random' init, randomised PCA and the minibatch order.
    {n_jobs_kernels}
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
    {feature_scaling}

    Attributes
    ----------
    {learned_map}
    bias_ : float
        The model's bias: pairs with ``d^2 < bias_`` have ``P(similar) >
        1/2``.
    threshold_ : float
        The largest distance of a pair that :meth:`predict` calls similar;
        after fit ``sqrt(max(bias_, 0))``, the distance at which the
        model's P(similar) is 1/2 (``p = sigmoid(bias_ - d^2)``).
        Changed by :meth:`set_threshold` / :meth:`calibrate_threshold`.
    classes_ : ndarray of shape (2,)
        The pair labels of ``fit``'s encoding, dissimilar then similar:
        ``[-1, 1]`` for -1/+1 labels (metric-learn's, and labels all +1),
        ``[0, 1]`` for 0/1 labels, booleans and soft targets in [0, 1].
        :meth:`predict` answers in them; the columns of
        :meth:`predict_proba` follow them.  ``partial_fit`` sets them on the
        batch that starts a fit and keeps them afterwards.
    n_iter_ : int
        Iterations (or epochs) done; 1 when the solver met its tolerance at
        its start, where the start-up fit of the scale and bias was the
        one step (``loss_curve_`` then holds its objective).
    loss_ : float
        Final objective.
    loss_curve_ : list of float
        Objective after each iteration (epoch).
    {n_features_in}

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

    _parameter_constraints: ClassVar[dict] = {
        **_LDMLBase._parameter_constraints,
        **shared("preprocessor"),
        # No 'lda': it needs class labels, which pairs do not give (LDML_Supervised has them).
        "init": options_or_array("auto", "identity", "pca", "covariance", "random",
                                 learner=True),
    }

    def __init__(self, n_components=None, init="auto", normalize=False, alpha="auto",
                 solver="lbfgs", max_iter=100, tol=1e-5, batch_size=10000,
                 learning_rate=0.01, n_iter_no_change=5, preprocessor=None,
                 random_state=None, n_jobs=None, verbose=0, callback=None,
                 feature_scaling="auto"):
        store_params(self, locals())

    @fit_context
    def fit(self, pairs, y, sample_weight=None):
        """Learn the metric from labelled pairs.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or index pairs into ``preprocessor``.
        y : array-like of shape (n_pairs,)
            +1/-1 (metric-learn's convention), 1/0, or soft targets in
            [0, 1]: 1 similar, -1 or 0 dissimilar.  ``classes_`` (and so
            :meth:`predict`) follows the encoding: ``[-1, 1]`` for -1/+1,
            ``[0, 1]`` for 1/0 and for soft targets.
        sample_weight : array-like of shape (n_pairs,), optional
            Non-negative pair weights (positive sum).

        {returns_self}
        """
        X, a, b, targets, weights, classes = self._validated_pairs(pairs, y, sample_weight)
        if np.all(targets == 1.0) or np.all(targets == 0.0):
            kind = "similar" if targets[0] == 1.0 else "dissimilar"
            raise ValueError(
                f"y marks every pair {kind}: LDML needs both similar and dissimilar pairs "
                "(with one kind only, the bias grows without bound)."
            )
        self._fit_pairs(X, a, b, targets, weights)
        self.classes_ = classes
        # d^2 <= bias  <=>  d <= sqrt(bias): predict agrees with P(similar) >= 1/2.
        self.threshold_ = float(np.sqrt(max(self.bias_, 0.0)))
        return self

    def _validated_pairs(self, pairs, y, sample_weight):
        """(X, a, b, targets, weights, classes) from the pair input of
        fit/partial_fit; ``classes`` is the ``classes_`` of ``y``'s encoding.

        With a dask array as ``preprocessor``, ``pairs`` must be index pairs
        into it; X is then that (lazy) dask array.
        """
        if is_dask_array(self.preprocessor):
            return self._validated_dask_pairs(pairs, y, sample_weight)
        X, idx = check_pairs(pairs, self.preprocessor, dedupe=True)
        n_pairs = idx.shape[0]
        targets, classes = self._pair_targets_and_classes(y, n_pairs)
        weights = None if sample_weight is None else check_weights(sample_weight, n_pairs)
        a = np.ascontiguousarray(idx[:, 0])
        b = np.ascontiguousarray(idx[:, 1])
        return X, a, b, targets, weights, classes

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
        targets, classes = self._pair_targets_and_classes(y, a.shape[0])
        weights = None if sample_weight is None else check_weights(sample_weight, a.shape[0])
        assert_all_finite(X, "preprocessor")
        return X, np.ascontiguousarray(a), np.ascontiguousarray(b), targets, weights, classes

    @available_if(_stochastic_solver)
    @fit_context
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
            As in :meth:`fit`.  The batch that starts a fit sets
            ``classes_`` from its encoding; later batches may use either
            encoding and leave ``classes_`` as it is, as
            :meth:`calibrate_threshold` does (a stream answers in one
            encoding throughout).
        sample_weight : array-like of shape (n_pairs,), optional

        {returns_self}
        """
        fresh = starts_partial_fit(self, warn=True)
        X, a, b, targets, weights, classes = self._validated_pairs(pairs, y, sample_weight)
        if hasattr(self, "n_features_in_") and getattr(self, "_optimizer", None) is not None \
                and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (from the previous partial_fit)."
            )
        self._partial_fit_pairs(X, a, b, targets, weights)
        if fresh or "classes_" not in vars(self):
            self.classes_ = classes
        self.threshold_ = float(np.sqrt(max(self.bias_, 0.0)))
        return self


@shared_docs
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
        ``min(20 * n_samples, 200000)``.  Only with ``pairs='random'``.
    positive_fraction : float in (0, 1), default=0.5
        Share of similar pairs.  Only with ``pairs='random'``.
    balanced : bool, default=False
        Draw classes uniformly instead of in proportion to their number of
        pairs (see :func:`~fastmetric.kernels.sampling.sample_pairs`).
        Only with ``pairs='random'``.
    pairs : {'random', 'neighbors'}, default='random'
        ``'random'``: pairs drawn at random from the classes (``n_pairs``;
        fresh ones every epoch of a stochastic solver).  ``'neighbors'``:
        each point with its ``k_genuine`` nearest points of its class and
        its ``k_impostor`` nearest points of other classes, found once in
        the Euclidean distance of the (feature-scaled) points, as LMNN's
        targets and impostors
        (:func:`~fastmetric._core.constraints.neighbor_pairs`): the pairs a
        nearest-neighbour rule turns on.  Needs X in memory (not a dask
        array); ``partial_fit`` finds them in each batch.
    k_genuine, k_impostor : int, default=3 and 10
        Neighbours per point of ``pairs='neighbors'``.
    n_components, init, normalize, alpha, solver, max_iter, batch_size, \
learning_rate, n_iter_no_change, random_state, n_jobs, verbose, callback, \
feature_scaling
        As in :class:`LDML`; ``init`` may also be ``'lda'`` (and ``'auto'``
        picks it when ``n_components < n_classes``).  ``alpha`` defaults to
        0 here: with 20 pairs per point the log-loss has its minimum, and
        LDML's ``'auto'`` pull lowered the mean 3-NN accuracy of
        ``benchmarks/quality_uci.py`` (0.8744 -> 0.8722, one draw).
    tol : float, default=1e-3
        As in :class:`LDML`.  Looser than LDML's 1e-5: on real data sets
        (``benchmarks/quality_uci.py``) the fit then stops well within
        ``max_iter`` (at 1e-5 it ran into the limit, with a
        ConvergenceWarning, on a third of them) and the nearest-neighbour
        accuracy is the same or better (a long fit of the unregularised
        likelihood overfits the pairs).
    {preprocessor_points}

    Attributes
    ----------
    components_, bias_, n_iter_, loss_, loss_curve_, n_features_in_
        As in :class:`LDML`.
    {feature_names_in}

    Examples
    --------
    {load_iris}
    >>> from fastmetric import LDML_Supervised
    >>> ldml = LDML_Supervised(n_pairs=2000, random_state=0).fit(X, y)
    >>> ldml.transform(X).shape
    (150, 4)
    """

    _parameter_constraints: ClassVar[dict] = {
        **_LDMLBase._parameter_constraints,
        "n_pairs": [None, integers(2)],
        "positive_fraction": [reals(0, 1, closed="neither")],
        "balanced": ["boolean"],
        "pairs": [StrOptions({"random", "neighbors"})],
        "k_genuine": [integers(1)],
        "k_impostor": [integers(1)],
        **shared("preprocessor"),
    }

    def __init__(self, n_pairs=None, positive_fraction=0.5, balanced=False,
                 n_components=None, init="auto", normalize=False, alpha=0.0,
                 solver="lbfgs", max_iter=100, tol=1e-3, batch_size=10000,
                 learning_rate=0.01, n_iter_no_change=5, random_state=None, n_jobs=None,
                 verbose=0, callback=None, preprocessor=None, feature_scaling="auto",
                 pairs="random", k_genuine=3, k_impostor=10):
        store_params(self, locals())

    def _labels_and_counts(self, X, y, reset):
        """Validated X (kept float32/float64, C order) and labels encoded 0..C-1.

        A dask array X stays lazy (its values are checked on the workers);
        its labels ``y`` (numpy or dask) are brought to the client.
        """
        if is_dask_array(X):
            from fastmetric._core.dask_support import check_dask_labelled_points

            X, y = check_dask_labelled_points(self, X, y, reset)
        else:
            X, y = validate_points(self, X, y, reset=reset)
        _, labels, _ = encode_pair_labels(y, type(self).__name__)
        return X, labels

    def _neighbor_pairs(self, X, labels):
        """``pairs='neighbors'``: (a, b, targets) of each point with its
        nearest same-class and other-class points, in the metric the
        (feature-scaled) start sees."""
        if is_dask_array(X):
            raise NotImplementedError(
                "LDML_Supervised(pairs='neighbors') needs X in memory (a nearest-neighbour "
                "search over all rows); on a dask array use pairs='random'.")
        scales = feature_scales(X, self.feature_scaling)
        points = X if scales is None else X / scales.astype(X.dtype)
        pairs, targets = neighbor_pairs(points, labels, int(self.k_genuine),
                                        int(self.k_impostor), n_jobs=self.n_jobs)
        return (np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]),
                targets)

    def _pair_counts(self, n):
        """(n_positive, n_negative) per epoch for n labelled rows."""
        n_pairs = min(20 * n, 200_000) if self.n_pairs is None else int(self.n_pairs)
        return split_pair_count(n_pairs, float(self.positive_fraction))

    @fit_context
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

        {returns_self}
        """
        from fastmetric._core.sampling import LabelPairStream

        X, labels = self._labels_and_counts(X, y, reset=True)
        if self.pairs == "neighbors":
            rng = check_random_state(self.random_state)
            a, b, targets = self._neighbor_pairs(X, labels)
            return self._fit_pairs(X, a, b, targets, None, class_labels=labels, rng=rng)
        n_pos, n_neg = self._pair_counts(X.shape[0])
        rng = check_random_state(self.random_state)
        sample_seed = int(rng.randint(0, np.iinfo(np.int32).max))
        self._pair_seed = sample_seed  # partial_fit after fit continues these streams
        stream = LabelBatches(LabelPairStream(labels, self.balanced, self.n_jobs), n_pos,
                               n_neg, int(self.batch_size), sample_seed)
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
            half = INIT_MAX_PAIRS // 2
            a, b, targets = stream.draw(0, 0, min(n_pos, half), 0, min(n_neg, half))
            self._fit_pairs(X, a, b, targets, None, class_labels=labels, stream=stream,
                            rng=rng)
        return self

    @available_if(_stochastic_solver)
    @fit_context
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

        {returns_self}
        """
        first = starts_partial_fit(self, warn=True)
        X, labels = self._labels_and_counts(X, y, reset=first)
        if first:
            self._pair_seed = int(check_random_state(self.random_state).randint(
                0, np.iinfo(np.int32).max))
        if self.pairs == "neighbors":
            a, b, targets = self._neighbor_pairs(X, labels)
            return self._partial_fit_pairs(X, a, b, targets, None, class_labels=labels)
        n_pos, n_neg = self._pair_counts(X.shape[0])
        # A fresh stream of pairs per call (after fit: continuing its epochs).
        seed = self._pair_seed + 7919 * (0 if first else self.n_iter_)
        pairs, t = label_pairs(labels, n_pos, n_neg, seed, balanced=self.balanced,
                               n_jobs=self.n_jobs)
        return self._partial_fit_pairs(
            X, np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]),
            t.astype(np.float64), None, class_labels=labels)
