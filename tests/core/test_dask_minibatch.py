"""The minibatch solvers (Adam/SGD of LDML, NCA and LMNN) on dask arrays: the
same model bitwise on a 2-worker LocalCluster and without a cluster, the
in-memory model up to the order of the sums, groups of minibatches stepped
in turn on the workers that hold their rows."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastmetric._core.dask_minibatch as fm_minibatch  # noqa: E402
import fastmetric._core.dask_support as fm_dask  # noqa: E402
from fastmetric import LDML, LMNN, MLKR, NCA, LDML_Supervised  # noqa: E402
from fastmetric._core.rows import distinct_indices  # noqa: E402
from fastmetric._core.sampling import sample_pairs  # noqa: E402
from fastmetric._core.solvers import StochasticOptimizer, run_epoch  # noqa: E402

from .._dask_cluster import DASK_MARKS, labelled_rows  # noqa: E402  (the client fixture: conftest.py)

pytestmark = DASK_MARKS


@pytest.fixture
def small_groups(monkeypatch):
    """Several groups per epoch, stepped on both workers, on small data."""
    monkeypatch.setattr(fm_minibatch, "GROUP_BYTES", 700 * 5 * 8)  # 700 float64 rows


def data(n=1200, d=5, seed=0, dtype=np.float64):
    return labelled_rows(n, d, 3, seed, dtype)


def fit_both(make, X, y, monkeypatch, **fit_kw):
    """The fit on the 2-worker cluster, then without any cluster (Dask's
    synchronous scheduler in this process)."""
    Xd = da.from_array(X, chunks=(350, X.shape[1]))
    on_cluster = make().fit(Xd, y, **fit_kw)
    with monkeypatch.context() as m:
        m.setattr(fm_dask, "_distributed_client", lambda: None)
        m.setattr(fm_minibatch, "_distributed_client", lambda: None)
        alone = make().fit(Xd, y, **fit_kw)
    return on_cluster, alone


def assert_same_fit(a, b):
    assert_array_equal(a.components_, b.components_)
    assert a.loss_curve_ == b.loss_curve_
    assert a.n_iter_ == b.n_iter_


def close(dtype):
    # The steps are the in-memory ones on the same rows; the data's mean (NCA,
    # LMNN) and LDML's initial scale are summed per block on Dask: the models
    # differ from the in-memory ones by that rounding, carried over a few steps.
    return dict(rtol=1e-6, atol=1e-8) if dtype == np.float64 else dict(rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nca_adam_same_model_with_any_cluster(client, monkeypatch, small_groups, dtype):
    X, y = data(dtype=dtype)

    def make():
        return NCA(solver="adam", batch_size=300, n_candidates=150, max_iter=3,
                   random_state=0, n_components=3)

    on_cluster, alone = fit_both(make, X, y, monkeypatch)
    assert_same_fit(on_cluster, alone)
    assert on_cluster.components_.dtype == np.float64 and on_cluster.n_iter_ == 3
    mem = make().fit(X, y)
    assert_allclose(on_cluster.components_, mem.components_, **close(dtype))
    assert_allclose(on_cluster.loss_curve_, mem.loss_curve_, **close(dtype))


def test_lmnn_sgd_same_model_with_any_cluster(client, monkeypatch, small_groups):
    X, y = data(seed=1)

    def make():
        return LMNN(solver="sgd", batch_size=250, n_candidates=200, max_iter=2,
                    learning_rate=1e-4, target_block_size=500, random_state=0)

    on_cluster, alone = fit_both(make, X, y, monkeypatch)
    assert_same_fit(on_cluster, alone)
    assert on_cluster.n_active_ == alone.n_active_ > 0
    mem = make().fit(X, y)
    assert_allclose(on_cluster.components_, mem.components_, **close(np.float64))
    assert_allclose(on_cluster.loss_curve_, mem.loss_curve_, **close(np.float64))
    assert on_cluster.n_active_ == mem.n_active_


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlkr_adam_same_model_with_any_cluster(client, monkeypatch, small_groups, dtype):
    """MLKR's real targets travel with the rows as NCA's labels do."""
    X, _ = data(seed=5, dtype=dtype)
    y = X[:, 0] - 2.0 * X[:, 1] + 0.1 * np.random.RandomState(0).randn(X.shape[0])

    def make():
        return MLKR(solver="adam", batch_size=300, n_candidates=150, max_iter=3,
                    random_state=0, n_components=3)

    on_cluster, alone = fit_both(make, X, y, monkeypatch)
    assert_same_fit(on_cluster, alone)
    assert on_cluster.n_iter_ == 3 and np.all(np.isfinite(on_cluster.components_))
    mem = make().fit(X, y)
    assert_allclose(on_cluster.components_, mem.components_, **close(dtype))
    assert_allclose(on_cluster.loss_curve_, mem.loss_curve_, **close(dtype))
    # partial_fit on dask blocks, as on their numpy rows
    Xd = da.from_array(X, chunks=(350, X.shape[1]))
    dist, local = MLKR(solver="adam", random_state=0), MLKR(solver="adam", random_state=0)
    for rows in (slice(0, 600), slice(600, 1200)):
        dist.partial_fit(Xd[rows], y[rows])
        local.partial_fit(X[rows], y[rows])
    assert dist.n_iter_ == local.n_iter_ == 2
    assert_allclose(dist.components_, local.components_, **close(dtype))


def test_mlkr_on_a_dask_array_checks_its_targets(client):
    X, _ = data(n=50)
    Xd = da.from_array(X, chunks=(25, X.shape[1]))
    with pytest.raises(ValueError, match="real-valued targets"):
        MLKR(solver="adam").fit(Xd, np.array(["a", "b"] * 25))
    with pytest.raises(ValueError, match="NaN"):
        MLKR(solver="adam").fit(Xd, np.r_[np.nan, np.ones(49)])
    with pytest.raises(ValueError, match="stochastic solvers only"):
        MLKR(solver="lbfgs").fit(Xd, np.ones(50))


def test_ldml_supervised_adam_same_model_with_any_cluster(client, monkeypatch, small_groups):
    X, y = data(seed=2)

    def make():
        return LDML_Supervised(solver="adam", n_pairs=2000, batch_size=700, max_iter=3,
                               random_state=0)

    on_cluster, alone = fit_both(make, X, y, monkeypatch)
    assert_same_fit(on_cluster, alone)
    assert on_cluster.bias_ == alone.bias_
    mem = make().fit(X, y)
    assert_allclose(on_cluster.components_, mem.components_, **close(np.float64))
    assert_allclose(on_cluster.bias_, mem.bias_, **close(np.float64))
    # partial_fit on a dask block, rows normalised lazily
    Xd = da.from_array(X, chunks=(350, X.shape[1]))
    dist = LDML_Supervised(solver="adam", normalize=True, random_state=0)
    local = LDML_Supervised(solver="adam", normalize=True, random_state=0)
    for rows in (slice(0, 600), slice(600, 1200)):
        dist.partial_fit(Xd[rows], y[rows])
        local.partial_fit(X[rows], y[rows])
    assert dist.n_iter_ == local.n_iter_ == 2
    assert_allclose(dist.components_, local.components_, **close(np.float64))


def test_ldml_pairs_sgd_with_weights_on_a_dask_preprocessor(client, monkeypatch, small_groups):
    """Fixed pairs into a dask preprocessor, with weights (a minibatch whose
    weights are all 0 is skipped, as in memory), then a partial_fit epoch."""
    X, y = data(n=900, seed=3)
    idx, t = sample_pairs(y, 700, 700, random_state=0)
    w = np.random.RandomState(0).rand(idx.shape[0])
    w[:300] = 0.0
    params = dict(solver="sgd", batch_size=400, max_iter=3, random_state=0,
                  learning_rate=0.005)
    Xd = da.from_array(X, chunks=(300, 5))
    dist = LDML(preprocessor=Xd, **params).fit(idx, 2 * t - 1, sample_weight=w)
    mem = LDML(preprocessor=X, **params).fit(idx, 2 * t - 1, sample_weight=w)
    assert_allclose(dist.components_, mem.components_, **close(np.float64))
    assert_allclose(dist.bias_, mem.bias_, **close(np.float64))
    dist.partial_fit(idx[:500], 2 * t[:500] - 1)
    mem.partial_fit(idx[:500], 2 * t[:500] - 1)
    assert dist.n_iter_ == mem.n_iter_ == 4
    assert_allclose(dist.components_, mem.components_, **close(np.float64))


@pytest.mark.parametrize("make", [
    lambda: NCA(solver="adam", batch_size=300, n_candidates=150, max_iter=3, random_state=0),
    lambda: LDML_Supervised(solver="adam", n_pairs=2000, batch_size=700, max_iter=3,
                            random_state=0)], ids=["NCA", "LDML_Supervised"])
def test_the_last_epoch_reads_no_epoch_ahead(client, monkeypatch, small_groups, make):
    """Every epoch but the last gathers the next one's first groups (and
    queues its first step); after max_iter there is no next epoch to read."""
    X, y = data(seed=4)
    reads_ahead = []
    original_groups = fm_minibatch._Minibatches.groups

    def groups(self, specs, build, extra_of, steps, following=None):
        reads_ahead.append(following is not None)
        return original_groups(self, specs, build, extra_of, steps, following)

    monkeypatch.setattr(fm_minibatch._Minibatches, "groups", groups)
    make().fit(da.from_array(X, chunks=(350, X.shape[1])), y)
    assert reads_ahead == [True, True, False]


def test_nca_and_lmnn_partial_fit_on_dask_blocks(client):
    X, y = data(n=800, seed=4)
    Xd = da.from_array(X, chunks=(300, 5))
    for make in (lambda: NCA(solver="adam", batch_size=200, n_candidates=100,
                             random_state=0),
                 lambda: LMNN(solver="adam", batch_size=200, n_candidates=100,
                              random_state=0)):
        dist, mem = make(), make()
        for rows in (slice(0, 400), slice(400, 800)):
            dist.partial_fit(Xd[rows], y[rows])
            mem.partial_fit(X[rows], y[rows])
        assert dist.n_iter_ == mem.n_iter_ == 2
        assert_allclose(dist.components_, mem.components_, **close(np.float64))


def _record_step_submissions(monkeypatch):
    """A list that gets, per step submitted, whether it starts from the
    previous step's future (queued behind it) rather than from the client."""
    submitted = []
    original_submit = fm_minibatch._Minibatches.submit_step

    def submit_step(self, data, worker, steps, start):
        submitted.append(isinstance(start, distributed.Future))
        return original_submit(self, data, worker, steps, start)

    monkeypatch.setattr(fm_minibatch._Minibatches, "submit_step", submit_step)
    return submitted


