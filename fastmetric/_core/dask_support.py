"""Dask support: fit on a row-chunked ``dask.array`` without gathering it.

The LDML objective is a sum over pairs, so it splits over any partition of
the pairs.  :class:`DaskPairLossProblem` splits the pairs into parts by
the row blocks of X (a pair goes with the block that holds its first row;
consecutive small blocks are merged into parts of at least
``MIN_PART_ROWS`` rows) and builds once per fit, on the workers,
one :class:`~fastmetric._core.objectives.pair_loss.PairLossProblem` per part over the rows
that its pairs touch (at most two rows per pair are ever moved, once, never
the whole of X).  Each evaluation then sends only ``L`` and the bias to the
workers and gets back, per part, the weighted loss and gradient sums (a
``k x d`` array); the client adds them in part order.  The parts depend
only on X's chunks, never on the number of workers, on which worker ran
what or on the order in which they finished, so the same data and
``random_state`` give the same model bitwise with any cluster (or none);
the solver's state stays on the client.

When a ``dask.distributed`` client is active the blocks live on its
workers (and a lost worker's blocks are recomputed from the graph by
Dask); otherwise Dask's synchronous scheduler runs them in this process.

dask is an optional dependency (``pip install fastmetric[dask]``):
importing this module does not import it.
"""
import sys

import numpy as np

from fastmetric._core.rows import evenly_spaced

__all__ = [
    "is_dask_array",
    "import_dask",
    "check_dask_points",
    "check_dask_labelled_points",
    "sample_rows",
    "gather_rows",
    "DaskPairLossProblem",
    "map_rows",
    "sample_label_pairs",
    "current_worker",
]

# Rows read to compute a data-dependent initialisation (PCA, LDA,
# covariance) from a dask array: an evenly spaced subset.
INIT_MAX_ROWS = 100_000

# Consecutive row blocks are merged into parts of at least this many rows:
# each part is one task per evaluation, so tiny chunks must not turn into
# thousands of tasks; parts of ~65k rows keep the task overhead (about a
# millisecond) well below the kernel's time on the part.
MIN_PART_ROWS = 65_536


def is_dask_array(x):
    """True when ``x`` is a ``dask.array.Array`` (without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


def import_dask():
    """``(dask, dask.array)``, or an ImportError that says how to install them."""
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fitting on dask arrays needs dask: pip install 'fastmetric[dask]' (installs "
            "dask[array] and distributed)."
        ) from exc
    return dask, da


def _distributed_client():
    """The active dask.distributed client, or None."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:  # no client
        return None


def _compute(*collections):
    """dask.compute on the active distributed client, else synchronously here."""
    dask, _ = import_dask()
    if _distributed_client() is not None:
        return dask.compute(*collections)
    return dask.compute(*collections, scheduler="sync")


def _persist(*collections):
    dask, _ = import_dask()
    if _distributed_client() is not None:
        return dask.persist(*collections)
    return dask.persist(*collections, scheduler="sync")


def check_dask_points(X, name="X"):
    """Validate a dask array of points: 2-D, known row chunks, float dtype.

    float32 and float64 are kept; other numeric dtypes become float64.  The
    columns are put in one chunk (rows are the unit of work).  The values
    are checked lazily: see :func:`assert_all_finite`.
    """
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D dask array (n_samples, n_features); got "
                         f"{X.ndim} dimension(s) with shape {X.shape}.")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() "
                         "first.")
    n, d = X.shape
    if n < 1 or d < 1:
        raise ValueError(f"{name} is empty: shape {X.shape}.")
    if X.dtype not in (np.float32, np.float64):
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers; got dtype {X.dtype}.")
        X = X.astype(np.float64)
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X


