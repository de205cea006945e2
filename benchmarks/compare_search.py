#!/usr/bin/env python
"""Exact k-nearest-neighbour search in a learned metric: fastmetric against
scikit-learn, faiss-cpu and the GEMM floor, all timed in the same run.

The problem (sizes fixed in the script; ``--quick`` shrinks them): 10,000
query rows and 200,000 database rows, d = 64, float32, under a 64 x 64 map
L, the 10 nearest of each query, ``--threads`` 2.  Timed several times
(median, min and max reported):

* fastmetric: ``MahalanobisNeighbors(n_neighbors=10, metric=L).fit(X_db)``
  then ``kneighbors(X_q)``: the time includes mapping both sets through L
  and packing the database ("fit + query"); the query alone is also shown;
* scikit-learn ``NearestNeighbors(algorithm='brute')`` on the rows mapped
  beforehand (mapping not timed), fit + kneighbors, BLAS held to the
  threads;
* faiss-cpu ``IndexFlatL2`` on the mapped rows (add + search; skipped with
  a message when faiss is not installed; float32 only);
* the floor: one GEMM of the same shape, ``Q Z^T`` (n_q x d times d x n)
  into a preallocated output, BLAS held to the threads (for the 1M-row
  database, the same product in row blocks of 50,000 into one reused
  buffer, since the full output would take 40 GB).

Then the same with 1,000,000 database rows (``--skip-big`` leaves it out),
and with float64 (``--skip-float64``); and the approximate back end (hnswlib, ``algorithm='hnsw'``): its
build and query times and its recall@10 against the exact result, on the
Gaussian rows and on clustered rows shaped like learned embeddings (1,000
clusters on a 16-dimensional subspace of R^64, plus noise).

Every method's neighbours are compared with fastmetric's (the fraction of
top-10 index sets that agree; float32 GEMM-based peers may swap near ties).

OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE when it is loaded;
the shared machines set both, which slows numpy, so run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_search.py

``--quick`` runs tiny sizes as a smoke test (its ratios mean nothing);
``--markdown`` prints the tables as markdown for the README.
"""
import argparse
import gc
import os
import statistics
import sys
import time

import numpy as np
from _report import (  # (also puts fastmetric on sys.path)
    OPENBLAS_VARS,
    fmt_time,
    positive_int,
    print_rows,
)
from _report import print_environment as report_environment
from threadpoolctl import threadpool_limits

FULL = {"queries": 10_000, "rows": 200_000, "big_rows": 1_000_000, "d": 64, "k": 10, "repeat": 3,
        "big_repeat": 2, "hnsw_rows": 200_000, "gemm_block": 50_000}
QUICK = {"queries": 500, "rows": 5_000, "big_rows": 20_000, "d": 16, "k": 10, "repeat": 3,
         "big_repeat": 2, "hnsw_rows": 5_000, "gemm_block": 5_000}


def timed(fn, repeat, warmup=1):
    """(median, min, max) wall time of ``repeat`` calls after ``warmup``, and
    the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return (statistics.median(times), min(times), max(times)), out


def agreement(ind, ref):
    """Fraction of queries whose neighbour sets are the same."""
    a = np.sort(np.asarray(ind), axis=1)
    b = np.sort(np.asarray(ref), axis=1)
    return float((a == b).all(axis=1).mean())


def recall(ind, ref):
    """recall@k: the fraction of the exact k neighbours found."""
    hits = [len(np.intersect1d(x, y)) for x, y in zip(ind, ref)]
    return float(np.sum(hits) / np.asarray(ref).size)


def problem(n_q, n, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X_db = rng.standard_normal((n, d), dtype=np.float32).astype(dtype)
    X_q = rng.standard_normal((n_q, d), dtype=np.float32).astype(dtype)
    L = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(dtype)
    return X_q, X_db, L


def clustered_problem(n_q, n, d, seed=0, n_centers=1000, intrinsic=16):
    """Rows shaped like learned embeddings: a mixture of ``n_centers``
    Gaussian clusters on a random ``intrinsic``-dimensional subspace of R^d,
    plus small isotropic noise; queries drawn the same way.  An approximate
    graph index has structure to exploit here, unlike i.i.d. Gaussian rows."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, intrinsic)))[0].T  # (intrinsic, d)
    centers = rng.standard_normal((n_centers, intrinsic)) * 3.0

    def draw(m):
        latent = centers[rng.integers(0, n_centers, m)] + rng.standard_normal((m, intrinsic))
        return (latent @ basis + 0.1 * rng.standard_normal((m, d))).astype(np.float32)

    L = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    return draw(n_q), draw(n), L