def test_groups_are_stepped_in_turn_where_their_rows_are(client, monkeypatch):
    """Group g of minibatches is gathered on and stepped by worker g mod 2; the
    parameters and the optimiser's state travel from group to group (each
    group's step queued behind the one before, the client reading every
    outcome), and the minibatch losses come back in minibatch order."""
    monkeypatch.setattr(fm_minibatch, "GROUP_BYTES", 3 * 16)  # 3 rows
    runner = fm_minibatch._Minibatches(da.from_array(np.arange(40.0).reshape(20, 2),
                                                     chunks=(7, 2)))
    submitted = _record_step_submissions(monkeypatch)
    rows = [np.array([1, 15]), np.array([2]), np.array([3, 8, 19]), np.array([4, 5])]
    groups = _first_column_groups(runner, rows)
    assert [g.n_batches for g in groups] == [2, 1, 1]  # 3 rows, 3 rows, the rest
    optimizer = StochasticOptimizer("sgd", learning_rate=1.0, momentum=0.0)
    x, loss, finite, interrupted = run_epoch(groups, np.zeros(2), optimizer)
    assert_array_equal(x, [4.0, 4.0])
    assert optimizer.n_steps == 4 and finite and not interrupted
    assert loss == (32.0 + 4.0 + 60.0 + 18.0) / 4
    workers = sorted(client.scheduler_info()["workers"])
    assert [g.extra for g in groups] == [workers[0], workers[1], workers[0]]
    # the first step from the client's state, the next two chained
    assert submitted == [False, True, True]


