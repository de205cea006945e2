#!/usr/bin/env python
"""LDML_Supervised on a dask array (LocalCluster) against the in-memory fit.

In one run, on the same synthetic float32 data (``--rows`` x ``--features``,
10 classes, default 4,000,000 x 64 = 1 GB), generated on the workers as a
row-chunked dask array (``--chunk-rows`` rows per block) and persisted
there:

* **dask**: ``LDML_Supervised(max_iter=--iterations, tol=0)`` fitted on the
  dask array through a ``dask.distributed`` client of a
  ``LocalCluster(n_workers=--workers, threads_per_worker=1,
  processes=True)``: the loss and gradient of each evaluation are summed
  over the blocks on the workers;
* **in memory**: the same estimator (``n_jobs=--threads``) fitted on the
  same rows gathered into one numpy array, after the cluster is closed (so
  that the two do not share the cores).

Reported: the time per L-BFGS iteration (fit time minus set-up, divided by
the iterations; set-up = everything before the first iteration: pair
sampling, the initial map, building the per-block problems) and the ratio
dask / in memory, with the largest difference between the two learned
maps.  The goal of issue 6: ratio <= 1.5.  To run the same code on a real
cluster, start a scheduler and workers there and pass ``--scheduler
tcp://host:8786`` (the data are then generated on that cluster's workers).

Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_dask.py
"""
import argparse
import sys
import time
import warnings

import numpy as np

from _report import (  # (also puts fastmetric on sys.path)
    nonnegative_int,
    positive_int,
    print_rows,
)


def make_data(da, n, d, chunk, seed):
    rng = da.random.default_rng(seed)
    y = rng.integers(0, 10, n, chunks=chunk)
    means = np.random.default_rng(seed).standard_normal((10, d)).astype(np.float32) * 0.3
    noise = rng.standard_normal((n, d), chunks=(chunk, d), dtype=np.float32)
    X = noise + y.map_blocks(lambda lab: means[lab], dtype=np.float32, new_axis=1,
                             chunks=(y.chunks[0], (d,)))
    return X, y


def timed_fit(estimator, X, y):
    stamps = []

    def record(est, iteration, loss):
        stamps.append(time.perf_counter())

    estimator.set_params(callback=record)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        estimator.fit(X, y)
        total = time.perf_counter() - t0
    per_iter = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else total
    return total, stamps[0] - t0, per_iter, len(stamps), estimator


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="LDML_Supervised on dask vs in memory "
                                            "(see the module docstring).")
    p.add_argument("--rows", type=positive_int, default=4_000_000)
    p.add_argument("--features", type=positive_int, default=64)
    p.add_argument("--chunk-rows", type=positive_int, default=500_000)
    p.add_argument("--n-pairs", type=positive_int, default=None,
                   help="pairs (default: LDML_Supervised's, min(20 n, 200000))")
    p.add_argument("--iterations", type=positive_int, default=20)
    # 0 workers: the LocalCluster starts none and the first computation
    # waits for one forever.
    p.add_argument("--workers", type=positive_int, default=2)
    p.add_argument("--threads", type=positive_int, default=2, help="in-memory n_jobs (default 2)")
    p.add_argument("--scheduler", help="address of an existing dask scheduler")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--markdown", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import dask.array as da
    from distributed import Client, LocalCluster

    from fastmetric import LDML_Supervised

    params = dict(n_pairs=args.n_pairs, max_iter=args.iterations, tol=0.0, random_state=0)
    if args.scheduler:
        cluster, client = None, Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    print(f"dask cluster: {client}")
    X, y = make_data(da, args.rows, args.features, args.chunk_rows, args.seed)
    X, y = client.persist([X, y])
    y_local = y.compute()
    t_dask = timed_fit(LDML_Supervised(**params), X, y_local)
    X_local = X.compute()
    client.close()
    if cluster is not None:
        cluster.close()
    params["n_jobs"] = args.threads
    t_mem = timed_fit(LDML_Supervised(**params), X_local, y_local)
    L_dask, L_mem = t_dask[4].components_, t_mem[4].components_
    diff = float(np.abs(L_dask - L_mem).max() / np.abs(L_mem).max())

    print(f"\nLDML_Supervised(max_iter={args.iterations}, tol=0) on {args.rows:,} x "
          f"{args.features} float32 ({4 * args.rows * args.features / 1e9:.2f} GB), "
          f"blocks of {args.chunk_rows:,} rows")
    head = ["fit", "total", "set-up", "per L-BFGS iteration", "iterations"]
    body = [[f"dask ({args.workers} workers x 1 thread)", f"{t_dask[0]:.1f} s",
             f"{t_dask[1]:.1f} s", f"{1e3 * t_dask[2]:.1f} ms", str(t_dask[3])],
            [f"in memory (n_jobs={args.threads})", f"{t_mem[0]:.1f} s", f"{t_mem[1]:.1f} s",
             f"{1e3 * t_mem[2]:.1f} ms", str(t_mem[3])]]
    print_rows(head, body, args.markdown)
    ratio = t_dask[2] / t_mem[2]
    print(f"\ntime per iteration, dask / in memory: {ratio:.2f} (goal <= 1.5: "
          f"{'met' if ratio <= 1.5 else 'MISSED'}); largest difference of the maps, "
          f"relative to the largest entry: {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
