#!/usr/bin/env python
"""Time fastmetric's kernels against straightforward numpy code.

For each kernel the script builds one problem from a fixed seed, checks that
fastmetric and the numpy baseline agree, then reports the MEDIAN wall time of
``--repeat`` calls (after two warm-up calls) of:

* the numpy baseline, with BLAS limited to ``--threads`` threads;
* fastmetric with ``n_jobs=--threads`` (the headline, compared to numpy);
* fastmetric with ``n_jobs=1`` (thread scaling);
* fastmetric on the other floating dtype (float32 vs float64).

Baselines (plain numpy, written here, deliberately the obvious code):

* paired distances: ``(((X[a] - X[b]) @ L.T) ** 2).sum(1)``;
* LDML log-loss and gradient: ``diff = X[a] - X[b]``, ``Z = diff @ L.T``,
  ``D = (Z**2).sum(1)``, ``z = bias - D``; loss = mean(softplus(z) - y z)
  with ``np.logaddexp(0, z)``; with ``g = (expit(z) - y) / P`` the gradient
  is ``-2 (Z * g[:, None]).T @ diff`` in L and ``sum(g)`` in the bias
  (chain rule: dz/dD = -1 and dD/dL = 2 L diff diff^T);
* pair sampling: rejection sampling of uniform (i, j) batches, keeping
  i != j with equal labels (positives) or different labels (negatives);
* pairwise distances: the GEMM expansion ||u||^2 + ||v||^2 - 2 u.v of the
  transformed rows u = L x, v = L y, clipped at 0.

The defaults are the target problem: n = 200,000 points, d = k = 64,
float64, P = 1,000,000 pairs (half positive), 100 clusters, 2 threads; the
pairwise kernel runs on 20,000 x 2,000 rows.  Peak memory is about 3 GB,
dominated by the numpy baselines' (P, d) temporaries.

OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE when it is loaded;
the shared machines set both, which slows numpy, so run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_kernels.py

``--quick`` runs tiny sizes as a smoke test (its ratios mean nothing);
``--markdown`` prints the table as markdown for the README.
"""
import argparse
import gc
import importlib
import sys

import numpy as np
from scipy.special import expit
from threadpoolctl import threadpool_limits

from _report import (  # also puts fastmetric on sys.path
    add_size_options,
    fmt_time,
    median_time,
    nonnegative_int,
    print_closing,
    print_rows,
    warn_if_busy,
    warn_openblas_vars,
)
from _report import print_environment as report_environment

FULL = {"n": 200_000, "d": 64, "k": 64, "pairs": 1_000_000, "clusters": 100, "pw_n": 20_000,
        "pw_m": 2_000, "repeat": 5}
QUICK = {"n": 5_000, "d": 16, "k": 16, "pairs": 20_000, "clusters": 100, "pw_n": 1_000,
         "pw_m": 200, "repeat": 3}

# Speed-up over numpy that each kernel should reach (None: no stated goal).
GOALS = {"paired": 10.0, "ldml": 10.0, "ldml_prepared": 10.0, "sampling": 20.0, "pairwise": None}
KERNELS = ("paired", "ldml", "ldml_prepared", "sampling", "pairwise")

# Relative tolerances of the fastmetric-vs-numpy checks.  Both sides sum in a
# different order, float32 sums of 10^6 terms lose about 1e-4 relatively; the
# absolute part is scaled by the largest reference value because gradient
# entries and GEMM-expanded distances can cancel to near zero.
RTOL = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 2e-3}


# --------------------------------------------------------------------------
# numpy baselines
# --------------------------------------------------------------------------

def numpy_paired(X, a, b, L):
    """Squared distances ||L(x_a - x_b)||^2, the obvious way."""
    return (((X[a] - X[b]) @ L.T) ** 2).sum(1)


def numpy_ldml(X, a, b, y, L, bias):
    """LDML loss (unweighted mean over pairs) and its gradients."""
    diff = X[a] - X[b]
    Z = diff @ L.T
    D = (Z ** 2).sum(1)
    z = bias - D
    n_pairs = z.shape[0]
    # softplus(z) = log(1 + e^z) = logaddexp(0, z): no overflow for large z.
    loss = float(np.sum(np.logaddexp(0, z) - y * z) / n_pairs)
    # d loss / d z_p = (sigmoid(z_p) - y_p) / P; expit is the stable sigmoid.
    g = (expit(z) - y) / n_pairs
    grad_L = -2.0 * (Z * g[:, None]).T @ diff
    grad_bias = float(g.sum())
    return loss, grad_L, grad_bias


