"""Dask support for the minibatch solvers (Adam/SGD of LDML, NCA, LMNN and MLKR).

The minibatch fits keep their in-memory algorithm on a row-chunked dask
array: the client draws each minibatch's row indices exactly as in memory
(the same permutations, counter-based candidate and pair draws), and the
steps are taken where the rows are, by the in-memory code.

**Groups.**  Consecutive minibatches are put in *groups* whose rows take
about :data:`GROUP_BYTES`.  Group g belongs to worker ``g mod n_workers``
(workers sorted by address): one task on each other worker takes the rows
the group needs from the blocks that worker holds, and one task on the
group's worker takes them from its own blocks, puts all in row order and
builds the minibatches' data there (the centred candidate rows of NCA and
LMNN, the pair problems of LDML).  The rows do not depend on ``L``, so the
groups are gathered :data:`AHEAD_GROUPS` ahead of the one being stepped:
the workers gather while the fit steps, and the client draws the next
groups' minibatches while it waits for a step.

**The solver state travels to the rows.**  One task on the group's worker
takes the parameters and the optimiser's state (Adam's moments), runs the
group's minibatches one after the other exactly as the in-memory loop does
(:func:`~fastmetric._core.solvers.step_minibatches`, the same objective code
on the same rows), and returns the new parameters and state with each
minibatch's loss; the next group's task starts from them.  That task is
submitted with this one, as a task that depends on it, so the scheduler
starts it when this one ends, without a round trip through the client; the
client reads each group's outcome while the next one steps.  Per group that
is ``3 k d`` float64 values passed on (``L`` and two moments, about 100 kB
at ``k = d = 64``; nothing when the next group is on the same worker),
instead of one round trip per minibatch.  Only one worker steps at a time,
so its task uses the threads of the machine it runs on
(``n_jobs``, as in memory), not only the worker's task slots.

**Why not split the minibatches or average models.**  Splitting each
minibatch's sums over the workers keeps every worker busy, but pays a round
trip per minibatch, longer than the whole minibatch of LDML (7 ms) and a
third of NCA's.  Averaging models trained independently on the workers
(local SGD) needs no exchange per minibatch, but it is another algorithm:
its result depends on the number of workers and it converges differently
from the in-memory fit.  Here the fit is the in-memory algorithm: the same
data and ``random_state`` give the same model, bit for bit, with any cluster
or none (in whatever order the workers finish their gathering), and the
in-memory model up to the order of the sums of the data's mean.  Workers
beyond the first hold data and gather rows; they do not shorten an epoch
(the README's "Beyond one machine" gives the figures).

Without a ``distributed`` client, the groups are gathered by Dask's
synchronous scheduler and stepped here, by the same code.
"""
from collections import deque

import numpy as np

from fastmetric._core.cluster_rows import map_row_blocks, sum_in_order
from fastmetric._core.dask_support import (
    _compute,
    _distributed_client,
    current_worker,
    import_dask,
    placed_on,
)
from fastmetric._core.objectives.pair_loss import PairLossProblem
from fastmetric._core.rows import distinct_indices

__all__ = ["AHEAD_GROUPS", "DaskNeighborObjective", "DaskPairBatches", "FIRST_GROUP_ROWS",
           "GROUP_BYTES", "dask_row_mean"]

# Bytes of the rows gathered per group of minibatches (the rows a group's
# minibatches need, each counted once it is reached), and so the minibatches
# stepped per hop of the solver state: 524,288 rows at d = 64 float32.  An
# epoch of LDML_Supervised's default 200,000 pairs (400,000 rows) is then
# one group, and one of NCA's default minibatches over 4M rows (1,000 rows
# and 1,000 candidates each: 8M rows) 16 groups.  With the groups gathered
# ahead, a fit holds about (1 + AHEAD_GROUPS) x 1.5 times this on its
# workers besides the data.  Half of it (262,144 rows at d = 64 float32)
# split LDML's epoch in two unequal groups, with a hop more per epoch and
# its gathering beside its own worker's step: 10-15 % longer epochs on a
# 2-worker LocalCluster.
GROUP_BYTES = 128 * 2**20