def test_a_non_finite_loss_stops_the_chained_steps(client, monkeypatch):
    """The step queued behind a group that met a non-finite loss takes no
    step: the fit keeps the parameters after the last finite minibatch."""
    monkeypatch.setattr(fm_minibatch, "GROUP_BYTES", 3 * 16)  # 3 rows
    runner = fm_minibatch._Minibatches(da.from_array(np.arange(40.0).reshape(20, 2),
                                                     chunks=(7, 2)))
    rows = [np.array([1, 15]), np.array([2]), np.array([3, 8, 19]), np.array([4, 5])]
    groups = _first_column_groups(runner, rows, stop_at=[3, 8, 19])
    optimizer = StochasticOptimizer("sgd", learning_rate=1.0, momentum=0.0)
    x, loss, finite, interrupted = run_epoch(groups, np.zeros(2), optimizer)
    assert not finite and not interrupted
    assert_array_equal(x, [2.0, 2.0])  # the two minibatches of the first group
    assert optimizer.n_steps == 2 and loss == (32.0 + 4.0) / 2
    # the third group's step, queued behind the second, saw the stop and took none
    x_queued, _, losses, queued_finite, extra = groups[2]._queued.result()
    assert_array_equal(x_queued, [2.0, 2.0])
    assert losses == [] and not queued_finite and extra is None


