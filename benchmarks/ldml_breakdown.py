"""Where the time of one LDML log-loss evaluation goes.

Same problem as ``compare_kernels.py`` (n = 200,000, d = k = 64,
P = 1,000,000 pairs, float64, 2 threads by default, the same data).  Prints
the median time of each stage of ``fastmetric.pairwise.ldml_loss``, each
timed on its own:

* validation of the pairs (the parallel split into two index columns);
* building the pair index (``PairLossProblem``);
* mapping the rows, U = X L^T (GEMMs chunk by chunk, into a reused array);
* one evaluation without the gradient (mapping + the point pass);
* one evaluation with the gradient (adds H^T X, chunk by chunk);
* the whole call;
* where the CPU has AVX-512F, the mapping and the two evaluations again with
  BLAS doing the products instead of the small-GEMM kernels;
* the evaluation without the gradient on the same number of pairs among the
  first 2,000 points only, whose mapped rows (1 MB) stay in cache: the cost
  of the point pass's arithmetic without its random reads from memory;

and, as yardsticks, the GEMM rate on the mapping's shape and on a large
square product (so "how far from the BLAS peak" is measured, not assumed).
The difference of two stages is the cost of what one adds to the other.

Run (unset the two OpenBLAS variables this workplace sets, as for the
comparison scripts)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ldml_breakdown.py
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from _report import (  # also puts fastmetric on sys.path
    add_size_options,
    fmt_time,
    median_time,
    nonnegative_int,
    positive_int,
    print_environment,
    print_rows,
)
from compare_kernels import FULL, QUICK, make_data

# The sizes this script takes from compare_kernels.py (the rest there are
# for kernels not timed here), and what each counts.
SIZES = {"n": "points", "d": "features", "k": "rows of L", "pairs": "index pairs",
         "repeat": "timed calls per stage"}
# The labels of compare_kernels.py's default data (both its size sets).
CLUSTERS = FULL["clusters"]


def parse_args(argv=None):
    """Options and sizes: ``(args, {"n": ..., "repeat": ...})``."""
    p = argparse.ArgumentParser(
        description="Where the time of one LDML log-loss evaluation goes, stage by stage, "
                    "on compare_kernels.py's data (see the module docstring)."
    )
    resolve_sizes = add_size_options(p, {key: FULL[key] for key in SIZES},
                                     {key: QUICK[key] for key in SIZES}, SIZES)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--threads", type=positive_int, default=2,
                   help="n_jobs for fastmetric, BLAS threads for numpy (default 2)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the data (default 0)")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = p.parse_args(argv)

    cfg = resolve_sizes(args)
    if args.n < 2:
        p.error(f"--n must be at least 2 (every pair joins two different points), got {args.n}")
    if args.pairs < 2:
        p.error(f"--pairs must be at least 2, got {args.pairs}")
    args.dtype = np.dtype(args.dtype)
    # What compare_kernels.make_data reads besides the options above.
    args.clusters = min(CLUSTERS, args.n)
    args.only = ["ldml"]
    return args, cfg


def gemm_rate(m, k, n, threads, dtype, repeat=5):
    """GFLOP/s of numpy's A (m x k) @ B (k x n) in ``dtype`` under ``threads`` BLAS threads."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    with threadpool_limits(threads):
        t = median_time(lambda: A @ B, repeat)
    return 2.0 * m * k * n / t / 1e9


def main(argv=None):
    args, cfg = parse_args(argv)
    from fastmetric.kernels import smallgemm as _smallgemm
    from fastmetric.kernels.distances import _transform_f32, _transform_f64
    from fastmetric._core.objectives.pair_loss import PairLossProblem
    from fastmetric._core.threads import single_threaded_blas
    from fastmetric._core.validation import check_index_pairs
    from fastmetric._core.workspace import empty_aligned
    from fastmetric.pairwise import ldml_loss

    print_environment(args.threads)
    data = make_data(args)
    X, L, pairs, y, bias = data["X"], data["L"], data["pairs"], data["y"], data["bias"]
    n, jobs, repeat = X.shape[0], args.threads, cfg["repeat"]
    y_float = y.astype(np.float64)
    a, b = check_index_pairs(pairs, n, "pairs", n_threads=jobs)
    problem = PairLossProblem(X, a, b, y_float, n_threads=jobs)

    # Into one output array, as the evaluations reuse theirs (a new 100 MB
    # array per call would add the zeroing of its pages).
    U = empty_aligned((n, args.k), X.dtype)
    transform_into = _transform_f32 if X.dtype == np.float32 else _transform_f64

    def transform():
        with single_threaded_blas():
            transform_into(X, L, U, 256, jobs, False)

    def with_blas(fn):
        """fn run with the BLAS products instead of the small-GEMM kernels."""
        def run():
            _smallgemm._set_small_gemm(False)
            try:
                fn()
            finally:
                _smallgemm._set_small_gemm(True)
        return run

    # The same pairs folded onto the first 2,000 points: the point pass
    # without memory traffic.
    n_small = min(n, 2000)
    small = PairLossProblem(np.ascontiguousarray(X[:n_small]), a % n_small, b % n_small,
                            y_float, n_threads=jobs)
    def evaluate():
        return problem.loss_grad(L, bias, jobs)

    def evaluate_no_grad():
        return problem.loss_grad(L, bias, jobs, compute_gradient=False)

    stages = [
        ("validate pairs", lambda: check_index_pairs(pairs, n, "pairs", n_threads=jobs)),
        ("build pair index", lambda: PairLossProblem(X, a, b, y_float, n_threads=jobs)),
        ("map rows U = X L^T", transform),
        ("evaluate, no gradient", evaluate_no_grad),
        ("evaluate with gradient", evaluate),
        ("whole ldml_loss call", lambda: ldml_loss(X, pairs, y_float, L, bias, n_jobs=jobs)),
        (f"evaluate, no gradient, {n_small:,} points (in cache)",
         lambda: small.loss_grad(L, bias, jobs, compute_gradient=False)),
    ]
    if _smallgemm._set_small_gemm(True):
        # The same products by BLAS, for comparison.
        stages += [
            ("map rows, BLAS", with_blas(transform)),
            ("evaluate, no gradient, BLAS", with_blas(evaluate_no_grad)),
            ("evaluate with gradient, BLAS", with_blas(evaluate)),
        ]
    print(f"sizes: n={n:,} d={args.d} k={args.k} pairs={args.pairs:,} dtype={X.dtype.name} "
          f"threads={jobs} repeat={repeat} (median after 2 warm-ups)\n")
    # Two rounds, the second reported: in a new process the first calls that
    # allocate new memory can be 10x slower for a while (seen here for the
    # first dozen pair validations, 19 ms instead of 1.3 ms), until the
    # system hands out huge pages again.
    for _ in range(2):
        body = [[name, fmt_time(median_time(fn, repeat))] for name, fn in stages]
    print_rows(["stage", "median time"], body, args.markdown)

    mapping = gemm_rate(n, args.d, args.k, jobs, X.dtype)
    square = gemm_rate(3000, 3000, 3000, jobs, X.dtype)
    print(f"\nnumpy {X.dtype.name} GEMM at {jobs} thread(s): {mapping:.0f} GFLOP/s on ({n:,} x {args.d}) @ "
          f"({args.d} x {args.k}), {square:.0f} GFLOP/s on 3000 x 3000 squares")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"(ran in {time.perf_counter() - t0:.0f} s)")