# Groups gathered ahead of the one being stepped.
AHEAD_GROUPS = 2

# Rows of an epoch's first group when it was not read ahead (the first
# epoch of a fit, a partial_fit): the groups double from this size up to
# the GROUP_BYTES size, so that the first steps wait for a small gather only (the
# next groups are gathered while they step).
FIRST_GROUP_ROWS = 16_384


def _column_sums(block):
    return (block.sum(axis=0, dtype=np.float64),)


def dask_row_mean(X):
    """Mean of the rows of a dask array, in float64: per-block sums on the
    workers, added in block order here (the same result on any cluster)."""
    if X.shape[0] == 0:
        return np.zeros(X.shape[1], dtype=np.float64)
    (total,) = sum_in_order(map_row_blocks(_column_sums, X))
    return total / X.shape[0]


def _compact(positions, bound):
    """``positions`` (integers below ``bound``) as int32 when they fit: the
    row positions sent with a group's tasks are half their intp size
    (through the scheduler, to the workers, for every group of every
    epoch)."""
    return positions.astype(np.int32) if bound <= np.iinfo(np.int32).max else positions


def _take_into(out, block, rows):
    """``out[:] = block[rows]``, row by row as raw bytes.

    Taking each row as one opaque record (a void dtype of the row's bytes)
    is one memcpy per row, without a temporary, whatever the alignment of
    the block: a block received from another process can sit at any byte
    offset of its message (a block scattered from the client does), where
    np.take of the float rows is 5-8x slower.  About 3x faster than
    ``out[...] = block[rows]`` on such a block.
    """
    if block.flags.c_contiguous and out.flags.c_contiguous and block.shape[1] > 0:
        record = np.dtype((np.void, block.dtype.itemsize * block.shape[1]))
        # "clip": the rows are in range, and "raise" would buffer the output
        np.take(block.view(record).reshape(-1), rows, out=out.view(record).reshape(-1),
                mode="clip")
    else:
        out[...] = block[rows]


def _take_rows(local_rows, *blocks):
    """On the worker holding these row blocks: the rows a group needs from
    them (``local_rows[i]`` of ``blocks[i]``), one after the other in one
    array."""
    out = np.empty((sum(rows.shape[0] for rows in local_rows), blocks[0].shape[1]),
                   dtype=blocks[0].dtype)
    at = 0
    for block, rows in zip(blocks, local_rows):
        _take_into(out[at:at + rows.shape[0]], block, rows)
        at += rows.shape[0]
    return out


def _build_group(build, n_rows, entries, extra, taken, taken_spans, blocks=(), block_rows=(),
                 block_spans=()):
    """On the group's worker: the group's minibatch data from its ``n_rows``
    rows, the distinct rows its minibatches need in row order (``uniq`` on
    the client; each block's rows are one run of it).

    ``taken[i]`` holds the rows ``uniq[start:stop]`` of each ``(start,
    stop)`` of ``taken_spans[i]``, one run after the other (rows taken by
    another worker); the rows ``uniq[block_spans[j]]`` are
    ``block_rows[j]`` of ``blocks[j]``, a block held here.  The positions
    in ``entries`` may come in a compact integer type (:func:`_compact`);
    ``build`` gets them as intp.
    """
    from fastmetric._core.memory import heap_kept_for_reuse
    from fastmetric._core.threads import single_threaded_blas

    if not blocks and len(taken) == 1 and len(taken_spans[0]) == 1:
        rows = np.ascontiguousarray(taken[0])
    else:
        some = taken[0] if taken else blocks[0]
        rows = np.empty((n_rows, some.shape[1]), dtype=some.dtype)
        for part, spans in zip(taken, taken_spans):
            at = 0
            for start, stop in spans:
                rows[start:stop] = part[at:at + stop - start]
                at += stop - start
        for block, local, (start, stop) in zip(blocks, block_rows, block_spans):
            _take_into(rows[start:stop], block, local)
    entries = [(payload, local.astype(np.intp, copy=False)) for payload, local in entries]
    # The minibatches' index tables (megabytes each, one set per minibatch)
    # would otherwise be mapped and unmapped one after the other in a Dask
    # worker (see _step_group): half the time of building a group of LDML.
    with single_threaded_blas(), heap_kept_for_reuse():
        return build(rows, entries, *extra)