def test_full_batch_solvers_refuse_dask_arrays(client):
    X, y = data(n=300)
    Xd = da.from_array(X, chunks=100)
    for est in (NCA(solver="lbfgs"), LMNN(solver="gd")):
        with pytest.raises(ValueError, match="stochastic solvers only"):
            est.fit(Xd, y)
    # 'auto' is Adam on a dask array, whatever its size
    est = NCA(solver="auto", max_iter=1, batch_size=100, n_candidates=50,
              random_state=0).fit(Xd, y)
    assert est.n_iter_ == 1
    with pytest.raises(ValueError, match="one label per row"):
        NCA(solver="adam").fit(Xd, y[:-1])


def test_ctrl_c_while_a_group_steps_keeps_the_state_before_it(client, monkeypatch,
                                                               small_groups):
    X, y = data(seed=5)
    Xd = da.from_array(X, chunks=(350, X.shape[1]))
    starts = []
    original_run = fm_minibatch._RelayedGroup.run_steps
    original_wait = fm_minibatch._Minibatches.wait

    def run_steps(self, x, optimizer, losses):
        starts.append(x.copy())
        return original_run(self, x, optimizer, losses)

    def wait(self, future):
        if len(starts) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C came while the client waits
        return original_wait(self, future)

    monkeypatch.setattr(fm_minibatch._RelayedGroup, "run_steps", run_steps)
    monkeypatch.setattr(fm_minibatch._Minibatches, "wait", wait)
    with pytest.warns(UserWarning, match="interrupted"):
        est = NCA(solver="adam", batch_size=300, n_candidates=150, max_iter=3,
                  random_state=0).fit(Xd, y)
    # the parameters the second group would have started from
    assert_array_equal(est.components_.ravel(), starts[1])
    assert not np.array_equal(starts[1], starts[0]) and est.n_iter_ == 0


def _first_column_groups(runner, rows, stop_at=None):
    """Groups whose minibatch losses are the sums of their rows' first column,
    with SGD steps of -1 per minibatch (the loss of the minibatch with the
    rows ``stop_at`` is infinite)."""
    build, steps = _first_column_steps(stop_at)
    return list(runner.groups(iter([(r, r) for r in rows]), build, lambda uniq: (), steps))


def _first_column_steps(stop_at=None):
    """``(build, steps)`` of :meth:`_Minibatches.groups` for
    :func:`_first_column_groups`."""
    def build(X_rows, entries):
        # local: the positions of the minibatch's rows among the group's
        # distinct rows, gathered in row order (row r of X is [2 r, 2 r + 1])
        assert [payload.tolist() for payload, _ in entries] == \
            [(X_rows[local, 0] / 2).tolist() for _, local in entries]
        assert all(local.dtype == np.intp for _, local in entries)
        return [(float(X_rows[local, 0].sum()), payload.tolist() == stop_at)
                for payload, local in entries]

    class Steps:
        n_jobs = 1

        def __call__(self, group, n_threads):
            for total, stop in group:
                # SGD with rate 1 and no momentum: x grows by 1 per minibatch
                yield (lambda x, total=total, stop=stop:
                       (np.inf if stop else total, -np.ones_like(x))), 1.0

        def extra(self, group):
            from distributed import get_worker

            return get_worker().address

    return build, Steps()


