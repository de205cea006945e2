"""Dask support for the minibatch solvers (Adam/SGD of LDML, NCA and LMNN).

The minibatch fits keep their in-memory algorithm on a row-chunked dask
array: the client draws each minibatch's row indices exactly as in memory
(the same permutations, counter-based candidate and pair draws), holds
``L`` and the solver's state (Adam's moments), and takes every step; the
rows themselves never pass through the client.

**Gathering.**  Consecutive minibatches are put in *groups* of about
:data:`GROUP_ROWS` rows.  For each group and each worker that evaluates
shares of it, one task per row block of X takes the rows that worker's
shares need from the block, where the block lives, and one task on the
worker puts them together and builds the shares' data there (the centred
candidate rows of NCA and LMNN, the pair problems of LDML).  The rows do
not depend on ``L``, so the groups are gathered :data:`AHEAD_GROUPS` ahead
of the minibatch being evaluated: the workers gather while the client
steps.

**Evaluation.**  A minibatch is split into *shares* whose number depends
on the batch alone (:data:`SHARE_ROWS` batch rows of NCA and LMNN,
:data:`SHARE_PAIRS` pairs of LDML), never on the workers; each share is one
task, share s on worker ``s mod n_workers``, that returns the
share's summed loss and gradient (or scatter) sums.  The client adds them
in share order and turns them into the minibatch's loss and gradient.  Per
minibatch the client therefore sends ``L`` (``4 k d`` or ``8 k d`` bytes)
to each share and receives a ``d x d`` or ``k x d`` float64 array (``8
d^2`` bytes) from it.

**Why the state stays on the client.**  Averaging models trained
independently on the workers (local SGD) would need no exchange per
minibatch, but it is another algorithm: its result depends on the number
of workers and it converges differently from the in-memory fit.  Here the
fit is the in-memory algorithm, with the sums of a minibatch split in a
fixed way: the same data and ``random_state`` give the same model, bit for
bit, with any cluster or none (in whatever order the workers finish), and
the in-memory model up to the order of those sums.  The cost is one round
trip per minibatch, which dominates when a minibatch's work is short (the
README's "Beyond one machine" gives the figures).

Without a ``distributed`` client, the groups are gathered by Dask's
synchronous scheduler and the shares evaluated here, in the same order.
"""
from collections import deque

import numpy as np

from fastmetric._core.cluster_rows import map_row_blocks, sum_in_order
from fastmetric._core.dask_support import (
    _block_loss_grad,
    _block_problem,
    _compute,
    _distributed_client,
    _worker_threads,
    combine_pair_sums,
    import_dask,
    placed_on,
)
from fastmetric._core.objectives.neighbor_batches import BLOCK_ROWS

__all__ = ["AHEAD_GROUPS", "DaskNeighborObjective", "DaskPairBatches", "GROUP_ROWS",
           "SHARE_PAIRS", "SHARE_ROWS", "dask_row_mean"]

# Rows gathered per group of minibatches: a group is, per worker, one task
# per row block of X plus one, so that the scheduler's cost per minibatch
# stays small, and at d = 64 float32 a group holds at most 16 MB.
GROUP_ROWS = 65_536

# Groups gathered ahead of the one being evaluated.
AHEAD_GROUPS = 2

# Batch rows per share of an NCA / LMNN minibatch: 4 of the fixed blocks of
# the in-memory objective (a share must be whole blocks); the default batch
# of 1000 rows is 2 shares.
SHARE_ROWS = 4 * BLOCK_ROWS

# Pairs per share of an LDML minibatch: the default batch of 10,000 pairs is
# 2 shares.
SHARE_PAIRS = 5_000


def _column_sums(block):
    return (block.sum(axis=0, dtype=np.float64),)


def dask_row_mean(X):
    """Mean of the rows of a dask array, in float64: per-block sums on the
    workers, added in block order here (the same result on any cluster)."""
    if X.shape[0] == 0:
        return np.zeros(X.shape[1], dtype=np.float64)
    (total,) = sum_in_order(map_row_blocks(_column_sums, X))
    return total / X.shape[0]


def _take_rows(block, local_rows):
    """On the worker holding a row block: the rows a group needs from it."""
    return np.ascontiguousarray(block[local_rows])


def _build_group(build, pieces, uniq, entries, extra):
    """On a worker: a group's minibatch shares from its gathered rows."""
    from fastmetric._core.threads import single_threaded_blas

    rows = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    with single_threaded_blas():
        return build(np.ascontiguousarray(rows), uniq, entries, *extra)


def _run_share(evaluate, group, key, args):
    """On a worker: share ``key = (j, s)`` (minibatch j of a group, share s)."""
    from fastmetric._core.threads import single_threaded_blas

    with single_threaded_blas():  # as in memory: results independent of BLAS threads
        return evaluate(group[key], key[1], *args)


