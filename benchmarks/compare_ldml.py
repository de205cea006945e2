#!/usr/bin/env python
"""Time fastmetric's LDML fit against a plain numpy/scipy LDML on the same problem.

What is compared, in one run and on the same index pairs:

* ``LDML(preprocessor=X, solver='lbfgs').fit(pairs, t)``: fastmetric on
  index pairs drawn beforehand with :func:`fastmetric.pairwise.sample_pairs`
  (the exact problem the numpy baseline solves);
* ``LDML_Supervised(solver='lbfgs').fit(X, y)``: the same, but the learner
  draws the pairs itself (included in its time).  It is given the seed that
  makes it draw the very same pairs, which the script checks;
* the numpy/scipy baseline written below.

The baseline minimises fastmetric's objective, read from
``fastmetric/_core/objectives/ldml.py``: over theta = [vec(L), bias],

    f = (1/P) sum_p [softplus(z_p) - t_p z_p] + (alpha/2) ||L - L0||_F^2,
    z_p = bias - ||L (x_a - x_b)||^2,

the mean log-loss of p = sigmoid(z) (alpha = 0 here by default, ``--alpha``:
LDML's own default ``'auto'`` adds a pull of O(d^2) per evaluation, which
the per-evaluation times compared here do not depend on).  It forms the
pair differences once, ``diff = X[a] - X[b]`` (P x d), and each evaluation
does two GEMMs and elementwise work:

    Z = diff @ L.T,  D = rowsum(Z**2),  z = bias - D,
    loss = mean(logaddexp(0, z) - t z),  g = (expit(z) - t) / P,
    grad_L = -2 (Z * g[:, None]).T @ diff,  grad_bias = sum(g)

(chain rule: d loss/d z_p = g_p, dz/dD = -1, dD/dL = 2 L diff diff^T).
It starts where fastmetric starts: L0 from the same ``init='auto'`` (the
identity here, as n_components = n_features), then the same scale/bias fit
``initial_scale_bias`` (pure numpy code of fastmetric, reused so the two
runs share the starting point; its cost is in both totals), and uses the
same solver, ``scipy.optimize.minimize(method='L-BFGS-B', jac=True)``.

fastmetric runs first (one untimed run), with its defaults ``max_iter=100,
tol=1e-5``; the baseline then gets ``maxiter`` = fastmetric's ``n_iter_``
and ``ftol = gtol = 0`` so that it does not stop earlier.  The number of
function evaluations is counted on both sides (fastmetric's by wrapping
the objective its fit hands to the solver), so the table gives the fit
time (median of ``--repeat`` runs, interleaved) and the time per
evaluation; the final objectives of both are printed to show that they
solved the same problem.

Data: ``sklearn.datasets.make_classification`` with 10 classes (a quarter
of the features informative, a quarter redundant, the rest noise), fixed
seed.  Defaults: n = 20,000 points, d = 64, P = 200,000 pairs (half
similar), float64, 2 threads (fastmetric's ``n_jobs``, the numpy BLAS's
thread limit).

Run it with numpy's OpenBLAS at its defaults (the shared machines set
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which slow numpy), with ``--quick``
for a smoke test on small sizes (its ratios mean little) and ``--markdown``
for the README's table::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_ldml.py [--quick] [--markdown]
"""
import argparse
import contextlib
import dataclasses
import gc
import statistics
import sys
import time
import warnings

import numpy as np
import scipy
import scipy.optimize
from scipy.special import expit
from threadpoolctl import threadpool_limits

from _report import (  # also puts fastmetric on sys.path
    add_size_options,
    fmt_time,
    nonnegative_int,
    print_closing,
    print_rows,
    warn_if_busy,
    warn_openblas_vars,
)
from _report import print_environment as report_environment

import fastmetric._core.objectives.ldml as _ldml_module  # noqa: E402
from fastmetric._core.init import initialize_components  # noqa: E402
from fastmetric._core.objectives.ldml import INIT_MAX_PAIRS, initial_scale_bias  # noqa: E402
from fastmetric._core.rows import evenly_spaced  # noqa: E402
from fastmetric._learners.ldml import LDML, LDML_Supervised  # noqa: E402
from fastmetric._core.objectives.pair_loss import PairLossProblem  # noqa: E402
from fastmetric._core.sampling import sample_pairs  # noqa: E402
from fastmetric._core.threads import effective_n_threads  # noqa: E402