@pytest.mark.parametrize("changed", [False, True])
def test_the_next_epochs_first_step_is_queued_behind_this_epochs_last(client, monkeypatch,
                                                                     changed):
    """With the next epoch read ahead, its first group's step is queued behind
    this epoch's last group and used when the solver passes the parameters
    on as they came back; parameters changed in between (in place, as an
    epoch's callback could) are stepped from the client instead."""
    monkeypatch.setattr(fm_minibatch, "GROUP_BYTES", 3 * 16)  # 3 rows
    runner = fm_minibatch._Minibatches(da.from_array(np.arange(40.0).reshape(20, 2),
                                                     chunks=(7, 2)))
    submitted = _record_step_submissions(monkeypatch)
    build, steps = _first_column_steps()
    epochs = [[np.array([1, 15]), np.array([2]), np.array([3, 8, 19])],
              [np.array([4, 5]), np.array([6])]]

    def specs(epoch):
        return iter([(r, r) for r in epochs[epoch]])

    optimizer = StochasticOptimizer("sgd", learning_rate=1.0, momentum=0.0)
    x, loss, finite, _ = run_epoch(
        runner.groups(specs(0), build, lambda uniq: (), steps, following=lambda: specs(1)),
        np.zeros(2), optimizer)
    assert_array_equal(x, [3.0, 3.0])
    assert finite
    if changed:
        x[:] = 10.0
    x, loss, finite, _ = run_epoch(
        runner.groups(iter(()), build, lambda uniq: (), steps), x, optimizer)
    assert finite and optimizer.n_steps == 5
    assert loss == ((8.0 + 10.0) + 12.0) / 2  # rows 4 and 5, then 6: first column 2 r
    if changed:
        assert_array_equal(x, [12.0, 12.0])
        # the queued step left unused; the group stepped from the client's values
        assert submitted == [False, True, True, False]
    else:
        assert_array_equal(x, [5.0, 5.0])
        assert submitted == [False, True, True]


def test_the_next_epoch_is_gathered_while_this_one_steps(monkeypatch):
    """With ``following``, the first groups of the next epoch are gathered
    before this epoch's last group is handed out, and the next call starts
    with them (its own specs are not read)."""
    monkeypatch.setattr(fm_minibatch, "GROUP_BYTES", 2 * 16)  # 2 rows
    monkeypatch.setattr(fm_minibatch, "FIRST_GROUP_ROWS", 2)
    monkeypatch.setattr(fm_minibatch, "_distributed_client", lambda: None)
    runner = fm_minibatch._Minibatches(da.from_array(np.arange(40.0).reshape(20, 2),
                                                     chunks=(7, 2)))
    events = []

    def build(X_rows, entries):
        events.append(("gathered",) + tuple(payload for payload, _ in entries))
        return entries

    def epoch_specs(epoch):
        return iter([(np.array([2 * i, 2 * i + 1]), (epoch, i)) for i in range(3)])

    def never_read():
        raise AssertionError("the specs of a read-ahead epoch were read again")
        yield

    for group in runner.groups(epoch_specs(0), build, lambda uniq: (), None,
                               following=lambda: epoch_specs(1)):
        events.append(("stepped", group.n_batches))
    assert events == [("gathered", (0, 0)), ("gathered", (0, 1)), ("stepped", 1),
                      ("gathered", (0, 2)), ("stepped", 1),
                      ("gathered", (1, 0)), ("stepped", 1), ("gathered", (1, 1))]
    events.clear()
    assert len(list(runner.groups(never_read(), build, lambda uniq: (), None))) == 3
    assert events == [("gathered", (1, 2))]


