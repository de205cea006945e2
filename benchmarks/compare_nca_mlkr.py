#!/usr/bin/env python
"""fastmetric's NCA and MLKR against scikit-learn's and metric-learn's, side by side.

What is run, in one process (peers that are not installed are skipped, with
a message; nothing is installed by this script):

1. **NCA on digits.**  ``load_digits``, a 70/30 split stratified on the
   labels (``random_state=0``), ``StandardScaler`` fitted on the training
   part.  fastmetric's ``NCA`` and scikit-learn's
   ``NeighborhoodComponentsAnalysis`` are fitted on the training part with
   the same ``init='auto'``, ``max_iter`` and ``tol`` (both stop when the
   relative decrease of the objective or the largest gradient entry falls
   below ``tol``, as scipy's L-BFGS-B does with ``tol``); then a 3-NN
   classifier on the embedded training part is scored on the embedded test
   part.  Fit times are medians of ``--repeat`` rounds, run interleaved.
   ``init='auto'`` is the identity here (as many components as features),
   and fastmetric shrinks a named start whose softmax is saturated
   (standardised digits: by 0.28), so the timed fastmetric row is given the
   peers' start as an array (the same computation); the row "default start"
   is fastmetric's own default, which reaches a better optimum where the
   unscaled start stalls.
   Before timing, fastmetric's objective and gradient are checked against
   a dense numpy implementation at the initial map.
2. **MLKR on digits as a regression** (the digit as a real target, same
   split and scaling): fastmetric's ``MLKR`` against metric-learn's, same
   ``init``, ``max_iter``, ``tol``.  metric-learn 0.7 needs scikit-learn <
   1.8, so it runs in another interpreter given by ``--peer-python`` (a
   virtual environment with metric-learn), in a subprocess, on the same
   arrays passed through temporary ``.npy`` files.  metric-learn's ``NCA``
   is timed there too.  Without ``--peer-python`` (or when that interpreter
   cannot import metric_learn) this part only times fastmetric.
3. **``--large``**: NCA on 20,000 x 64 synthetic points with 10 classes
   (``make_classification``, standardised), ``max_iter`` as above, in a
   fresh subprocess whose wall time and peak resident memory
   (``ru_maxrss``) are reported; the goals are < 60 s and < 2 GB.

Goals checked: NCA >= 10x faster than scikit-learn on digits with the same
``max_iter``, its 3-NN test accuracy within 0.5 points of scikit-learn's.

OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE when it is loaded;
the shared machines set both, which slows numpy (scikit-learn's NCA), so
run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_nca_mlkr.py \\
        [--peer-python /tmp/mlvenv/bin/python] [--large] [--markdown]

The exit status is 1 when a correctness check fails (not when a goal is
missed).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import numpy as np
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits

from _report import (  # also puts fastmetric on sys.path
    check_large_classification,
    fmt_time,
    nonnegative_int,
    peak_memory_gb,
    print_closing,
    print_rows,
    time_fit,
    warn_if_busy,
    warn_openblas_vars,
)
from _report import print_environment as report_environment

from fastmetric._core.init import initialize_components  # noqa: E402
from fastmetric._learners.mlkr import MLKR  # noqa: E402
from fastmetric._learners.nca import NCA  # noqa: E402
from fastmetric._core.objectives.softmax_neighbors import SoftmaxNeighborsProblem  # noqa: E402
from fastmetric._core.threads import effective_n_threads  # noqa: E402

SPEED_GOAL = 10.0        # NCA vs scikit-learn on digits
ACCURACY_SLACK = 0.5     # points of 3-NN test accuracy
LARGE_TIME_GOAL = 60.0   # seconds
LARGE_MEMORY_GOAL = 2.0  # GB


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(Xtr)
    return (np.ascontiguousarray(scaler.transform(Xtr)),
            np.ascontiguousarray(scaler.transform(Xte)), ytr, yte)


def large_data(n, d, classes, seed, dtype):
    from sklearn.datasets import make_classification
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=n, n_features=d, n_informative=d // 4,
                               n_redundant=d // 4, n_classes=classes, n_clusters_per_class=1,
                               random_state=seed)
    return np.ascontiguousarray(StandardScaler().fit_transform(X), dtype=dtype), y


# --------------------------------------------------------------------------
# the dense numpy reference (for the correctness check only)
# --------------------------------------------------------------------------
def numpy_nca_objective(X, y, L):
    """-sum_i p_i and its gradient with full n x n matrices (no window)."""
    Z = X @ L.T
    sq = np.einsum("ij,ij->i", Z, Z)
    D = np.maximum(sq[:, None] + sq[None, :] - 2 * Z @ Z.T, 0)
    np.fill_diagonal(D, np.inf)
    P = np.exp(-D - logsumexp(-D, axis=1)[:, None])
    same = y[:, None] == y[None, :]
    p = (P * same).sum(1)
    W = -P * (p[:, None] - same)            # d(-sum p)/dD_ij
    lap = np.diag(W.sum(1) + W.sum(0)) - W - W.T
    return -p.sum(), 2 * L @ (X.T @ lap @ X)


# --------------------------------------------------------------------------
# timing helpers
# --------------------------------------------------------------------------


def timed_fit(make, X, y):
    est = make()
    return est, time_fit(est, X, y)


def knn_accuracy(transform, Xtr, Xte, ytr, yte):
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=3).fit(transform(Xtr), ytr)
    return 100.0 * knn.score(transform(Xte), yte)


def kernel_regression_mse(L, Xtr, Xte, ytr, yte):
    """Test MSE of Gaussian kernel regression from the training part."""
    Ztr, Zte = Xtr @ L.T, Xte @ L.T
    D = (np.einsum("ij,ij->i", Zte, Zte)[:, None] + np.einsum("ij,ij->i", Ztr, Ztr)[None, :]
         - 2 * Zte @ Ztr.T)
    D = np.maximum(D, 0)
    P = np.exp(-D - logsumexp(-D, axis=1)[:, None])
    return float(np.mean((P @ ytr - yte) ** 2))


# --------------------------------------------------------------------------
# metric-learn in another interpreter
# --------------------------------------------------------------------------
PEER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, warnings
    import numpy as np
    cfg = json.loads(sys.argv[1])
    out = {}
    try:
        import metric_learn, sklearn
    except Exception as exc:
        print(json.dumps({"error": f"cannot import metric_learn: {exc!r}"}))
        sys.exit(0)
    out["versions"] = {"metric_learn": metric_learn.__version__, "sklearn": sklearn.__version__,
                       "numpy": np.__version__, "python": sys.version.split()[0]}
    from threadpoolctl import threadpool_limits
    X = np.load(cfg["X"]); y_cls = np.load(cfg["y_cls"]); y_reg = np.load(cfg["y_reg"])
    for name, cls, y, kw in (("NCA", metric_learn.NCA, y_cls, cfg["nca"]),
                             ("MLKR", metric_learn.MLKR, y_reg, cfg["mlkr"])):
        times = []
        for r in range(cfg["repeat"]):
            est = cls(**kw)
            with warnings.catch_warnings(), threadpool_limits(limits=cfg["threads"]):
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                est.fit(X, y)
                times.append(time.perf_counter() - t0)
        path = cfg["out_prefix"] + name + ".npy"
        np.save(path, est.components_)
        out[name] = {"times": times, "n_iter": int(getattr(est, "n_iter_", -1)),
                     "components": path}
    print(json.dumps(out))
    """
)