def _step_group(group, x, optimizer, steps):
    """On the group's worker: the solver's steps over the group's minibatches.

    ``steps(group, n_threads)`` gives the ``(batch_fun, weight)`` of the
    group's minibatches in order.  Returns ``(x, optimizer, losses, finite,
    extra)``, with ``extra = steps.extra(group)`` (LMNN's active count).
    """
    from fastmetric._core.memory import heap_kept_for_reuse
    from fastmetric._core.solvers import step_minibatches
    from fastmetric._core.threads import machine_n_threads, single_threaded_blas

    losses = []
    # One group steps at a time in the whole fit: the machine's threads
    # (n_jobs resolved there), as the in-memory fit uses them.  The task
    # leaves the worker's task slots, so that the row gathers of the next
    # groups from this worker's blocks are not queued behind it.
    n_threads = machine_n_threads(steps.n_jobs)
    if current_worker() is not None:
        from distributed import secede

        secede()
    # Dask starts its workers with MALLOC_TRIM_THRESHOLD_ set, which makes
    # glibc map and unmap each large temporary of every minibatch: twice the
    # time of NCA's steps.  The heap is reused while the group steps.
    with single_threaded_blas(), heap_kept_for_reuse():  # BLAS as in memory
        x, finite = step_minibatches(steps(group, n_threads), x, optimizer, losses)
    return x, optimizer, losses, finite, steps.extra(group)


def _step_group_from(start, group, steps):
    """On the group's worker: :func:`_step_group` from ``start``, the outcome
    of the previous group's task ``(x, optimizer, losses, finite, extra)``:
    given as a dependency, the step starts when that task ends, without a
    round trip through the client; the client gives the fit's first group
    (and any group whose queued step it does not use) its start in the same
    form.

    When the previous group met a non-finite value the fit stops there: no
    step is taken.  The optimiser is copied, because a previous task on the
    same worker hands over its very object, which its own result (still to
    be read by the client) holds.
    """
    import copy

    x, optimizer, _, finite, _ = start
    if not finite:
        return x, optimizer, [], False, None
    return _step_group(group, x, copy.deepcopy(optimizer), steps)