def check_dask_labelled_points(estimator, X, y, reset, y_numeric=False):
    """A dask array of points (validated, kept lazy) and its labels on the client.

    ``y`` (numpy or dask) is brought here as a 1-D numpy array with one
    label per row (float64 with ``y_numeric``: real targets); X's values
    are checked on the workers.  ``reset`` sets
    ``estimator.n_features_in_``; otherwise the number of features must
    match it (a later ``partial_fit``).
    """
    X = check_dask_points(X)
    if is_dask_array(y):
        y = y.compute()
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must be 1-D with one label per row of X ({X.shape[0]}); "
                         f"got shape {y.shape}.")
    if y_numeric:
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{type(estimator).__name__} needs real-valued targets y; got "
                             f"dtype {y.dtype}.") from None
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinity.")
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} is "
                         f"expecting {estimator.n_features_in_} features as input.")
    assert_all_finite(X)
    return X, y


def assert_all_finite(X, name="X"):
    """One pass over the blocks (on the workers): ValueError on NaN/inf."""
    _, da = import_dask()
    (finite,) = _compute(da.isfinite(X).all())
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or infinity.")


def sample_rows(X, y=None, max_rows=INIT_MAX_ROWS):
    """At most ``max_rows`` evenly spaced rows of X (and of y), as numpy."""
    rows = evenly_spaced(X.shape[0], max_rows)
    Xs = gather_rows(X, rows)
    return Xs, (None if y is None else np.asarray(y)[rows])


def gather_rows(X, rows):
    """``X[rows]`` as a numpy array (rows: sorted or not, any repeats)."""
    rows = np.asarray(rows, dtype=np.intp)
    uniq, inverse = np.unique(rows, return_inverse=True)
    (block,) = _compute(X[uniq])
    return np.ascontiguousarray(block[inverse.reshape(-1)])


def map_rows(X, func, n_columns, dtype):
    """Lazy ``func(block)`` over the row blocks of X (a dask array)."""
    return X.map_blocks(func, dtype=dtype, chunks=(X.chunks[0], (n_columns,)))


def _draw_slice(labels, balanced, anchor, seed, positive_start, n_positive, negative_start,
                n_negative):
    """On a worker: one slice of the positive and negative pair streams."""
    from fastmetric._core.sampling import LabelPairStream

    stream = LabelPairStream(labels, balanced, n_jobs=_worker_threads(None),
                             anchor_label=anchor)
    return stream.draw(seed, positive_start, n_positive, negative_start, n_negative)


def sample_label_pairs(labels, n_positive, n_negative, balanced, seed, anchor_label=None):
    """The pairs of ``sample_pairs(labels, n_positive, n_negative, balanced,
    random_state=seed, anchor_label=anchor_label)``, drawn on the workers.

    The draws are counter-based, so each worker draws its own slice of the
    two streams (one task per worker, the labels broadcast once) and the
    client only puts the index arrays together: the result is exactly the
    in-memory sample.  Without a distributed client, drawn here.

    Returns
    -------
    a, b : ndarray of intp
    targets : ndarray of float64 (1 similar, 0 dissimilar)
    """
    client = _distributed_client()
    n_parts = 1 if client is None else max(1, len(client.scheduler_info()["workers"]))
    steps = np.arange(n_parts + 1)
    pos_cuts = steps * n_positive // n_parts
    neg_cuts = steps * n_negative // n_parts
    args = [(int(pos_cuts[i]), int(pos_cuts[i + 1] - pos_cuts[i]), int(neg_cuts[i]),
             int(neg_cuts[i + 1] - neg_cuts[i])) for i in range(n_parts)]
    if client is None:
        parts = [_draw_slice(labels, balanced, anchor_label, seed, *arg) for arg in args]
    else:
        # hash=False: a fresh key per call (a second fit on the same labels must
        # not reuse data that the first one is releasing).
        shared = client.scatter(np.asarray(labels), broadcast=True, hash=False)
        futures = [client.submit(_draw_slice, shared, bool(balanced), anchor_label, int(seed),
                                 *arg, pure=False) for arg in args]
        parts = client.gather(futures)
    positives = [pairs[:arg[1]] for (pairs, _), arg in zip(parts, args)]
    negatives = [pairs[arg[1]:] for (pairs, _), arg in zip(parts, args)]
    pairs = np.concatenate(positives + negatives)
    targets = np.zeros(pairs.shape[0], dtype=np.float64)
    targets[:n_positive] = 1.0
    return (np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]), targets)