def run_case(name, X_q, X_db, L, k, threads, repeat, gemm_block, rows):
    from sklearn.neighbors import NearestNeighbors

    from fastmetric.neighbors import MahalanobisNeighbors

    dtype = X_db.dtype
    n_q, n, d = X_q.shape[0], X_db.shape[0], X_db.shape[1]
    flops = 2.0 * n_q * n * L.shape[0]
    Z_q = np.ascontiguousarray(X_q @ L.T)
    Z_db = np.ascontiguousarray(X_db @ L.T)
    print(f"\n== {name}: {n_q:,} queries x {n:,} rows, d = {d}, {dtype}, k = {k}, "
          f"{threads} threads ==", flush=True)

    def ours():
        nn = MahalanobisNeighbors(n_neighbors=k, metric=L, n_jobs=threads).fit(X_db)
        return nn.kneighbors(X_q)

    (t_fm, lo, hi), (_, ind_fm) = timed(ours, repeat)
    rows.append([name, "fastmetric fit + query", fmt_time(t_fm), f"{fmt_time(lo)} - {fmt_time(hi)}",
                 f"{flops / t_fm / 1e9:.0f}", "1.00", "-"])
    nn = MahalanobisNeighbors(n_neighbors=k, metric=L, n_jobs=threads).fit(X_db)
    (t_q, lo, hi), _ = timed(lambda: nn.kneighbors(X_q), repeat)
    rows.append([name, "fastmetric query only", fmt_time(t_q), f"{fmt_time(lo)} - {fmt_time(hi)}",
                 f"{flops / t_q / 1e9:.0f}", f"{t_q / t_fm:.2f}", "-"])
    nn = None  # free the index before the peers run
    print(f"  fastmetric: {fmt_time(t_fm)} (query only {fmt_time(t_q)})", flush=True)

    def sk():
        with threadpool_limits(threads, user_api="blas"):
            m = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=threads).fit(Z_db)
            return m.kneighbors(Z_q)

    # The peers take seconds per call: no warm-up call (their first call is
    # not slower than the next ones), to keep the run short on a shared machine.
    (t, lo, hi), (_, ind) = timed(sk, repeat, warmup=0)
    rows.append([name, "scikit-learn brute", fmt_time(t), f"{fmt_time(lo)} - {fmt_time(hi)}",
                 f"{flops / t / 1e9:.0f}", f"{t / t_fm:.2f}", f"{agreement(ind, ind_fm):.4f}"])
    print(f"  scikit-learn: {fmt_time(t)}", flush=True)

    if dtype == np.float32:
        try:
            import faiss
        except ImportError:
            print("  faiss-cpu is not installed (pip install faiss-cpu): its row is skipped")
            faiss = None
        if faiss is not None:
            faiss.omp_set_num_threads(threads)

            def fa():
                index = faiss.IndexFlatL2(Z_db.shape[1])
                index.add(Z_db)
                return index.search(Z_q, k)

            (t, lo, hi), (_, ind) = timed(fa, repeat, warmup=0)
            rows.append([name, f"faiss-cpu {faiss.__version__} IndexFlatL2", fmt_time(t),
                         f"{fmt_time(lo)} - {fmt_time(hi)}", f"{flops / t / 1e9:.0f}",
                         f"{t / t_fm:.2f}", f"{agreement(ind, ind_fm):.4f}"])
            print(f"  faiss: {fmt_time(t)}", flush=True)
    else:
        print("  faiss IndexFlatL2 is float32 only: no float64 row")

    block = min(n, gemm_block) if n * n_q * dtype.itemsize > 8.5e9 else n
    C = np.empty((n_q, block), dtype=dtype)

    def gemm():
        with threadpool_limits(threads, user_api="blas"):
            for s in range(0, n, block):
                e = min(n, s + block)
                np.matmul(Z_q, Z_db[s:e].T, out=C[:, :e - s])

    (t, lo, hi), _ = timed(gemm, repeat)
    label = ("SGEMM" if dtype == np.float32 else "DGEMM") + (
        " (floor)" if block == n else f" in blocks of {block:,} rows (floor)")
    rows.append([name, label, fmt_time(t), f"{fmt_time(lo)} - {fmt_time(hi)}",
                 f"{flops / t / 1e9:.0f}", f"{t / t_fm:.2f}", "-"])
    print(f"  GEMM: {fmt_time(t)}", flush=True)
    C = None  # free the GEMM output
    gc.collect()
    return ind_fm