GOAL = 10.0  # fastmetric's fit should be at least this much faster than numpy's

FULL = {"n": 20_000, "d": 64, "pairs": 200_000, "classes": 10, "repeat": 3}
QUICK = {"n": 2_000, "d": 16, "pairs": 20_000, "classes": 10, "repeat": 3}

# Agreement of the two objectives at the starting point (loss and gradient):
# both sum P terms in a different order; float32 loses ~1e-4 relatively.
RTOL = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 2e-3}


# --------------------------------------------------------------------------
# the numpy/scipy baseline
# --------------------------------------------------------------------------

class Counter:
    """Number of objective evaluations and the time spent in them."""

    def __init__(self):
        self.nfev = 0
        self.seconds = 0.0

    def wrap(self, fun):
        def timed(theta):
            t0 = time.perf_counter()
            out = fun(theta)
            self.seconds += time.perf_counter() - t0
            self.nfev += 1
            return out

        return timed


def numpy_objective(diff, t, L0, alpha):
    """``fun(theta) -> (loss, grad)`` of LDML on precomputed differences.

    ``diff`` (P, d) and ``t`` (P,) are in the working dtype; theta is
    float64 (scipy's), L is cast to the working dtype for the GEMMs and the
    gradient is returned as float64.
    """
    P, d = diff.shape
    k = L0.shape[0]
    dtype = diff.dtype

    def fun(theta):
        L = theta[:-1].reshape(k, d).astype(dtype, copy=False)
        bias = float(theta[-1])  # a Python float keeps float32 arrays float32
        Z = diff @ L.T                                   # GEMM 1: (P, k)
        z = bias - np.einsum("ij,ij->i", Z, Z)           # bias - ||L diff_p||^2
        # softplus(z) = logaddexp(0, z) does not overflow for large z.
        loss = float(np.sum(np.logaddexp(0, z) - t * z, dtype=np.float64) / P)
        g = (expit(z) - t) / P                           # d loss / d z_p
        grad = np.empty(k * d + 1)
        grad[:-1] = (-2.0 * ((Z * g[:, None]).T @ diff)).ravel()   # GEMM 2: (k, d)
        grad[-1] = float(np.sum(g, dtype=np.float64))
        if alpha > 0:
            dL = theta[:-1] - L0.ravel()
            loss += 0.5 * alpha * float(dL @ dL)
            grad[:-1] += alpha * dL
        return loss, grad

    return fun


def numpy_start(X, diff, t, seed):
    """fastmetric's starting point for LDML on these pairs: (L0 scaled, bias0).

    ``init='auto'`` with class labels absent and n_components = n_features
    is the identity; L0 is then scaled by sqrt(gamma), with (gamma, bias0)
    the one-feature logistic fit of the squared distances.
    """
    L0 = initialize_components("auto", X, random_state=seed)
    keep = evenly_spaced(diff.shape[0], INIT_MAX_PAIRS)  # the pairs LDML's start uses
    Z0 = diff[keep] @ L0.T.astype(diff.dtype)
    sq0 = np.einsum("ij,ij->i", Z0, Z0)
    gamma, bias0 = initial_scale_bias(sq0, t[keep].astype(np.float64), None)
    return L0 * np.sqrt(gamma), bias0


def numpy_fit(X, a, b, t, *, max_iter, alpha, seed, counter):
    """LDML by numpy + scipy's L-BFGS-B, exactly ``max_iter`` iterations."""
    diff = X[a] - X[b]                                   # once: (P, d)
    t_dt = t.astype(X.dtype)
    L0, bias0 = numpy_start(X, diff, t_dt, seed)
    theta0 = np.concatenate([L0.ravel(), [bias0]])
    fun = counter.wrap(numpy_objective(diff, t_dt, L0, alpha))
    res = scipy.optimize.minimize(
        fun, theta0, jac=True, method="L-BFGS-B",
        # ftol = gtol = 0: stop only at maxiter (or if the line search fails).
        options={"maxiter": int(max_iter), "ftol": 0.0, "gtol": 0.0},
    )
    return res