# -- the worker side ---------------------------------------------------------
def current_worker():
    """The distributed worker running this task, or None (not in a task)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:  # not in a worker
        return None


def _worker_threads(n_jobs):
    """Kernel threads inside a task: at most the worker's own thread count."""
    from fastmetric._core.threads import effective_n_threads

    n = effective_n_threads(n_jobs)
    worker = current_worker()
    if worker is not None:
        state = getattr(worker, "state", worker)
        n = max(1, min(n, int(getattr(state, "nthreads", n))))
    return n


def _block_problem(rows, ia, ib, targets, weights, n_jobs):
    from fastmetric._core.objectives.pair_loss import PairLossProblem

    rows = np.ascontiguousarray(rows)
    return PairLossProblem(rows, ia, ib, targets, weights, n_threads=_worker_threads(n_jobs))


def _block_loss_grad(problem, L, bias, n_jobs, compute_gradient):
    """Weighted sums (not means) of the block's loss and gradients."""
    loss, grad_L, grad_bias = problem.loss_grad(L, bias, _worker_threads(n_jobs),
                                                compute_gradient)
    w = problem.total_weight
    return loss * w, (None if grad_L is None else grad_L.astype(np.float64) * w), \
        grad_bias * w


def row_parts(block_rows, rows):
    """Part of each row index, from the row block sizes alone.

    Consecutive blocks are merged until a part holds at least
    ``MIN_PART_ROWS`` rows (a block that large is a part of its own).

    Parameters
    ----------
    block_rows : sequence of int
        Rows per block (``X.chunks[0]``).
    rows : ndarray of intp
        Row indices.

    Returns
    -------
    n_parts : int
    part : ndarray of intp, the part of each entry of ``rows``

    Examples
    --------
    >>> import numpy as np
    >>> row_parts((40_000, 40_000, 70_000), np.array([0, 50_000, 100_000]))
    (2, array([0, 0, 1]))
    """
    bounds = np.concatenate([[0], np.cumsum(block_rows)]).astype(np.int64)
    block_part = np.empty(len(block_rows), dtype=np.intp)
    current, filled = 0, 0
    for i, n in enumerate(block_rows):
        if filled >= MIN_PART_ROWS:
            current, filled = current + 1, 0
        block_part[i] = current
        filled += n
    block = np.searchsorted(bounds, rows, side="right") - 1
    return int(current + 1), block_part[block]


