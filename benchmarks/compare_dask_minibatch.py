#!/usr/bin/env python
"""Epoch time of the minibatch solvers on a dask array against in memory.

The data of issue 19: ``make_classification(n_samples=--rows, n_features=64,
n_informative=20, n_classes=10, n_clusters_per_class=2, random_state=0)``
as float32 (default 4,000,000 rows, 1 GB).  For each learner (``--learners``:
``ldml`` = ``LDML_Supervised(solver='adam')``, ``nca`` and ``lmnn`` with
``solver='adam'``), in this order:

* **dask**: the fit on the rows as a row-chunked dask array (``--chunk-rows``
  rows per block) persisted on a ``LocalCluster(n_workers=w,
  threads_per_worker=1, processes=True)``, for each w of ``--workers``
  (default 1 and 2);
* **in memory**: the same estimator on the numpy array, after the clusters
  are closed (so that they do not share the cores).

Both fits use ``n_jobs=--threads`` (default 2): on Dask a group of
minibatches steps on one worker at a time, with that many threads.

Each fit runs ``--epochs`` epochs (``tol=0``); the time per epoch is the
time between the callbacks of the first and the last epoch divided by the
epochs between them (so it leaves out the set-up: input checks, initial
map, LMNN's target search).  The 1-minute load average is printed next to
every figure: on a shared machine other processes take cores too.

Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_dask_minibatch.py
"""
import argparse
import os
import sys
import time

import numpy as np

import compare_dask
from _report import positive_int, print_rows  # also puts fastmetric on sys.path

LEARNERS = ("ldml", "nca", "lmnn")


def make_estimator(name, args, n_jobs=None):
    from fastmetric import LMNN, NCA, LDML_Supervised

    common = dict(max_iter=args.epochs, random_state=0, n_jobs=n_jobs)
    if name == "ldml":
        return LDML_Supervised(solver="adam", tol=0.0, n_iter_no_change=args.epochs + 1,
                               **common)
    if name == "nca":
        return NCA(solver="adam", tol=0.0, n_iter_no_change=args.epochs + 1, **common)
    if name == "lmnn":
        return LMNN(solver="adam", convergence_tol=0.0, n_iter_no_change=args.epochs + 1,
                    target_block_size=args.target_block_size, **common)
    raise ValueError(f"unknown learner {name!r}")


def timed_fit(estimator, X, y):
    """(total, set-up, per epoch, epochs, 1-min load average at the end), the
    times from compare_dask.timed_fit (set-up: until the first epoch ends,
    less one epoch)."""
    total, first, per_epoch, n_epochs, _ = compare_dask.timed_fit(estimator, X, y)
    setup = first - per_epoch if n_epochs > 1 else float("nan")
    return total, setup, per_epoch, n_epochs, os.getloadavg()[0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="minibatch solvers on dask vs in memory "
                                            "(see the module docstring).")
    p.add_argument("--rows", type=positive_int, default=4_000_000)
    p.add_argument("--chunk-rows", type=positive_int, default=500_000)
    p.add_argument("--learners", default="ldml,nca",
                   help="comma-separated: " + ", ".join(LEARNERS) + " (default ldml,nca)")
    p.add_argument("--epochs", type=positive_int, default=2)
    p.add_argument("--workers", default="1,2", help="cluster sizes (default 1,2)")
    p.add_argument("--threads", type=positive_int, default=2, help="in-memory n_jobs (default 2)")
    p.add_argument("--target-block-size", type=positive_int, default=20_000,
                   help="LMNN's target_block_size (default 20000)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    # Both lists are checked here: a bad entry would otherwise fail after
    # the data are made (minutes at the default size), or, for 0 workers,
    # wait for a worker forever.
    args.learners = [s.strip() for s in args.learners.split(",") if s.strip()]
    bad = [s for s in args.learners if s not in LEARNERS]
    if bad or not args.learners:
        p.error(f"--learners: expected a comma-separated subset of {','.join(LEARNERS)}, "
                f"got {','.join(bad) if bad else repr('')}")
    try:
        sizes = [positive_int(w) for w in args.workers.split(",")]
    except argparse.ArgumentTypeError as exc:
        p.error(f"--workers {args.workers}: a cluster size {exc}")
    args.workers = sizes
    return args


def main(argv=None):
    args = parse_args(argv)
    import dask.array as da
    from distributed import Client, LocalCluster
    from sklearn.datasets import make_classification

    learners = args.learners
    t0 = time.perf_counter()
    X, y = make_classification(n_samples=args.rows, n_features=64, n_informative=20,
                               n_classes=10, n_clusters_per_class=2, random_state=0)
    X = X.astype(np.float32)
    print(f"data: {args.rows:,} x 64 float32 ({X.nbytes / 1e9:.2f} GB) in "
          f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    results = {}
    for n_workers in args.workers:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
        client.wait_for_workers(n_workers)
        # The blocks scattered to the workers (not embedded in a graph).
        starts = range(0, X.shape[0], args.chunk_rows)
        Xd = da.concatenate([
            da.from_delayed(client.scatter(X[s:s + args.chunk_rows]),
                            shape=(min(args.chunk_rows, X.shape[0] - s), X.shape[1]),
                            dtype=X.dtype)
            for s in starts])
        for name in learners:
            # The same n_jobs as in memory: a group's steps run on one
            # worker at a time, with the machine's threads.
            results[name, f"dask, {n_workers} worker(s)"] = timed_fit(
                make_estimator(name, args, n_jobs=args.threads), Xd, y)
            print(name, n_workers, "workers:", results[name, f"dask, {n_workers} worker(s)"],
                  flush=True)
        del Xd
        client.close()
        cluster.close()
    for name in learners:
        results[name, f"in memory, n_jobs={args.threads}"] = timed_fit(
            make_estimator(name, args, n_jobs=args.threads), X, y)
        print(name, "in memory:", results[name, f"in memory, n_jobs={args.threads}"],
              flush=True)

    print(f"\n{args.rows:,} x 64 float32, blocks of {args.chunk_rows:,} rows, "
          f"{args.epochs} epochs per fit (load average: other processes share the cores)")
    head = ["learner", "fit", "per epoch", "set-up", "total", "load avg (1 min)",
            "per epoch / in memory"]
    body = []
    for name in learners:
        mem = results[name, f"in memory, n_jobs={args.threads}"][2]
        for (learner, fit), (total, setup, per_epoch, _, load) in results.items():
            if learner == name:
                body.append([name, fit, f"{per_epoch:.2f} s", f"{setup:.1f} s",
                             f"{total:.1f} s", f"{load:.2f}", f"{per_epoch / mem:.2f}"])
    print_rows(head, body, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