# --------------------------------------------------------------------------
# fastmetric runs
# --------------------------------------------------------------------------

@contextlib.contextmanager
def count_fastmetric_evaluations(counter):
    """Wrap the objective fastmetric's LDML hands to its L-BFGS solver.

    ``fastmetric._core.objectives.ldml`` calls ``minimize_lbfgs(fun, theta0, ...)``; the
    wrapper counts and times each ``fun`` call (a few hundred ns per call).
    """
    original = _ldml_module.minimize_lbfgs

    def counting(fun, x0, **kwargs):
        return original(counter.wrap(fun), x0, **kwargs)

    _ldml_module.minimize_lbfgs = counting
    try:
        yield counter
    finally:
        _ldml_module.minimize_lbfgs = original


@dataclasses.dataclass
class Run:
    """One timed fit: wall time, iterations, evaluations, final objective."""

    seconds: float
    n_iter: int
    nfev: int
    eval_seconds: float
    loss: float
    note: str = ""


def timed_fastmetric(make, fit_args):
    counter = Counter()
    est = make()
    gc.collect()
    with count_fastmetric_evaluations(counter), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        est.fit(*fit_args)
        seconds = time.perf_counter() - t0
    note = "hit max_iter" if any("did not converge" in str(w.message) for w in caught) else ""
    return est, Run(seconds, est.n_iter_, counter.nfev, counter.seconds, est.loss_, note)


def timed_numpy(X, a, b, t, args, max_iter):
    counter = Counter()
    gc.collect()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        t0 = time.perf_counter()
        res = numpy_fit(X, a, b, t, max_iter=max_iter, alpha=args.alpha, seed=args.seed,
                        counter=counter)
        seconds = time.perf_counter() - t0
    note = "" if res.nit == max_iter else f"stopped: {res.message}"
    return res, Run(seconds, int(res.nit), counter.nfev, counter.seconds, float(res.fun), note)


# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------



def summarise(runs):
    """Medians over the runs of one method."""
    return {
        "seconds": statistics.median(r.seconds for r in runs),
        "per_eval": statistics.median(r.eval_seconds / max(r.nfev, 1) for r in runs),
        "n_iter": runs[-1].n_iter,
        "nfev": runs[-1].nfev,
        "loss": runs[-1].loss,
        "all": [r.seconds for r in runs],
        "note": "; ".join(sorted({r.note for r in runs if r.note})),
    }


def print_table(summary, args, markdown):
    base = summary["numpy"]
    head = ["method", "what the time includes", "fit time (median)", "iterations",
            "f-evals", "time / f-eval", "final loss", "speed-up (fit)", "speed-up (/eval)"]
    body = []
    for name, what in (
        ("numpy", "X[a]-X[b] once, init, L-BFGS-B (2 GEMMs / eval)"),
        ("LDML", "fastmetric LDML(preprocessor=X), index pairs: checks, init, L-BFGS-B"),
        ("LDML_Supervised", "fastmetric LDML_Supervised: validation, sample_pairs, init, L-BFGS-B"),
    ):
        s = summary[name]
        label = "numpy/scipy baseline" if name == "numpy" else f"fastmetric {name}"
        speed = "-" if name == "numpy" else f"{base['seconds'] / s['seconds']:.1f}x"
        speed_eval = "-" if name == "numpy" else f"{base['per_eval'] / s['per_eval']:.1f}x"
        body.append([label, what, fmt_time(s["seconds"]), str(s["n_iter"]), str(s["nfev"]),
                     fmt_time(s["per_eval"]), f"{s['loss']:.8g}", speed, speed_eval])
    print_rows(head, body, markdown)