class DaskPairLossProblem:
    """The LDML loss over index pairs into a row-chunked dask array.

    Same interface as :class:`fastmetric._core.objectives.pair_loss.PairLossProblem`
    (``loss_grad(L, bias, n_threads, compute_gradient)``, ``n_pairs``,
    ``total_weight``); see the module docstring for how the work is split.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        float32 or float64, one chunk across the columns.
    a, b : ndarray of intp
        The pairs' row indices.
    targets : ndarray of float64
    sample_weight : ndarray of float64 or None
    n_jobs : int or None
        Kernel threads per task (capped by each worker's thread count).
    """

    def __init__(self, X, a, b, targets, sample_weight=None, n_jobs=None):
        dask, _ = import_dask()
        self.n_pairs = a.shape[0]
        self.n_jobs = n_jobs
        self.dtype = X.dtype
        weights = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        self.total_weight = float(self.n_pairs if weights is None else weights.sum())
        self._client = _distributed_client()
        workers = []
        if self._client is not None:
            workers = sorted(self._client.scheduler_info()["workers"])
        # A pair goes to the part of the row block holding its first row, so
        # most first rows are local.  The parts follow X's chunks only (not
        # the workers), which keeps the summation order, hence the model,
        # independent of the cluster.
        n_parts, part = row_parts(X.chunks[0], a)
        order = np.argsort(part, kind="stable")
        starts = np.searchsorted(part[order], np.arange(n_parts + 1))
        problems = []
        for c in range(n_parts):
            sel = order[starts[c]:starts[c + 1]]
            if sel.shape[0] == 0:
                continue
            w = None if weights is None else weights[sel]
            if w is not None and not w.sum() > 0:
                continue
            ends = np.concatenate([a[sel], b[sel]])
            uniq, inverse = np.unique(ends, return_inverse=True)
            inverse = inverse.reshape(-1).astype(np.intp)
            rows = X[uniq].rechunk({0: -1}).to_delayed().ravel()[0]
            problems.append(dask.delayed(_block_problem, pure=True)(
                rows, np.ascontiguousarray(inverse[:sel.shape[0]]),
                np.ascontiguousarray(inverse[sel.shape[0]:]),
                np.ascontiguousarray(targets[sel], dtype=np.float64), w, n_jobs))
        self.n_parts = len(problems)
        if self._client is not None:
            # Futures held by this object: the parts stay on the workers for
            # the whole fit (a lost one is recomputed from its graph).  The
            # scheduler may build two parts on one worker (it places a task
            # where its inputs are); each part is then copied once to its
            # own worker, so that every evaluation runs the parts side by
            # side.  The placement is a preference, not a restriction: if a
            # worker is lost its part runs elsewhere.
            from distributed import wait

            self._workers = [workers[i % len(workers)] if workers else None
                             for i in range(len(problems))]
            self._problems = [
                self._client.compute(p, **placed_on(w))
                for p, w in zip(problems, self._workers)
            ]
            wait(self._problems)
            holders = self._client.who_has(self._problems)
            for future, worker in zip(self._problems, self._workers):
                if worker is not None and worker not in holders.get(future.key, ()):
                    self._client.replicate([future], n=1, workers=[worker])
        else:
            self._problems = _persist(*problems)

    def loss_grad(self, L, bias, n_threads=None, compute_gradient=True):
        """Loss, gradient in L and in the bias (weighted means over all pairs)."""
        dask, _ = import_dask()
        L = np.ascontiguousarray(L, dtype=self.dtype)
        args = (L, float(bias), self.n_jobs, bool(compute_gradient))
        if self._client is not None:
            futures = [self._client.submit(_block_loss_grad, p, *args, pure=False,
                                           **placed_on(w))
                       for p, w in zip(self._problems, self._workers)]
            parts = self._client.gather(futures)
        else:
            parts = _compute(*[dask.delayed(_block_loss_grad, pure=True)(p, *args)
                               for p in self._problems])
        return combine_pair_sums(parts, self.total_weight, compute_gradient, self.dtype)


def placed_on(worker):
    """Keyword arguments that place a task on ``worker`` by preference: any
    other worker may run it (a lost worker's task is rebuilt elsewhere).
    None (no worker known yet, e.g. while a busy cluster is still
    registering them) places nothing: distributed refuses
    ``allow_other_workers`` without ``workers``."""
    if worker is None:
        return {}
    return {"workers": [worker], "allow_other_workers": True}


def combine_pair_sums(parts, total_weight, compute_gradient, dtype):
    """Loss, gradient in L and in the bias (weighted means) from the weighted
    sums of :func:`_block_loss_grad` over parts, added in part order (so the
    result does not depend on which worker finished first)."""
    W = total_weight
    loss = sum(p[0] for p in parts) / W
    grad_bias = sum(p[2] for p in parts) / W
    grad_L = None
    if compute_gradient:
        grad_L = parts[0][1].copy()
        for p in parts[1:]:
            grad_L += p[1]
        grad_L /= W
        grad_L = grad_L.astype(dtype, copy=False)
    return loss, grad_L, grad_bias