class _Minibatches:
    """Groups of minibatches gathered on the workers; shares evaluated there.

    Share s of every minibatch runs on worker ``s mod n_workers`` (workers
    sorted by address).  Each worker gets, per group, only the rows of the
    shares it evaluates: one task per row block of X takes them where the
    block lives, and one task on the worker builds its shares' data.

    Parameters
    ----------
    X : dask.array.Array
        The points (one chunk across the columns).  With a distributed
        client it is persisted on the workers for the fit (every epoch
        reads all rows).
    """

    def __init__(self, X):
        import_dask()
        self._client = _distributed_client()
        self._workers = [None]
        if self._client is not None:
            from distributed import futures_of

            self._workers = sorted(self._client.scheduler_info()["workers"]) or [None]
            X = self._client.persist(X)
            by_key = {f.key: f for f in futures_of(X)}
            self._blocks = [by_key[key] for key in X.__dask_keys__()
                            for key in ([key] if isinstance(key, tuple) else key)]
            self._bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        self.X = X

    def _worker_of(self, s):
        return self._workers[s % len(self._workers)]

    def _submit(self, build, uniq, entries, extra, worker):
        """A worker's share of a group: a future there (or, without a client, here)."""
        if self._client is None:
            (rows,) = _compute(self.X[uniq])
            return _build_group(build, [rows], uniq, entries, extra)
        block = np.searchsorted(self._bounds, uniq, side="right") - 1
        cuts = np.flatnonzero(np.diff(block)) + 1
        pieces = [
            # No placement: the scheduler runs it where the block is.
            self._client.submit(_take_rows, self._blocks[block[first]],
                                uniq[first:stop] - self._bounds[block[first]], pure=False)
            for first, stop in zip(np.r_[0, cuts], np.r_[cuts, uniq.shape[0]])
        ]
        # A preference, not a restriction: a lost worker's part is rebuilt
        # elsewhere from its inputs.
        return self._client.submit(_build_group, build, pieces, uniq, entries, extra,
                                   pure=False, **placed_on(worker))

    def read_ahead(self, specs, build, extra_of):
        """``(group, j, info)`` for each ``(info, shares)`` of ``specs``.

        ``shares`` lists, per share s of minibatch j, ``(rows, payload)``:
        the row indices it needs and what its data are built from.  On each
        worker, ``build(X_rows, uniq, entries, *extra_of(uniq))`` (``X_rows``
        the rows ``uniq``, sorted; ``entries`` the ``((j, s), payload)`` of
        the shares it evaluates) returns a dict ``{(j, s): data}``.  Groups
        are submitted :data:`AHEAD_GROUPS` ahead of the one yielded.
        """
        specs = iter(specs)

        def next_group():
            needed, entries, infos, n_rows = {}, {}, [], 0
            for j, (info, shares) in enumerate(specs):
                infos.append(info)
                for s, (rows, payload) in enumerate(shares):
                    worker = self._worker_of(s)
                    needed.setdefault(worker, []).append(rows)
                    entries.setdefault(worker, []).append(((j, s), payload))
                    n_rows += rows.shape[0]
                if n_rows >= GROUP_ROWS:
                    break
            if not infos:
                return None
            parts = {}
            for worker, rows in needed.items():
                uniq = np.unique(np.concatenate(rows))
                parts[worker] = self._submit(build, uniq, entries[worker], extra_of(uniq),
                                             worker)
            return parts, infos

        groups = deque()
        while True:
            while len(groups) < AHEAD_GROUPS:
                group = next_group()
                if group is None:
                    break
                groups.append(group)
            if not groups:
                return
            group, infos = groups.popleft()
            for j, info in enumerate(infos):
                yield group, j, info
            del group  # its futures are released with the last reference

    def evaluate(self, evaluate, group, j, n_shares, args):
        """The results of the shares of minibatch j, in share order."""
        if self._client is None:
            return [_run_share(evaluate, group[None], (j, s), args) for s in range(n_shares)]
        futures = []
        for s in range(n_shares):
            worker = self._worker_of(s)
            futures.append(self._client.submit(
                _run_share, evaluate, group[worker], (j, s), args, pure=False,
                **placed_on(worker)))
        # Gathered in share order, whatever order the workers finish in.
        return self._client.gather(futures)