class _Minibatches:
    """Groups of minibatches gathered on the workers, and stepped there.

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
            from distributed import futures_of, wait

            self._workers = sorted(self._client.scheduler_info()["workers"]) or [None]
            X = self._client.persist(X)
            by_key = {f.key: f for f in futures_of(X)}
            self._blocks = [by_key[key] for key in X.__dask_keys__()
                            for key in ([key] if isinstance(key, tuple) else key)]
            self._bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
            # where each block lives (a preference for the tasks that read it)
            wait(self._blocks)
            who_has = self._client.who_has(self._blocks)
            self._holders = [min(who_has.get(f.key, ()), default=None) for f in self._blocks]
        self.X = X
        # (specs, groups gathered, groups made) of the next epoch, read ahead
        self._carried = None

    def _submit(self, build, uniq, entries, extra, worker):
        """A group's data: a future on ``worker`` (or, without a client, here)."""
        if self._client is None:
            (rows,) = _compute(self.X[uniq])
            return _build_group(build, uniq.shape[0], entries, extra, [rows],
                                [[(0, uniq.shape[0])]])
        block = np.searchsorted(self._bounds, uniq, side="right") - 1
        cuts = np.flatnonzero(np.diff(block)) + 1
        # The group's task reads the blocks of its own worker itself; one
        # task per other worker takes the rows from all the blocks that
        # worker holds, consecutive or not (blocks scattered one by one
        # alternate between the workers): one piece to send per worker.
        by_holder = {}
        for start, stop in zip(np.r_[0, cuts], np.r_[cuts, uniq.shape[0]]):
            holder = self._holders[block[start]]
            blocks, local, spans = by_holder.setdefault(holder, ([], [], []))
            blocks.append(self._blocks[block[start]])
            local.append(_compact(uniq[start:stop] - self._bounds[block[start]],
                                  self.X.shape[0]))
            spans.append((int(start), int(stop)))
        own = by_holder.pop(worker, ([], [], [])) if worker is not None else ([], [], [])
        taken = [self._client.submit(_take_rows, local, *blocks, pure=False, **placed_on(holder))
                 for holder, (blocks, local, _) in by_holder.items()]
        # A preference, not a restriction: a lost worker's part is rebuilt
        # elsewhere from its inputs (the worker also holds most of them).
        return self._client.submit(
            _build_group, build, uniq.shape[0], entries, extra, taken,
            [spans for _, _, spans in by_holder.values()], *own, pure=False, **placed_on(worker))

    def groups(self, specs, build, extra_of, steps, following=None):
        """The :class:`_RelayedGroup` of each group of minibatches of ``specs``.

        ``specs`` yields ``(rows, payload)`` per minibatch: the row indices it
        needs and what its data are built from.  On the group's worker,
        ``build(X_rows, entries, *extra_of(uniq))`` (``X_rows`` the distinct
        rows ``uniq`` they need, sorted; ``entries`` the ``(payload, local)`` of the
        group's minibatches in order, ``local`` the positions of their
        ``rows`` in ``uniq``) returns its data, which ``steps`` turns into
        minibatches there.  Groups are submitted :data:`AHEAD_GROUPS` ahead
        of the one yielded.

        ``following()``, when given, returns the specs of the next epoch:
        once this epoch's specs are all submitted, the first groups of the
        next are gathered while this epoch's last groups step, and the next
        call (which must be for those specs; its own ``specs`` are then not
        read) starts with them.
        """
        carried, self._carried = self._carried, None
        if carried is None:
            current, ahead, n_current, ramp = iter(specs), deque(), 0, True
        else:
            # read ahead: no small first groups needed
            current, ahead, n_current = carried
            ramp = False
        upcoming, upcoming_ahead, n_upcoming = None, deque(), 0
        exhausted = False
        row_bytes = self.X.shape[1] * self.X.dtype.itemsize
        group_rows = max(1, GROUP_BYTES // max(row_bytes, 1))

        def next_group(spec_iter, n_groups, ramp):
            size = min(group_rows, FIRST_GROUP_ROWS << n_groups) if ramp else group_rows
            needed, payloads, n_rows = [], [], 0
            for rows, payload in spec_iter:
                needed.append(rows)
                payloads.append(payload)
                n_rows += rows.shape[0]
                if n_rows >= size:
                    break
            if not payloads:
                return None
            worker = self._workers[n_groups % len(self._workers)]
            uniq, local = distinct_indices(np.concatenate(needed), self.X.shape[0])
            cuts = np.cumsum([rows.shape[0] for rows in needed])[:-1]
            entries = list(zip(payloads, np.split(_compact(local, uniq.shape[0]), cuts)))
            data = self._submit(build, uniq, entries, extra_of(uniq), worker)
            return _RelayedGroup(self, data, worker, len(entries), steps)

        def fill():
            # Gather up to AHEAD_GROUPS groups ahead of the one stepping.  Also
            # called while a group steps (its ``while_waiting``): drawing the
            # next minibatches and finding their rows costs the client tens
            # of milliseconds per group, which then overlap the step instead
            # of delaying the next one.
            nonlocal current, n_current, upcoming, n_upcoming, exhausted
            while len(ahead) + len(upcoming_ahead) < AHEAD_GROUPS:
                if not exhausted:
                    group = next_group(current, n_current, ramp)
                    if group is None:
                        exhausted = True
                        continue
                    ahead.append(group)
                    n_current += 1
                elif following is not None:
                    if upcoming is None:
                        upcoming = iter(following())
                    group = next_group(upcoming, n_upcoming, False)
                    if group is None:
                        break
                    upcoming_ahead.append(group)
                    n_upcoming += 1
                else:
                    break

        while True:
            fill()
            if not ahead:
                break
            group = ahead.popleft()
            group.while_waiting = fill
            # The next group, of this epoch or (read ahead) of the next one:
            # its step is queued behind this one.  Between epochs the solver
            # passes the parameters on unchanged, so the queued step is used;
            # when the fit stops there instead, it is released unused.
            group.successor = ahead[0] if ahead else (
                upcoming_ahead[0] if upcoming_ahead else None)
            yield group
        if upcoming is not None:
            self._carried = (upcoming, upcoming_ahead, n_upcoming)

    def submit_step(self, data, worker, steps, start):
        """A future of :func:`_step_group_from` on ``worker``: ``start`` is the
        future of the previous group's step, or ``(x, optimizer, [], True,
        None)`` from the client."""
        return self._client.submit(_step_group_from, start, data, steps, pure=False,
                                   **placed_on(worker))

    def wait(self, future):
        """The outcome of a step submitted by :meth:`submit_step`."""
        return future.result()


class _RelayedGroup:
    """Consecutive minibatches that :func:`~fastmetric._core.solvers.run_epoch`
    steps on the worker holding their rows (``run_steps``).

    **Chained steps.**  When a group's step is submitted, the step of the next
    group (``successor``: of the epoch, or the first of the next epoch when
    that is read ahead) is submitted too, as a task that depends on it: the
    scheduler starts it on its worker as soon as this one ends, with this
    one's parameters and optimiser state, instead of waiting for the client
    to read them and send them back (a round trip per group: about 10 ms on
    one machine, more across a network, and the epoch's bookkeeping at an
    epoch's end).  The client still reads every group's outcome, in order,
    and the successor's queued step is used only when ``run_steps`` is then
    called with the parameters this group returned, unchanged, which is
    what :func:`~fastmetric._core.solvers.run_epoch` and the epochs around
    it do unless the fit stopped (a non-finite value, Ctrl-C, convergence,
    a callback): the steps and their order are those of the unchained loop.
    A fit that stops at the end of an epoch leaves its queued step unused
    (released, or, when already started, run to its end on the worker).
    """

    def __init__(self, runner, data, worker, n_batches, steps):
        self._runner, self._data, self._worker = runner, data, worker
        self.n_batches, self._steps = n_batches, steps
        self.extra = None
        # what the client does while the group steps (set by the groups' generator)
        self.while_waiting = None
        # the next group of the epoch (set by the groups' generator)
        self.successor = None
        # this group's step, queued behind the previous group's, and the
        # parameters that previous group returned (set by that group)
        self._queued = None
        self._queued_after = None

    def run_steps(self, x, optimizer, losses):
        runner = self._runner
        if runner._client is None:
            x, state, group_losses, finite, self.extra = _step_group(
                self._data, x, optimizer, self._steps)
        else:
            if self._queued is not None and np.array_equal(x, self._queued_after):
                future = self._queued
            else:
                future = runner.submit_step(self._data, self._worker, self._steps,
                                            (x, optimizer, [], True, None))
            self._queued = self._queued_after = None
            following = self.successor
            if following is not None:
                following._queued = runner.submit_step(following._data, following._worker,
                                                       following._steps, future)
            if self.while_waiting is not None:
                self.while_waiting()
            # A Ctrl-C while waiting leaves x and the optimiser as they were
            # before this group: the last consistent state.
            x, state, group_losses, finite, self.extra = runner.wait(future)
            if following is not None:
                # a copy: the parameters may be changed in place before they
                # come back (an epoch's callback editing components_)
                following._queued_after = x.copy()
        optimizer.load_state(state)
        losses.extend(group_losses)
        self._data = None  # the group's futures are released with their last reference
        self.successor = None
        return x, finite


# -- NCA and LMNN ------------------------------------------------------------
def _neighbor_group(X_rows, entries, labels, *local_args, make_objective,
                    n_samples, mean):
    """On a worker: the batch objective over the gathered rows, and the data
    of the group's minibatches.

    The objective is the in-memory one over the gathered rows ``X_rows``
    (row r is the r-th of the group's distinct rows in row order), with the
    mean and the row count of
    the whole data: each minibatch's data are then those of the in-memory
    fit (indices map monotonically, so sortedness and the exclusion of a
    point's own copies are kept).
    """
    objective = make_objective(X_rows, labels, *local_args, mean=mean)
    objective.n_samples = n_samples  # LMNN's impostor scale counts every row
    # each minibatch needs its rows, then its candidates (then LMNN's targets)
    return objective, [objective.batch(local[:b], local[b:b + n_drawn])
                       for (b, n_drawn), local in entries]


class _NeighborSteps:
    """``steps`` of :func:`_step_group` for NCA and LMNN: ``make_fun(objective,
    data)`` is the learner's minibatch function, as in memory."""

    def __init__(self, make_fun, n_jobs):
        self.make_fun, self.n_jobs = make_fun, n_jobs

    def __call__(self, group, n_threads):
        objective, batches = group
        objective.n_threads = n_threads
        for data in batches:
            yield self.make_fun(objective, data), float(data.b)

    def extra(self, group):
        return getattr(group[0], "n_active", None)


class DaskNeighborObjective:
    """An NCA or LMNN minibatch objective over a row-chunked dask array.

    The interface of :class:`fastmetric._core.objectives.neighbor_batches.NCABatchObjective`
    that :class:`fastmetric._core.minibatch_learner.MinibatchNeighborsMixin`
    uses (``n_samples``, ``minibatches(specs, make_fun)``, and ``n_active``
    for LMNN); see the module docstring for where the work runs.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        float32 or float64, one chunk across the columns.
    labels : ndarray of shape (n_samples,)
        Class labels, or MLKR's real targets.
    objective_class : type
        ``NCABatchObjective``, ``LMNNBatchObjective`` or ``MLKRBatchObjective``.
    mean : ndarray of shape (n_features,)
        Subtracted from the gathered rows (:func:`dask_row_mean`).
    targets : ndarray of shape (n_samples, K), optional
        LMNN's target neighbours (row indices, -1 in unused slots).
    mu : float, optional
        LMNN's push weight.
    n_jobs : int or None
        Threads of the steps, resolved on the worker that takes them.
    """

    def __init__(self, X, labels, objective_class, mean, targets=None, mu=None, n_jobs=None):
        self._batches = _Minibatches(X)
        self.n_samples = X.shape[0]
        self.dtype = np.dtype(X.dtype)
        # class labels (intp), or MLKR's real targets (float64) in their place
        self.labels = np.ascontiguousarray(labels, dtype=objective_class._label_dtype)
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

    def minibatches(self, specs, make_fun, following=None):
        """The minibatches ``(rows, drawn)`` of ``specs``, in groups stepped on
        the workers (``make_fun(objective, data)`` as in memory); with
        ``following``, the next epoch's specs are read ahead
        (:meth:`_Minibatches.groups`)."""
        def with_rows(specs):
            for rows, drawn in specs:
                need = [rows, drawn]
                if self.targets is not None:
                    T = self.targets[rows]
                    need.append(T[T >= 0].astype(np.intp))
                yield np.concatenate(need), (rows.shape[0], drawn.shape[0])

        # The builder carries this object's constants, not the dask array.
        for group in self._batches.groups(
                with_rows(specs), _GroupBuilder(self), self._extra,
                _NeighborSteps(make_fun, self._n_jobs),
                None if following is None else lambda: with_rows(following())):
            yield group
            if group.extra is not None:
                self.n_active = group.extra


class _GroupBuilder:
    """Picklable ``build`` of :meth:`_Minibatches.groups` for the neighbour
    objectives (carries the constants, not the dask array)."""

    def __init__(self, owner):
        self.make_objective = owner._class
        self.n_samples = owner.n_samples
        self.mean = owner._mean

    def __call__(self, X_rows, entries, labels, *local_args):
        return _neighbor_group(X_rows, entries, labels, *local_args,
                               make_objective=self.make_objective, n_samples=self.n_samples,
                               mean=self.mean)


# -- LDML --------------------------------------------------------------------
class _PairMinibatch:
    """One LDML minibatch on a worker: its pairs into the group's rows, targets
    and weights, and the kernel's pair problem over them, built with the group
    (the problem does not travel between processes; these arrays do, and the
    problem is rebuilt, if the group has to be stepped on another worker).

    The problem is the in-memory one, with the group's rows standing for X:
    it works on the rows its pairs use only, taken in the same (sorted)
    order as in memory.
    """

    def __init__(self, X_rows, a, b, targets, weights, weight):
        self.X_rows, self.a, self.b = X_rows, a, b
        self.targets, self.weights, self.weight = targets, weights, weight
        self._problem = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_problem"] = None
        return state

    def problem(self):
        if self._problem is None:
            self._problem = PairLossProblem(self.X_rows, self.a, self.b, self.targets,
                                            self.weights)
        return self._problem


def _pair_group(X_rows, entries):
    """On a worker: the group's minibatches over its rows, with their pair
    problems built ahead of the steps (while the worker would wait for the
    solver state anyway)."""
    out = []
    for (targets, weights, weight), local in entries:
        n_pairs = targets.shape[0]
        minibatch = _PairMinibatch(X_rows, local[:n_pairs], local[n_pairs:], targets, weights,
                                   weight)
        minibatch.problem()
        out.append(minibatch)
    return out


class _PairSteps:
    """``steps`` of :func:`_step_group` for LDML: ``make_fun(problem,
    n_threads=...)`` is the learner's minibatch function, as in memory."""

    def __init__(self, make_fun, n_jobs):
        self.make_fun, self.n_jobs = make_fun, n_jobs

    def __call__(self, group, n_threads):
        for minibatch in group:
            yield self.make_fun(minibatch.problem(), n_threads=n_threads), minibatch.weight

    def extra(self, group):
        return None


class DaskPairBatches:
    """LDML minibatches of index pairs into a row-chunked dask array.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
    n_jobs : int or None
        Threads of the steps, resolved on the worker that takes them.
    """

    def __init__(self, X, n_jobs=None):
        self._batches = _Minibatches(X)
        self.dtype = X.dtype
        self.n_jobs = n_jobs

    def minibatches(self, specs, make_fun, following=None):
        """The minibatches ``(a, b, targets, weights)`` of ``specs`` whose
        weight is positive (the others are skipped, as in memory), in groups
        stepped on the workers with ``make_fun(problem, n_threads=...)``;
        with ``following``, the next epoch's specs are read ahead
        (:meth:`_Minibatches.groups`)."""
        def with_rows(specs):
            for a, b, targets, weights in specs:
                weight = float(a.shape[0] if weights is None else weights.sum())
                if not weight > 0:
                    continue
                # the pairs' rows: a then b
                yield np.concatenate([a, b]), (targets, weights, weight)

        yield from self._batches.groups(
            with_rows(specs), _pair_group, lambda uniq: (), _PairSteps(make_fun, self.n_jobs),
            None if following is None else lambda: with_rows(following()))