def print_environment(args):
    report_environment(args.threads)
    print(f"problem: n={args.n:,} d={args.d} classes={args.classes} pairs={args.pairs:,} "
          f"dtype={args.dtype.name} threads={args.threads} alpha={args.alpha:g} "
          f"fastmetric max_iter={args.max_iter} tol={args.tol:g}; "
          f"repeat={args.repeat} (median){'  [--quick]' if args.quick else ''}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="fastmetric LDML fit vs a numpy/scipy LDML on the same pairs "
                    "(see the module docstring)."
    )
    resolve_sizes = add_size_options(p, FULL, QUICK, {
        "n": "points", "d": "features = rows of L", "pairs": "pairs, half similar",
        "classes": "classes", "repeat": "timed fits per method"})
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--threads", type=int, default=2,
                   help="fastmetric n_jobs and the numpy BLAS thread limit (default 2)")
    p.add_argument("--max-iter", type=int, default=100, help="fastmetric's max_iter (default 100)")
    p.add_argument("--tol", type=float, default=1e-5, help="fastmetric's tol (default 1e-5)")
    p.add_argument("--alpha", type=float, default=0.0,
                   help="pull toward the initial map, both sides (default 0)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = p.parse_args(argv)

    resolve_sizes(args)
    for key in ("threads", "max_iter"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be a positive integer, got {getattr(args, key)}")
    if args.classes < 2 or args.classes > args.n // 2:
        p.error(f"--classes must lie in [2, n/2 = {args.n // 2}], got {args.classes}")
    if args.pairs < 2:
        p.error(f"--pairs must be at least 2 (one similar, one dissimilar), got {args.pairs}")
    if not (np.isfinite(args.tol) and args.tol >= 0):
        p.error(f"--tol must be finite and >= 0, got {args.tol}")
    if not (np.isfinite(args.alpha) and args.alpha >= 0):
        p.error(f"--alpha must be finite and >= 0, got {args.alpha}")
    args.dtype = np.dtype(args.dtype)
    return args


def make_problem(args):
    """Data, class labels, and the pairs LDML_Supervised(random_state=seed) draws."""
    from sklearn.datasets import make_classification
    from sklearn.utils import check_random_state

    # make_classification puts one cluster per class on the vertices of a
    # hypercube in the informative subspace: it needs 2**n_inf >= classes.
    n_inf = min(args.d, max(args.d // 4, int(np.ceil(np.log2(args.classes)))))
    n_red = min(args.d // 4, args.d - n_inf)
    X, y = make_classification(
        n_samples=args.n, n_features=args.d, n_informative=n_inf, n_redundant=n_red,
        n_classes=args.classes, n_clusters_per_class=1, random_state=args.seed,
    )
    X = np.ascontiguousarray(X, dtype=args.dtype)
    labels = np.unique(y, return_inverse=True)[1].reshape(-1)
    # LDML_Supervised.fit draws its pair seed as the first randint of
    # check_random_state(random_state) and splits n_pairs as below; doing
    # the same gives the very pairs it will use.
    sample_seed = int(check_random_state(args.seed).randint(0, np.iinfo(np.int32).max))
    n_pos = min(max(round(args.pairs * 0.5), 1), args.pairs - 1)
    pairs, t = sample_pairs(labels, n_pos, args.pairs - n_pos, random_state=sample_seed,
                            n_jobs=args.threads)
    pairs = np.ascontiguousarray(pairs, dtype=np.intp)
    return X, y, pairs, t.astype(np.float64)


def check_start(X, a, b, t, args):
    """Both objectives agree (loss and gradient) at the baseline's starting point."""
    diff = X[a] - X[b]
    t_dt = t.astype(X.dtype)
    L0, bias0 = numpy_start(X, diff, t_dt, args.seed)
    theta0 = np.concatenate([L0.ravel(), [bias0]])
    with threadpool_limits(limits=args.threads, user_api="blas"):
        ref_loss, ref_grad = numpy_objective(diff, t_dt, L0, 0.0)(theta0)
    prob = PairLossProblem(X, a, b, t)
    loss, grad_L, grad_bias = prob.loss_grad(
        np.ascontiguousarray(L0, dtype=X.dtype), bias0, effective_n_threads(args.threads))
    got = np.concatenate([np.asarray(grad_L, dtype=np.float64).ravel(), [grad_bias]])
    rtol = RTOL[X.dtype]
    scale = float(np.max(np.abs(ref_grad)))
    ok = bool(np.isclose(loss, ref_loss, rtol=rtol, atol=0)
              and np.allclose(got, ref_grad, rtol=rtol, atol=rtol * scale))
    err = float(np.max(np.abs(got - ref_grad)) / scale) if scale > 0 else 0.0
    print(f"check at the start (bias0={bias0:.6g}): loss numpy {ref_loss:.10g}, fastmetric "
          f"{loss:.10g}; max |grad diff| / max |grad| = {err:.2e} -> {'ok' if ok else 'FAIL'}")
    return ok


def main(argv=None):
    args = parse_args(argv)
    set_vars = warn_openblas_vars("compare_ldml.py", "slows numpy's OpenBLAS and makes the numpy "
                                  "baseline look worse")
    print_environment(args)
    warn_if_busy()
    print(flush=True)

    X, y, pairs, t = make_problem(args)
    a, b = np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])
    ok = check_start(X, a, b, t, args)

    common = {"solver": "lbfgs", "max_iter": args.max_iter, "tol": args.tol, "alpha": args.alpha,
              "random_state": args.seed, "n_jobs": args.threads}
    makers = {
        "LDML": (lambda: LDML(preprocessor=X, **common), (pairs, t)),
        "LDML_Supervised": (lambda: LDML_Supervised(n_pairs=args.pairs, **common), (X, y)),
    }

    # One untimed fastmetric run: warms caches and fixes the iteration count
    # the baseline must match.
    print("... fastmetric LDML, untimed first run", file=sys.stderr, flush=True)
    _, first = timed_fastmetric(*makers["LDML"])
    max_iter = first.n_iter
    print(f"fastmetric LDML: {first.n_iter} iterations, {first.nfev} evaluations "
          f"({first.note or 'converged'}); the baseline runs maxiter={max_iter}, tol=0")

    runs = {"numpy": [], "LDML": [], "LDML_Supervised": []}
    fitted = {}
    for r in range(args.repeat):
        # Interleaved rounds: a change of machine load hits every method.
        for name in ("LDML_Supervised", "LDML"):
            print(f"... round {r + 1}/{args.repeat}: fastmetric {name}", file=sys.stderr, flush=True)
            fitted[name], run = timed_fastmetric(*makers[name])
            runs[name].append(run)
        print(f"... round {r + 1}/{args.repeat}: numpy", file=sys.stderr, flush=True)
        fitted["numpy"], run = timed_numpy(X, a, b, t, args, max_iter)
        runs["numpy"].append(run)

    summary = {name: summarise(rs) for name, rs in runs.items()}
    print()
    print_table(summary, args, args.markdown)
    print()
    for name, s in summary.items():
        print(f"{name:>16}: fit times " + ", ".join(fmt_time(x) for x in s["all"])
              + (f"  [{s['note']}]" if s["note"] else ""))

    # Same pairs, same start, same solver: LDML and LDML_Supervised must agree.
    same = bool(np.array_equal(fitted["LDML"].components_, fitted["LDML_Supervised"].components_)
                and fitted["LDML"].bias_ == fitted["LDML_Supervised"].bias_)
    # init='auto' gives LDML_Supervised the LDA map when n_components (= d
    # here) <= classes - 1, while LDML (no class labels) starts from the
    # identity: then the two start apart and need not agree.
    same_start = args.d > args.classes - 1
    print(f"LDML and LDML_Supervised fitted the same model (same pairs): "
          f"{'yes, bit-identical' if same else 'NO'}"
          + ("" if same_start else " (expected: here init='auto' is 'lda' for LDML_Supervised, "
             "'identity' for LDML)"))
    ok = ok and (same or not same_start)
    fm_loss, np_loss = summary["LDML"]["loss"], summary["numpy"]["loss"]
    rel = abs(fm_loss - np_loss) / max(abs(np_loss), 1e-300)
    print(f"final loss: fastmetric {fm_loss:.10g}, numpy {np_loss:.10g} "
          f"(relative difference {rel:.1e}{', similar' if rel < 1e-3 else ', NOT similar'})")
    speedup = summary["numpy"]["seconds"] / summary["LDML"]["seconds"]
    print(f"speed-up of fastmetric LDML over numpy, whole fit: {speedup:.1f}x "
          f"(goal >= {GOAL:g}x: {'MET' if speedup >= GOAL else 'not met'}); per evaluation: "
          f"{summary['numpy']['per_eval'] / summary['LDML']['per_eval']:.1f}x; "
          f"dtype {args.dtype.name}, {args.threads} thread(s)")
    print_closing(set_vars, "numpy", memory=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