# -- NCA and LMNN ------------------------------------------------------------
def _neighbor_group(X_rows, uniq, entries, labels, *local_args, make_objective,
                    n_samples, mean, n_jobs):
    """On a worker: the batch objective over the gathered rows, and the data
    of each minibatch whose shares run there.

    The objective is the in-memory one over the gathered rows ``X_rows``
    (row r is global row ``uniq[r]``), with the mean and the row count of
    the whole data: each minibatch's data are then those of the in-memory
    fit (indices map monotonically, so sortedness and the exclusion of a
    point's own copies are kept).  The shares of a minibatch on one worker
    share its data.
    """
    objective = make_objective(X_rows, labels, *local_args, mean=mean,
                               n_threads=_worker_threads(n_jobs))
    objective.n_samples = n_samples  # LMNN's impostor scale counts every row
    out, built = {}, {}
    for (j, s), (rows, drawn) in entries:
        if j not in built:
            built[j] = (objective, objective.batch(np.searchsorted(uniq, rows),
                                                   np.searchsorted(uniq, drawn)))
        out[j, s] = built[j]
    return out


def _neighbor_share(entry, s, L, share_rows):
    # share_rows comes from the client: the split is the client's to fix.
    objective, batch = entry
    first = s * share_rows
    loss, H = objective.partial_sums(L, batch, first, min(first + share_rows, batch.b))
    return loss, H, getattr(objective, "n_active", None)


class _NeighborHandle:
    """What the minibatch loop sees of a minibatch on the workers."""

    def __init__(self, group, j, b):
        self.group, self.j, self.b = group, j, b