def run_hnsw(X_q, X_db, L, k, threads, exact_ind, rows, data="Gaussian"):
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        print("\nhnswlib is not installed (pip install 'fastmetric[ann]'): no approximate rows")
        return
    from fastmetric.neighbors import MahalanobisNeighbors

    params = {"M": 16, "ef_construction": 200, "ef": 50, "random_state": 0}
    t = time.perf_counter()
    nn = MahalanobisNeighbors(n_neighbors=k, metric=L, algorithm="hnsw", algorithm_params=params,
                              n_jobs=threads).fit(X_db)
    t_build = time.perf_counter() - t
    print(f"  hnsw build (M=16, ef_construction=200): {fmt_time(t_build)}", flush=True)
    for ef in (50, 100, 200):
        nn._index.params["ef"] = ef  # a search parameter: the graph is the same
        t = time.perf_counter()
        ind = nn.kneighbors(X_q, return_distance=False)
        t_query = time.perf_counter() - t
        r = recall(ind, exact_ind)
        rows.append([data, f"M=16, ef_construction=200, ef={ef}", fmt_time(t_build),
                     fmt_time(t_query), f"{r:.4f}"])
        print(f"  hnsw ef={ef}: query {fmt_time(t_query)}, recall@{k} {r:.4f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--skip-big", action="store_true", help="no 1M-row case")
    parser.add_argument("--skip-float64", action="store_true")
    parser.add_argument("--skip-hnsw", action="store_true")
    parser.add_argument("--only-main", action="store_true",
                        help="only the 200k-row float32 case (same as all three --skip-*)")
    args = parser.parse_args(argv)
    if args.only_main:
        args.skip_big = args.skip_float64 = args.skip_hnsw = True
    cfg = QUICK if args.quick else FULL
    if any(os.environ.get(v) for v in OPENBLAS_VARS):
        print("warning: " + ", ".join(OPENBLAS_VARS) + " are set; run under env -u ... "
              "for representative timings", file=sys.stderr)
    report_environment(args.threads)
    from fastmetric.kernels.neighbors import _panels_in_use

    print(f"search path: {'AVX-512 panels' if _panels_in_use() else 'BLAS tiles'}")
    head = ["case", "method", "median", "min - max", "GFLOP/s", "time / fastmetric",
            "same top-k as fastmetric"]
    rows = []
    k, threads = cfg["k"], args.threads
    X_q, X_db, L = problem(cfg["queries"], cfg["rows"], cfg["d"], np.float32)
    exact = run_case(f"{cfg['rows'] // 1000}k rows float32", X_q, X_db, L, k, threads,
                     cfg["repeat"], cfg["gemm_block"], rows)
    hnsw_rows = []
    if not args.skip_hnsw:
        print(f"\n== hnswlib on the same problem ({cfg['hnsw_rows']:,} rows) ==", flush=True)
        run_hnsw(X_q, X_db[:cfg["hnsw_rows"]], L, k, threads,
                 exact if cfg["hnsw_rows"] == cfg["rows"] else
                 __import__("fastmetric").neighbors.kneighbors(
                     X_q, X_db[:cfg["hnsw_rows"]], k, metric=L, return_distance=False),
                 hnsw_rows)
        print(f"\n== hnswlib on clustered rows ({cfg['hnsw_rows']:,}, 1000 clusters on a "
              f"16-dimensional subspace) ==", flush=True)
        C_q, C_db, C_L = clustered_problem(cfg["queries"], cfg["hnsw_rows"], cfg["d"])
        from fastmetric.neighbors import kneighbors as exact_kneighbors

        run_hnsw(C_q, C_db, C_L, k, threads,
                 exact_kneighbors(C_q, C_db, k, metric=C_L, return_distance=False, n_jobs=threads),
                 hnsw_rows, data="clustered")
        del C_q, C_db
    if not args.skip_float64:
        run_case(f"{cfg['rows'] // 1000}k rows float64", X_q.astype(np.float64),
                 X_db.astype(np.float64), L.astype(np.float64), k, threads, cfg["big_repeat"],
                 cfg["gemm_block"], rows)
    del X_db
    gc.collect()
    if not args.skip_big:
        X_q, X_db, L = problem(cfg["queries"], cfg["big_rows"], cfg["d"], np.float32, seed=1)
        run_case(f"{cfg['big_rows'] // 1000}k rows float32", X_q, X_db, L, k, threads,
                 cfg["big_repeat"], cfg["gemm_block"], rows)
    print()
    print_rows(head, rows, args.markdown)
    if hnsw_rows:
        print()
        print_rows(["data", "hnswlib (algorithm='hnsw')", "build", "query", f"recall@{k}"],
                   hnsw_rows,
                   args.markdown)
    if hasattr(os, "getloadavg"):
        print("\nload average at the end (1, 5, 15 min): "
              + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