def numpy_sample_pairs(labels, n_positive, n_negative, rng, batch=1 << 21):
    """Rejection sampling: draw uniform (i, j) batches and keep the good ones.

    Positives need i != j with equal labels, negatives different labels.
    Returns pairs (P, 2) with a < b (positives first) and y as int8.
    """
    n = labels.shape[0]

    def draw(n_wanted, same):
        kept, have = [], 0
        while have < n_wanted:
            i = rng.integers(0, n, size=batch)
            j = rng.integers(0, n, size=batch)
            li, lj = labels[i], labels[j]
            ok = (li == lj) & (i != j) if same else (li != lj)
            i, j = i[ok], j[ok]
            kept.append(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1))
            have += i.shape[0]
        return np.concatenate(kept)[:n_wanted]

    pairs = np.concatenate([draw(n_positive, True), draw(n_negative, False)])
    y = np.zeros(n_positive + n_negative, dtype=np.int8)
    y[:n_positive] = 1
    return pairs, y


def numpy_pairwise_sq(X, Y, L):
    """Squared distances between all rows of X L^T and Y L^T by GEMM expansion."""
    U = X @ L.T
    V = Y @ L.T
    S = U @ V.T
    S *= -2.0
    S += (U * U).sum(1)[:, None]
    S += (V * V).sum(1)[None, :]
    # Rounding can push ||u - v||^2 = 0 slightly below zero.
    np.maximum(S, 0, out=S)
    return S


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def close(got, ref, rtol):
    """allclose with an absolute tolerance scaled by the reference's size."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return got.shape == ref.shape and bool(np.allclose(got, ref, rtol=rtol, atol=rtol * scale))


def close_ldml(got, ref, rtol):
    return all(close(g, r, rtol) for g, r in zip(got, ref)) and len(got) == len(ref)


def same_result(r1, r2):
    """Bit-identical results (tuples of arrays/floats compared element-wise)."""
    if isinstance(r1, tuple):
        return len(r1) == len(r2) and all(same_result(a, b) for a, b in zip(r1, r2))
    return bool(np.array_equal(np.asarray(r1), np.asarray(r2)))


def valid_sample(pairs, y, labels, n_positive, n_negative):
    """Pairs have the shape/order/labels that sample_pairs documents."""
    pairs = np.asarray(pairs)
    total = n_positive + n_negative
    if pairs.shape != (total, 2) or np.asarray(y).shape != (total,):
        return False
    a, b = pairs[:, 0], pairs[:, 1]
    same = labels[a] == labels[b]
    expected_y = np.r_[np.ones(n_positive, np.int8), np.zeros(n_negative, np.int8)]
    return bool(
        np.all(a < b)
        and np.all(same[:n_positive])
        and not np.any(same[n_positive:])
        and np.array_equal(np.asarray(y).astype(np.int8), expected_y)
    )




def fmt_ratio(r):
    return "-" if r is None else f"{r:.1f}x"


def load(module, name):
    try:
        return getattr(importlib.import_module("fastmetric." + module), name)
    except (ImportError, AttributeError) as exc:
        return exc


# --------------------------------------------------------------------------
# one row per kernel
# --------------------------------------------------------------------------

class Row:
    def __init__(self, kernel, problem):
        self.kernel = kernel
        self.problem = problem
        self.goal = GOALS[kernel]
        self.t_numpy = self.t_fm = self.t_fm1 = self.t_other = None
        self.check = "not run"
        self.note = ""

    @property
    def speedup(self):
        return self.t_numpy / self.t_fm if self.t_numpy and self.t_fm else None

    @property
    def scaling(self):
        return self.t_fm1 / self.t_fm if self.t_fm1 and self.t_fm else None

    @property
    def dtype_ratio(self):
        return self.t_fm / self.t_other if self.t_other and self.t_fm else None

    @property
    def status(self):
        if self.goal is None or self.speedup is None:
            return "n/a"
        return "MET" if self.speedup >= self.goal else "not met"


def run_kernel(kernel, cfg, args, data):
    """Check then time one kernel; returns a Row.

    ``fm(jobs, dt)`` calls fastmetric on the inputs converted to dtype ``dt``
    (conversions are made once, before any timing); ``base()`` is the numpy
    baseline in the main dtype.
    """
    dtype, other, T, repeat = args.dtype, args.other_dtype, args.threads, cfg["repeat"]
    X, L, pairs, y, labels = data["X"], data["L"], data["pairs"], data["y"], data["labels"]
    a, b = pairs[:, 0], pairs[:, 1]
    bias = data["bias"]
    check = close
    row = Row(kernel, f"P={len(a):,}, n={X.shape[0]:,}, d={X.shape[1]}, k={L.shape[0]}")

    def as_dtypes(*arrays):
        return {dt: tuple(arr.astype(dt, copy=False) for arr in arrays) for dt in (dtype, other)}

    if kernel == "paired":
        fn = load("_core.distances", "paired_mahalanobis_distances")
        inputs = as_dtypes(X, L)

        def fm(jobs, dt):
            Xd, Ld = inputs[dt]
            return fn(Xd, pairs, components=Ld, squared=True, n_jobs=jobs)

        def base():
            return numpy_paired(X, a, b, L)

    elif kernel == "ldml":
        fn = load("_core.objectives.pair_loss", "ldml_loss")
        inputs = as_dtypes(X, L)
        y_float = y.astype(np.float64)
        y_dt = y.astype(dtype)  # keeps the numpy baseline in X's dtype

        def fm(jobs, dt):
            Xd, Ld = inputs[dt]
            return fn(Xd, pairs, y_float, Ld, bias, n_jobs=jobs)

        def base():
            return numpy_ldml(X, a, b, y_dt, L, bias)

        check = close_ldml

    elif kernel == "ldml_prepared":
        row.kernel = "ldml (prepared)"
        fn = load("_core.objectives.pair_loss", "PairLossProblem")
        ent = load("_core.threads", "effective_n_threads")
        y_float = y.astype(np.float64)
        y_dt = y.astype(dtype)
        problems = {}
        if not isinstance(fn, Exception):
            a_c, b_c = np.ascontiguousarray(a, np.intp), np.ascontiguousarray(b, np.intp)
            # The pair structure is prepared once per dtype, outside the timed
            # calls, as a learner does before its optimisation loop.
            for dt in (dtype, other):
                problems[dt] = (fn(X.astype(dt, copy=False), a_c, b_c, y_float), L.astype(dt, copy=False))

        def fm(jobs, dt):
            prob, Ld = problems[dt]
            return prob.loss_grad(Ld, bias, ent(jobs))

        def base():
            return numpy_ldml(X, a, b, y_dt, L, bias)

        check = close_ldml

    elif kernel == "sampling":
        n_pos = args.pairs // 2
        n_neg = args.pairs - n_pos
        row.problem = f"P={args.pairs:,} in {args.clusters} clusters of n={labels.shape[0]:,}"
        fn = load("_core.sampling", "sample_pairs")
        other = None  # integer labels only: no floating dtype to compare

        def fm(jobs, dt):
            return fn(labels, n_pos, n_neg, random_state=args.seed, n_jobs=jobs)

        def base():
            return numpy_sample_pairs(labels, n_pos, n_neg, np.random.default_rng(args.seed))

        def check(got, ref, rtol):
            # The random draws differ; both must be valid samples.
            return valid_sample(*got, labels, n_pos, n_neg) and valid_sample(
                *ref, labels, n_pos, n_neg
            )

    elif kernel == "pairwise":
        PX, PY = data["PX"], data["PY"]
        row.problem = f"{PX.shape[0]:,} x {PY.shape[0]:,} rows, d={PX.shape[1]}, k={L.shape[0]}"
        fn = load("_core.distances", "mahalanobis_distances")
        inputs = as_dtypes(PX, PY, L)

        def fm(jobs, dt):
            Xd, Yd, Ld = inputs[dt]
            return fn(Xd, Yd, components=Ld, squared=True, n_jobs=jobs)

        def base():
            return numpy_pairwise_sq(PX, PY, L)

    else:  # pragma: no cover - argparse restricts the names
        raise ValueError(kernel)

    if isinstance(fn, Exception):
        row.check = f"unavailable ({fn})"
        return row

    # ---- correctness first ----------------------------------------------
    with threadpool_limits(limits=T, user_api="blas"):
        ref = base()
    got = fm(T, dtype)
    ok = check(got, ref, RTOL[dtype])
    notes = []
    # The kernels promise results independent of the number of threads.
    deterministic = same_result(fm(1, dtype), got)
    if not deterministic:
        notes.append(f"n_jobs=1 and n_jobs={T} differ")
    # Other dtype: checked against the main reference, at the looser of the
    # two tolerances.
    if other is not None and not check(fm(T, other), ref, max(RTOL[other], RTOL[dtype])):
        notes.append(f"{other.name} result differs from numpy")
    del got, ref
    row.check = ("ok" if ok and not notes else "FAIL")
    row.note = "; ".join(notes)

    # ---- timings (each after two warm-up calls) -------------------------
    with threadpool_limits(limits=T, user_api="blas"):
        row.t_numpy = median_time(base, repeat)
    row.t_fm = median_time(lambda: fm(T, dtype), repeat)
    row.t_fm1 = median_time(lambda: fm(1, dtype), repeat)
    if other is not None:
        row.t_other = median_time(lambda: fm(T, other), repeat)
    return row


# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------

def print_table(rows, args, markdown):
    T, other = args.threads, args.other_dtype.name
    head = [
        "kernel", "problem", "numpy", f"fastmetric ({T} thr)", "speed-up", "goal",
        "status", "fastmetric (1 thr)", f"scaling 1->{T}", f"fastmetric {other}",
        f"{args.dtype.name}/{other}", "check",
    ]
    body = [
        [
            r.kernel, r.problem, fmt_time(r.t_numpy), fmt_time(r.t_fm), fmt_ratio(r.speedup),
            "-" if r.goal is None else f">= {r.goal:g}x", r.status, fmt_time(r.t_fm1),
            fmt_ratio(r.scaling), fmt_time(r.t_other), fmt_ratio(r.dtype_ratio),
            r.check + (f" [{r.note}]" if r.note else ""),
        ]
        for r in rows
    ]
    print_rows(head, body, markdown)


def print_environment(args, cfg):
    report_environment(args.threads)
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        print(f"numpy BLAS: {blas.get('name')} {blas.get('version')}")
    except (TypeError, KeyError, AttributeError) as exc:  # show_config differs across numpy versions
        print(f"numpy BLAS: unknown ({exc})")
    print(f"sizes: n={args.n:,} d={args.d} k={args.k} pairs={args.pairs:,} clusters={args.clusters} "
          f"pairwise={args.pw_n:,}x{args.pw_m:,} dtype={args.dtype.name} threads={args.threads} "
          f"repeat={cfg['repeat']} (median after 2 warm-ups){'  [--quick]' if args.quick else ''}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Median times of fastmetric's kernels vs plain numpy (see module docstring)."
    )
    resolve_sizes = add_size_options(p, FULL, QUICK, {
        "n": "points", "d": "features", "k": "rows of L", "pairs": "index pairs",
        "clusters": "distinct labels", "pw_n": "pairwise: rows of X", "pw_m": "pairwise: rows of Y",
        "repeat": "timed calls per measurement"})
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--threads", type=int, default=2, help="n_jobs for fastmetric, BLAS threads for numpy")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--only", default=",".join(KERNELS),
                   help=f"comma-separated subset of {','.join(KERNELS)}")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = p.parse_args(argv)

    cfg = resolve_sizes(args)
    if args.threads < 1:
        p.error(f"--threads must be a positive integer, got {args.threads}")
    if args.clusters < 2 or args.clusters > args.n:
        p.error(f"--clusters must lie in [2, n={args.n}], got {args.clusters}")
    if args.pairs < 2:
        p.error(f"--pairs must be at least 2 (one positive, one negative), got {args.pairs}")
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.only if s not in KERNELS]
    if bad:
        p.error(f"--only: unknown kernel(s) {bad}; choose from {list(KERNELS)}")
    args.dtype = np.dtype(args.dtype)
    args.other_dtype = np.dtype(np.float32 if args.dtype == np.float64 else np.float64)
    return args, cfg


def make_data(args):
    rng = np.random.default_rng(args.seed)
    n, d, k = args.n, args.d, args.k
    labels = rng.integers(0, args.clusters, size=n)
    # Points around one centre per cluster, so same-label pairs are closer.
    centres = rng.standard_normal((args.clusters, d))
    X = (centres[labels] + rng.standard_normal((n, d))).astype(args.dtype)
    # L ~ N(0, 1/d): ||L(x - y)||^2 stays O(k), and the bias is set between
    # the typical within- and between-cluster squared distances.
    L = (rng.standard_normal((k, d)) / np.sqrt(d)).astype(args.dtype)
    a = rng.integers(0, n, size=args.pairs)
    b = (a + rng.integers(1, n, size=args.pairs)) % n  # never a == b
    pairs = np.ascontiguousarray(np.stack([a, b], axis=1).astype(np.intp))
    y = (labels[a] == labels[b]).astype(np.int8)
    data = {"X": X, "L": L, "pairs": pairs, "y": y, "labels": labels, "bias": 3.0 * k}
    if "pairwise" in args.only:
        data["PX"] = rng.standard_normal((args.pw_n, d)).astype(args.dtype)
        data["PY"] = rng.standard_normal((args.pw_m, d)).astype(args.dtype)
    return data


def main(argv=None):
    args, cfg = parse_args(argv)
    set_vars = warn_openblas_vars("compare_kernels.py", "slows numpy's OpenBLAS and makes the numpy "
                                  "baselines look worse")
    print_environment(args, cfg)
    warn_if_busy()
    print(flush=True)
    data = make_data(args)
    rows = []
    for kernel in args.only:
        print(f"... {kernel}", file=sys.stderr, flush=True)
        rows.append(run_kernel(kernel, cfg, args, data))
        gc.collect()
    print()
    print_table(rows, args, args.markdown)
    print()
    print_closing(set_vars, "numpy", memory=True)
    return 0 if all(r.check.startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