class DaskNeighborObjective:
    """An NCA or LMNN minibatch objective over a row-chunked dask array.

    The interface of :class:`fastmetric._core.objectives.neighbor_batches.NCABatchObjective`
    that :class:`fastmetric._core.minibatch_learner.MinibatchNeighborsMixin`
    uses (``n_samples``, ``batches(specs)``, ``loss_grad(L, data)``, and
    ``n_active`` for LMNN); see the module docstring for where the work runs.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        float32 or float64, one chunk across the columns.
    labels : ndarray of shape (n_samples,), intp
    objective_class : type
        ``NCABatchObjective`` or ``LMNNBatchObjective``.
    mean : ndarray of shape (n_features,)
        Subtracted from the gathered rows (:func:`dask_row_mean`).
    targets : ndarray of shape (n_samples, K), optional
        LMNN's target neighbours (row indices, -1 in unused slots).
    mu : float, optional
        LMNN's push weight.
    n_jobs : int or None
        Threads per task (capped by each worker's).
    """

    def __init__(self, X, labels, objective_class, mean, targets=None, mu=None, n_jobs=None):
        self._batches = _Minibatches(X)
        self.n_samples = X.shape[0]
        self.dtype = np.dtype(X.dtype)
        self.labels = np.ascontiguousarray(labels, dtype=np.intp)
        self.targets = targets
        self.mu = mu
        self.n_active = 0
        self._mean = np.asarray(mean, dtype=np.float64)
        self._class = objective_class
        self._n_jobs = n_jobs

    def _extra(self, uniq):
        """Per-group arguments: the rows' labels (and LMNN's local targets, mu)."""
        labels = self.labels[uniq]
        if self.targets is None:
            return (labels,)
        T = self.targets[uniq]
        local = np.where(T >= 0, np.searchsorted(uniq, np.maximum(T, 0)), -1)
        return labels, local.astype(self.targets.dtype), self.mu

    def batches(self, specs):
        """Handles of the minibatches ``(rows, drawn)`` of ``specs``, gathered ahead."""
        def with_rows():
            for rows, drawn in specs:
                need = [rows, drawn]
                if self.targets is not None:
                    T = self.targets[rows]
                    need.append(T[T >= 0].astype(np.intp))
                need = np.concatenate(need)
                # Every share compares its rows with all the candidates: each
                # needs the whole minibatch.
                n_shares = -(-rows.shape[0] // SHARE_ROWS)
                yield rows.shape[0], [(need, (rows, drawn))] * n_shares

        # The builder carries this object's constants, not the dask array.
        for group, j, b in self._batches.read_ahead(with_rows(), _GroupBuilder(self),
                                                   self._extra):
            yield _NeighborHandle(group, j, b)

    def loss_grad(self, L, data):
        """Minibatch loss and gradient, as the in-memory objective's."""
        L = np.asarray(L, dtype=np.float64)
        n_shares = -(-data.b // SHARE_ROWS)
        parts = self._batches.evaluate(_neighbor_share, data.group, data.j, n_shares,
                                       (L, SHARE_ROWS))
        loss = 0.0
        H = np.zeros((L.shape[1], L.shape[1]), dtype=np.float64)
        n_active = 0
        for share_loss, share_H, share_active in parts:  # share order
            loss += share_loss
            H += share_H
            n_active += share_active or 0
        self.n_active = n_active
        return loss / data.b, (2.0 / data.b) * (L @ H)


class _GroupBuilder:
    """Picklable ``build`` of :meth:`_Minibatches.read_ahead` for the neighbour
    objectives (carries the constants, not the dask array)."""

    def __init__(self, owner):
        self.make_objective = owner._class
        self.n_samples = owner.n_samples
        self.mean = owner._mean
        self.n_jobs = owner._n_jobs

    def __call__(self, X_rows, uniq, payloads, labels, *local_args):
        return _neighbor_group(X_rows, uniq, payloads, labels, *local_args,
                               make_objective=self.make_objective, n_samples=self.n_samples,
                               mean=self.mean, n_jobs=self.n_jobs)


# -- LDML --------------------------------------------------------------------
class _PairShare:
    """One share of an LDML minibatch on a worker: its rows (a copy, so that
    the share is the same whatever else its worker gathered) and pairs, and
    the kernel's pair problem, built with the group (the problem does not
    travel between processes; these arrays do, and the problem is rebuilt,
    if a share has to run on another worker)."""

    def __init__(self, X_rows, a, b, targets, weights, n_jobs):
        self.X_rows, self.a, self.b = X_rows, a, b
        self.targets, self.weights, self.n_jobs = targets, weights, n_jobs
        self._problem = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_problem"] = None
        return state

    def problem(self):
        if self._problem is None:
            self._problem = _block_problem(self.X_rows, self.a, self.b, self.targets,
                                           self.weights, self.n_jobs)
        return self._problem


def _pair_group(X_rows, uniq, entries, n_jobs):
    """On a worker: the pair problems of the shares that run there."""
    out = {}
    for key, (a, b, targets, weights) in entries:
        rows, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        inverse = inverse.reshape(-1).astype(np.intp)
        out[key] = _PairShare(np.ascontiguousarray(X_rows[np.searchsorted(uniq, rows)]),
                              np.ascontiguousarray(inverse[:a.shape[0]]),
                              np.ascontiguousarray(inverse[a.shape[0]:]), targets, weights,
                              n_jobs)
        # Built now, ahead of the evaluation, while the worker would wait for
        # the client's next L anyway.
        out[key].problem()
    return out


def _pair_share(share, s, L, bias, n_jobs, compute_gradient):
    return _block_loss_grad(share.problem(), L, bias, n_jobs, compute_gradient)


class _PairHandle:
    """The ``problem`` of one LDML minibatch on the workers, for ldml_objective."""

    def __init__(self, owner, group, j, n_shares, total_weight):
        self._owner, self._group, self._j = owner, group, j
        self.n_shares, self.total_weight = n_shares, total_weight

    def loss_grad(self, L, bias, n_threads=None, compute_gradient=True):
        owner = self._owner
        parts = owner._batches.evaluate(
            _pair_share, self._group, self._j, self.n_shares,
            (np.ascontiguousarray(L, dtype=owner.dtype), float(bias), owner.n_jobs,
             bool(compute_gradient)))
        return combine_pair_sums(parts, self.total_weight, compute_gradient, owner.dtype)


class DaskPairBatches:
    """LDML minibatches of index pairs into a row-chunked dask array.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
    n_jobs : int or None
        Kernel threads per task (capped by each worker's).
    """

    def __init__(self, X, n_jobs=None):
        self._batches = _Minibatches(X)
        self.dtype = X.dtype
        self.n_jobs = n_jobs

    def problems(self, specs):
        """``(problem, weight)`` for each ``(a, b, targets, weights)`` of ``specs``.

        ``problem`` has the ``loss_grad(L, bias, n_threads, compute_gradient)``
        of :class:`~fastmetric._core.objectives.pair_loss.PairLossProblem`;
        minibatches whose weights sum to 0 are skipped, as in memory.
        """
        def with_rows():
            for a, b, targets, weights in specs:
                n = a.shape[0]
                cuts = list(range(0, n, SHARE_PAIRS)) + [n]
                shares = []
                for s, e in zip(cuts[:-1], cuts[1:]):
                    if weights is None or weights[s:e].sum() > 0:
                        shares.append((s, e))
                weight = float(n if weights is None else weights.sum())
                if not weight > 0:
                    continue
                # Each share needs only the rows of its own pairs.
                yield (len(shares), weight), [
                    (np.concatenate([a[s:e], b[s:e]]),
                     (a[s:e], b[s:e], targets[s:e], None if weights is None else weights[s:e]))
                    for s, e in shares]

        for group, j, (n_shares, weight) in self._batches.read_ahead(
                with_rows(), _PairBuilder(self.n_jobs), lambda uniq: ()):
            yield _PairHandle(self, group, j, n_shares, weight), weight


class _PairBuilder:
    def __init__(self, n_jobs):
        self.n_jobs = n_jobs

    def __call__(self, X_rows, uniq, payloads):
        return _pair_group(X_rows, uniq, payloads, self.n_jobs)