def run_peer(python, Xtr, ytr, y_reg, args, tmpdir):
    if python is None:
        return None, "metric-learn: skipped (no --peer-python given)"
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return None, f"metric-learn: skipped ({python} does not exist or is not executable)"
    paths = {}
    for key, arr in (("X", Xtr), ("y_cls", ytr), ("y_reg", y_reg)):
        paths[key] = os.path.join(tmpdir, key + ".npy")
        np.save(paths[key], arr)
    cfg = dict(paths, repeat=args.repeat, threads=args.threads,
               out_prefix=os.path.join(tmpdir, "peer_"),
               nca={"init": "auto", "max_iter": args.max_iter, "tol": args.tol, "random_state": 0},
               mlkr={"init": "auto", "max_iter": args.mlkr_max_iter, "tol": args.tol,
                     "random_state": 0})
    print("... metric-learn in the peer interpreter (NCA, MLKR)", file=sys.stderr, flush=True)
    # The peer inherits this environment, hence the same OpenBLAS settings.
    proc = subprocess.run([python, "-c", PEER_SCRIPT, json.dumps(cfg)], check=False,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None, ("metric-learn: skipped (the peer interpreter failed: "
                      + proc.stderr.strip().splitlines()[-1] + ")")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if "error" in res:
        return None, f"metric-learn: skipped ({res['error']})"
    for name in ("NCA", "MLKR"):
        res[name]["components"] = np.load(res[name]["components"])
    v = res["versions"]
    return res, (f"metric-learn {v['metric_learn']} (scikit-learn {v['sklearn']}, numpy "
                 f"{v['numpy']}, python {v['python']}) via {python}")


# --------------------------------------------------------------------------
# the large problem, in a fresh process
# --------------------------------------------------------------------------
def large_child(args):
    """Fit NCA on the large problem; print a JSON line (time, iterations, memory)."""
    X, y = large_data(args.large_n, args.large_d, args.large_classes, args.seed,
                      np.dtype(args.large_dtype))
    rss_before = peak_memory_gb()
    stats = {"nfev": 0, "eval_seconds": 0.0, "tiles": 0}
    original = SoftmaxNeighborsProblem.loss_grad

    def counted(self, L, n_threads=1, compute_gradient=True):
        t0 = time.perf_counter()
        out = original(self, L, n_threads, compute_gradient)
        stats["eval_seconds"] += time.perf_counter() - t0
        stats["nfev"] += 1
        stats["tiles"] += bool(self.used_tiles)
        return out

    SoftmaxNeighborsProblem.loss_grad = counted
    est = NCA(max_iter=args.max_iter, tol=args.tol, random_state=args.seed, n_jobs=args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        est.fit(X, y)
        seconds = time.perf_counter() - t0
    print(json.dumps({
        "seconds": seconds, "n_iter": est.n_iter_, "loss": est.loss_, "nfev": stats["nfev"],
        "eval_seconds": stats["eval_seconds"], "tile_evals": stats["tiles"],
        "converged": not any("did not converge" in str(w.message) for w in caught),
        "peak_gb": peak_memory_gb(),
        "data_gb": rss_before, "load_before": load,
        "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }))
    return 0


def run_large(args):
    cmd = [sys.executable, os.path.abspath(__file__), "--large-child",
           "--threads", str(args.threads), "--max-iter", str(args.max_iter),
           "--tol", repr(args.tol), "--seed", str(args.seed),
           "--large-n", str(args.large_n), "--large-d", str(args.large_d),
           "--large-classes", str(args.large_classes), "--large-dtype", args.large_dtype]
    print(f"... large NCA fit in a subprocess (n={args.large_n:,}, d={args.large_d})",
          file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------
def print_environment(args):
    report_environment(args.threads)
    print(f"settings: threads={args.threads} (fastmetric n_jobs, BLAS limit of the peers), "
          f"NCA max_iter={args.max_iter}, MLKR max_iter={args.mlkr_max_iter}, tol={args.tol:g}, "
          f"repeat={args.repeat} (median)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="NCA / MLKR: fastmetric vs scikit-learn and "
                                            "metric-learn (see the module docstring).")
    p.add_argument("--repeat", type=int, default=3, help="timed fits per method (default 3)")
    p.add_argument("--threads", type=int, default=2,
                   help="fastmetric n_jobs and the peers' BLAS thread limit (default 2)")
    p.add_argument("--max-iter", type=int, default=100, help="NCA max_iter, all (default 100)")
    p.add_argument("--mlkr-max-iter", type=int, default=100,
                   help="MLKR max_iter, both (default 100; metric-learn's default is 1000)")
    p.add_argument("--tol", type=float, default=1e-5, help="tol of every learner (default 1e-5)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--peer-python", help="interpreter with metric-learn installed, e.g. "
                                         "/tmp/mlvenv/bin/python")
    p.add_argument("--large", action="store_true",
                   help="also fit NCA on the large synthetic problem (time and peak memory)")
    p.add_argument("--large-only", action="store_true", help="only the large problem")
    p.add_argument("--large-n", type=int, default=20_000)
    p.add_argument("--large-d", type=int, default=64)
    p.add_argument("--large-classes", type=int, default=10)
    p.add_argument("--large-dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--large-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    args = p.parse_args(argv)
    for key in ("repeat", "threads", "max_iter", "mlkr_max_iter", "large_n", "large_d"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be a positive integer, "
                    f"got {getattr(args, key)}")
    if not (np.isfinite(args.tol) and args.tol >= 0):
        p.error(f"--tol must be finite and >= 0, got {args.tol}")
    check_large_classification(p, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.large_child:
        return large_child(args)
    set_vars = warn_openblas_vars("compare_nca_mlkr.py", "slows numpy's OpenBLAS (scikit-learn's NCA)")
    print_environment(args)
    warn_if_busy()
    print(flush=True)
    ok = True

    if not args.large_only:
        ok = digits_part(args) and ok
    if args.large or args.large_only:
        res = run_large(args)
        print()
        if res is None:
            print("large problem: the subprocess FAILED")
            ok = False
        else:
            head = ["problem", "dtype", "threads", "fit time", "iterations", "f-evals",
                    "evals by tiles", "peak RSS", "data RSS", "load (before/after)", "goal"]
            met = res["seconds"] < LARGE_TIME_GOAL and res["peak_gb"] < LARGE_MEMORY_GOAL
            body = [[f"NCA, {args.large_n:,} x {args.large_d}, {args.large_classes} classes",
                     args.large_dtype, str(args.threads), fmt_time(res["seconds"]),
                     f"{res['n_iter']}{'' if res['converged'] else ' (max_iter)'}",
                     str(res["nfev"]), str(res["tile_evals"]), f"{res['peak_gb']:.2f} GB",
                     f"{res['data_gb']:.2f} GB",
                     f"{res['load_before']:.2f} / {res['load_after']:.2f}",
                     f"< {LARGE_TIME_GOAL:g} s, < {LARGE_MEMORY_GOAL:g} GB: "
                     + ("MET" if met else "not met")]]
            print_rows(head, body, args.markdown)
    print_closing(set_vars, "peer")
    return 0 if ok else 1


def digits_part(args):
    from sklearn.neighbors import NeighborhoodComponentsAnalysis

    Xtr, Xte, ytr, yte = digits_split()
    y_reg, yte_reg = ytr.astype(np.float64), yte.astype(np.float64)
    n_threads = effective_n_threads(args.threads)

    # Correctness first: fastmetric's objective against dense numpy at the start.
    L0 = initialize_components("auto", Xtr, y=ytr, random_state=0)
    ref = numpy_nca_objective(Xtr, ytr, L0)
    got = SoftmaxNeighborsProblem(Xtr, labels=ytr).loss_grad(L0, n_threads)
    err = float(np.abs(got[1] - ref[1]).max() / np.abs(ref[1]).max())
    ok = abs(got[0] - ref[0]) <= 1e-10 * abs(ref[0]) and err < 1e-8
    print(f"check at the initial map: -sum p_i numpy {ref[0]:.12g}, fastmetric {got[0]:.12g}; "
          f"max |grad diff| / max |grad| = {err:.1e} -> {'ok' if ok else 'FAIL'}")

    makers = {
        # the peers' start (init='auto' is the identity here), as an array:
        # fastmetric's own named start would be shrunk (see the module notes)
        "fastmetric NCA": lambda: NCA(init=np.eye(Xtr.shape[1]), max_iter=args.max_iter,
                                      tol=args.tol, random_state=0, n_jobs=args.threads),
        "scikit-learn NCA": lambda: NeighborhoodComponentsAnalysis(
            init="auto", max_iter=args.max_iter, tol=args.tol, random_state=0),
        "fastmetric MLKR": lambda: MLKR(init=np.eye(Xtr.shape[1]), max_iter=args.mlkr_max_iter,
                                        tol=args.tol, random_state=0, n_jobs=args.threads),
        "fastmetric NCA, default start": lambda: NCA(
            max_iter=args.max_iter, tol=args.tol, random_state=0, n_jobs=args.threads),
        "fastmetric MLKR, default start": lambda: MLKR(
            max_iter=args.mlkr_max_iter, tol=args.tol, random_state=0, n_jobs=args.threads),
    }
    targets = {"fastmetric NCA": ytr, "scikit-learn NCA": ytr, "fastmetric MLKR": y_reg,
               "fastmetric NCA, default start": ytr, "fastmetric MLKR, default start": y_reg}
    times = {name: [] for name in makers}
    fitted = {}
    timed_fit(makers["fastmetric NCA"], Xtr, ytr)  # warm-up (imports, page faults)
    for r in range(args.repeat):
        for name, make in makers.items():  # interleaved rounds
            print(f"... round {r + 1}/{args.repeat}: {name}", file=sys.stderr, flush=True)
            with threadpool_limits(limits=args.threads, user_api="blas"):
                fitted[name], t = timed_fit(make, Xtr, targets[name])
            times[name].append(t)

    with tempfile.TemporaryDirectory(prefix="fastmetric_bench_") as tmpdir:
        peer, peer_msg = run_peer(args.peer_python, Xtr, ytr, y_reg, args, tmpdir)
    print(peer_msg)

    problem = SoftmaxNeighborsProblem(Xtr, labels=ytr)
    base_acc = knn_accuracy(lambda Z: Z, Xtr, Xte, ytr, yte)
    rows = []

    def nca_row(name, seconds, n_iter, components, transform):
        loss = problem.loss_grad(components, n_threads, compute_gradient=False)[0]
        acc = knn_accuracy(transform, Xtr, Xte, ytr, yte)
        rows.append((name, seconds, n_iter, loss, acc))

    fm, sk = fitted["fastmetric NCA"], fitted["scikit-learn NCA"]
    nca_row("fastmetric NCA", times["fastmetric NCA"], fm.n_iter_, fm.components_, fm.transform)
    nca_row("scikit-learn NCA", times["scikit-learn NCA"], sk.n_iter_, sk.components_,
            sk.transform)
    if peer is not None:
        Lp = peer["NCA"]["components"]
        nca_row("metric-learn NCA", peer["NCA"]["times"], peer["NCA"]["n_iter"], Lp,
                lambda Z: Z @ Lp.T)
    fd = fitted["fastmetric NCA, default start"]
    nca_row("fastmetric NCA, default start", times["fastmetric NCA, default start"], fd.n_iter_,
            fd.components_, fd.transform)
    fm_t = statistics.median(times["fastmetric NCA"])
    head = ["NCA on digits (1257 train / 540 test)", "fit time (median)", "all runs",
            "iterations", "final -sum p_i", "3-NN test accuracy", "fastmetric speed-up"]
    body = []
    for name, ts, n_iter, loss, acc in rows:
        med = statistics.median(ts)
        body.append([name, fmt_time(med), ", ".join(fmt_time(t) for t in ts), str(n_iter),
                     f"{loss:.6g}", f"{acc:.2f} %",
                     "-" if name.startswith("fastmetric") else f"{med / fm_t:.1f}x"])
    body.append(["(identity, no learning)", "-", "-", "-", "-", f"{base_acc:.2f} %", "-"])
    print()
    print_rows(head, body, args.markdown)
    speedup = statistics.median(times["scikit-learn NCA"]) / fm_t
    gap = rows[0][4] - rows[1][4]
    print(f"\nNCA speed-up over scikit-learn: {speedup:.1f}x (goal >= {SPEED_GOAL:g}x: "
          f"{'MET' if speedup >= SPEED_GOAL else 'not met'}); 3-NN accuracy fastmetric "
          f"{rows[0][4]:.2f} % vs scikit-learn {rows[1][4]:.2f} % (difference {gap:+.2f} points, "
          f"goal >= -{ACCURACY_SLACK:g}: {'MET' if gap >= -ACCURACY_SLACK else 'not met'})")

    # MLKR
    mlkr_problem = SoftmaxNeighborsProblem(Xtr, targets=y_reg)
    fmk = fitted["fastmetric MLKR"]
    mrows = [("fastmetric MLKR", times["fastmetric MLKR"], fmk.n_iter_, fmk.components_)]
    if peer is not None:
        mrows.append(("metric-learn MLKR", peer["MLKR"]["times"], peer["MLKR"]["n_iter"],
                      peer["MLKR"]["components"]))
    fmd = fitted["fastmetric MLKR, default start"]
    mrows.append(("fastmetric MLKR, default start", times["fastmetric MLKR, default start"],
                  fmd.n_iter_, fmd.components_))
    fm_m = statistics.median(times["fastmetric MLKR"])
    head = ["MLKR on digits (digit as target)", "fit time (median)", "all runs", "iterations",
            "final LOO sq. error", "test MSE (kernel regr.)", "fastmetric speed-up"]
    body = []
    for name, ts, n_iter, L in mrows:
        med = statistics.median(ts)
        loss = mlkr_problem.loss_grad(L, n_threads, compute_gradient=False)[0]
        body.append([name, fmt_time(med), ", ".join(fmt_time(t) for t in ts), str(n_iter),
                     f"{loss:.6g}", f"{kernel_regression_mse(L, Xtr, Xte, y_reg, yte_reg):.4f}",
                     "-" if name.startswith("fastmetric") else f"{med / fm_m:.1f}x"])
    print()
    print_rows(head, body, args.markdown)
    return ok


if __name__ == "__main__":
    sys.exit(main())