@pytest.mark.parametrize("dtype, rows_per_group", [(np.float64, 4), (np.float32, 8)])
def test_a_group_holds_group_bytes_of_rows(monkeypatch, dtype, rows_per_group):
    """The groups are cut by the bytes of their rows (GROUP_BYTES), not by a
    row count: twice the rows of float32 as of float64 (wide rows, fewer)."""
    monkeypatch.setattr(fm_minibatch, "GROUP_BYTES", 4 * 2 * 8)  # 4 float64 rows of 2
    monkeypatch.setattr(fm_minibatch, "_distributed_client", lambda: None)
    runner = fm_minibatch._Minibatches(
        da.from_array(np.arange(40, dtype=dtype).reshape(20, 2), chunks=(7, 2)))
    specs = [(np.array([2 * i, 2 * i + 1]), i) for i in range(8)]
    sizes = [group.n_batches for group in runner.groups(
        iter(specs), lambda X_rows, entries: entries, lambda uniq: (), None)]
    # 2 rows per minibatch; the first group of a fit is as large (ramp from 16,384 rows)
    assert sizes == [rows_per_group // 2] * (8 * 2 // rows_per_group)


def test_target_neighbors_of_a_dask_array_are_those_in_memory():
    """LMNN's block target search gathers a dask array's block in one go and
    finds the same targets as from memory."""
    from fastmetric._core.objectives.neighbor_batches import block_target_neighbors, row_mean

    X, y = data(n=700, seed=6)
    mean = row_mean(X)
    for block_size in (None, 250):
        kw = dict(block_size=block_size, seed=3)
        in_memory = block_target_neighbors(X, y, 3, 3, np.eye(5), mean, **kw)
        on_dask = block_target_neighbors(da.from_array(X, chunks=(200, 5)), y, 3, 3,
                                         np.eye(5), mean, **kw)
        assert_array_equal(on_dask[0], in_memory[0])
        assert on_dask[1] == in_memory[1]


@pytest.mark.parametrize("n_rows", [1_000, 100_000])  # the table, then the sort
def test_distinct_indices_is_numpy_unique_with_an_intp_inverse(n_rows):
    rows = np.random.default_rng(0).integers(0, n_rows, 600)
    uniq, inverse = distinct_indices(rows, n_rows)
    expected_uniq, expected_inverse = np.unique(rows, return_inverse=True)
    assert_array_equal(uniq, expected_uniq)
    assert_array_equal(inverse, expected_inverse.reshape(-1))
    assert inverse.dtype == np.intp


def _unaligned_copy(block):
    """``block`` at an odd byte offset of a buffer, as a block received from
    another process can be."""
    raw = np.empty(block.nbytes + 1, dtype=np.uint8)
    out = np.frombuffer(raw.data, dtype=block.dtype, count=block.size, offset=1)
    out = out.reshape(block.shape)
    out[...] = block
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("aligned", [True, False])
def test_group_rows_from_taken_pieces_and_own_blocks_are_the_rows_in_order(aligned):
    """Blocks 0 and 2 held elsewhere (one piece taken from both), 1 and 3 held
    by the group's worker: the group's rows are X[uniq], in row order."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 3)).astype(np.float32)
    bounds = [0, 10, 20, 30, 40]
    blocks = [X[a:b].copy() for a, b in zip(bounds[:-1], bounds[1:])]
    if not aligned:
        blocks = [_unaligned_copy(block) for block in blocks]
    uniq = np.array([1, 4, 9, 12, 15, 22, 23, 29, 31, 38])
    runs = {0: (0, 3), 1: (3, 5), 2: (5, 8), 3: (8, 10)}
    local = {b: (uniq[start:stop] - bounds[b]).astype(np.int32)  # as the client sends them
             for b, (start, stop) in runs.items()}
    taken = fm_minibatch._take_rows([local[0], local[2]], blocks[0], blocks[2])
    got = fm_minibatch._build_group(
        lambda rows, entries: rows, uniq.shape[0], [], (), [taken], [[runs[0], runs[2]]],
        [blocks[1], blocks[3]], [local[1], local[3]], [runs[1], runs[3]])
    assert_array_equal(got, X[uniq])
    assert got.flags.c_contiguous and got.flags.aligned


def test_rows_of_a_block_that_is_not_c_contiguous_are_taken_too():
    X = np.asfortranarray(np.arange(30.0).reshape(10, 3))
    out = np.empty((3, 3))
    fm_minibatch._take_into(out, X, np.array([7, 1, 4]))
    assert_array_equal(out, X[[7, 1, 4]])
