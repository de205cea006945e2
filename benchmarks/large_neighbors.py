#!/usr/bin/env python
"""Stochastic NCA and LMNN on a million rows, against full-batch fits on a subsample.

The data of issue 19: ``make_classification(n_samples=N, n_features=64,
n_informative=20, n_classes=10, n_clusters_per_class=2, random_state=0)``
as float32 (default N = 1,000,000; ``--n-samples``), written once to ``.npy``
files in ``--dir`` and read as memmaps.  The last 20,000 rows are held out;
the first N - 20,000 are the training rows.

1. **Stochastic fits** on all training rows, each in a fresh process (its
   peak RSS, ``ru_maxrss``, is the fit's own; it counts the pages of the
   memmapped data the process touched): ``NCA(solver='adam')`` and
   ``LMNN(solver='adam', target_block_size=...)`` with the options below,
   ``--threads`` threads.  Reported: the fit time (set-up, e.g. LMNN's
   target search, included), the time per epoch, the peak RSS against the
   size of the training data.
2. **Full-batch fits** (``solver='lbfgs'``, the learners' defaults) on the
   first ``--subsample`` training rows.
3. **3-NN accuracy** on the held-out rows of each metric (and of the
   Euclidean one), the training rows as the database, by the exact search
   of :mod:`fastmetric.neighbors` (majority of the 3 labels; the nearest
   breaks a three-way tie).
4. **Epoch time against n** (``--epoch-sizes``, default 100k, 1M and 4M
   rows, each data set generated with the same parameters):
   ``--timed-epochs`` epochs (default 1) of each stochastic learner, each
   timed from its start (the set-up, e.g. LMNN's subsample fit and target
   search, reported apart).

Each fit reports the load average (``/proc/loadavg``) when it ended.

The goals of issue 19: each fit on 1M rows under 5 minutes with 2 threads,
peak RSS under 2x the data, accuracy at least that of the subsample's fit,
and an epoch time linear in n.  Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/large_neighbors.py

``--quick`` runs 100,000 rows (epoch sizes 100k and 200k, a 5,000-row
subsample).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from _report import (  # also puts fastmetric on sys.path
    ROOT,
    existing_dir,
    nonnegative_int,
    positive_float,
    positive_int,
    print_rows,
    run_json_child,
)

HELD_OUT = 20_000

FIT_SCRIPT = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.join(sys.argv[1], "benchmarks"))
import numpy as np
import fastmetric
from _report import epoch_times, timed_epochs_fit
path, name, n, params, threads, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), \
    json.loads(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
X = np.load(path + ".X.npy", mmap_mode="r")[:n]
y = np.asarray(np.load(path + ".y.npy", mmap_mode="r")[:n])
if params.get("solver", "lbfgs") == "lbfgs":
    X = np.ascontiguousarray(X)  # a subsample: in memory
# When the epochs start (after the set-up: the initial map, LMNN's
# subsample fit and target search), so that the first epoch is timed alone.
from fastmetric._core.minibatch_learner import MinibatchNeighborsMixin
epochs_start = []
_fit_minibatch = MinibatchNeighborsMixin._fit_minibatch
def timed_fit_minibatch(self, *args, **kwargs):
    epochs_start.append(time.perf_counter())
    return _fit_minibatch(self, *args, **kwargs)
MinibatchNeighborsMixin._fit_minibatch = timed_fit_minibatch
est, fit = timed_epochs_fit(lambda record: getattr(fastmetric, name)(
    n_jobs=threads, random_state=0, callback=record, **params), X, y)
np.save(out, est.components_)
stamps, seconds = fit["stamps"], fit["seconds"]
times = epoch_times(stamps)
if epochs_start and stamps:
    times.insert(0, stamps[0][0] - epochs_start[0])
print(json.dumps({"seconds": seconds,
                  "setup": epochs_start[0] - fit["t0"] if epochs_start else seconds,
                  "load": open("/proc/loadavg").read().split()[:3],
                  "epoch_times": times, "losses": [s[1] for s in stamps],
                  "n_iter": int(est.n_iter_), "peak_rss": fit["peak_rss"],
                  "dtype": str(X.dtype)}))
"""


def make_data(path, n, seed=0):
    """make_classification of issue 19, float32, to ``path.X.npy`` / ``path.y.npy``."""
    from sklearn.datasets import make_classification

    if os.path.exists(path + ".X.npy") and os.path.exists(path + ".y.npy"):
        return False
    X, y = make_classification(n_samples=n, n_features=64, n_informative=20, n_classes=10,
                               n_clusters_per_class=2, random_state=seed)
    np.save(path + ".X.npy", X.astype(np.float32))
    np.save(path + ".y.npy", y.astype(np.int32))
    return True


def ensure_data(directory, n):
    path = os.path.join(directory, f"fastmetric_large_neighbors_{n}")
    t0 = time.perf_counter()
    # In a subprocess: this process stays small (ru_maxrss is inherited).
    made = subprocess.run(
        [sys.executable, "-c", ("import sys; sys.path.insert(0, sys.argv[1]); "
                                "import large_neighbors as m; print(m.make_data(sys.argv[2], "
                                "int(sys.argv[3])))"),
         os.path.dirname(os.path.abspath(__file__)), path, str(n)],
        check=True, capture_output=True, text=True).stdout.strip() == "True"
    print(f"data: {path}.X.npy ({n:,} x 64 float32, {n * 256 / 1e9:.2f} GB), "
          + (f"written in {time.perf_counter() - t0:.0f} s" if made else "reused"), flush=True)
    return path


def run_fit(path, name, n, params, threads, out):
    cmd = [sys.executable, "-c", FIT_SCRIPT, ROOT, path, name, str(n), json.dumps(params),
           str(threads), out]
    return run_json_child(cmd, f"{name} {params} on {n} rows")


def knn_accuracy(path, n_train, n_total, components, threads):
    """3-NN accuracy on the held-out rows, the training rows as database."""
    from fastmetric.neighbors import kneighbors

    X = np.load(path + ".X.npy", mmap_mode="r")
    y = np.load(path + ".y.npy", mmap_mode="r")
    X_db, y_db = X[:n_train], np.asarray(y[:n_train])
    X_q, y_q = np.asarray(X[n_total - HELD_OUT:]), np.asarray(y[n_total - HELD_OUT:])
    idx = kneighbors(X_q, X_db, 3, metric=components, return_distance=False, n_jobs=threads)
    votes = y_db[idx]
    majority = np.where(votes[:, 1] == votes[:, 2], votes[:, 1], votes[:, 0])
    return float(np.mean(majority == y_q))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Stochastic NCA and LMNN at 1M rows "
                                            "(see the module docstring).")
    p.add_argument("--n-samples", type=positive_int, default=1_000_000,
                   help=f"rows made, the last {HELD_OUT:,} held out (default 1,000,000)")
    p.add_argument("--quick", action="store_true",
                   help="100,000 rows, epoch sizes 100k and 200k, a 5,000-row subsample")
    p.add_argument("--subsample", type=positive_int, default=20_000)
    p.add_argument("--epoch-sizes", type=positive_int, nargs="*", default=None,
                   help="rows for the epoch timings (default 100k 1M 4M; none: skip)")
    p.add_argument("--nca-epochs", type=positive_int, default=2)
    p.add_argument("--lmnn-epochs", type=positive_int, default=2)
    p.add_argument("--lmnn-init-subsample", type=nonnegative_int, default=5_000,
                   help="LMNN's init_subsample (0: None, start from init)")
    p.add_argument("--batch-size", type=positive_int, default=1000)
    p.add_argument("--n-candidates", type=positive_int, default=1000)
    p.add_argument("--nca-learning-rate", type=positive_float, default=0.005)
    p.add_argument("--lmnn-learning-rate", type=positive_float, default=0.001)
    p.add_argument("--learners", nargs="+", default=["NCA", "LMNN"], choices=["NCA", "LMNN"])
    p.add_argument("--no-euclidean", action="store_true",
                   help="skip the accuracy of the Euclidean metric")
    p.add_argument("--target-block-size", type=positive_int, default=50_000)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--dir", type=existing_dir, default="/tmp")
    p.add_argument("--skip-subsample", action="store_true")
    p.add_argument("--skip-fits", action="store_true",
                   help="only the epoch timings")
    p.add_argument("--timed-epochs", type=positive_int, default=1,
                   help="epochs per epoch timing (each timed from its start)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.n_samples = 100_000
        args.subsample = 5_000
        if args.epoch_sizes is None:
            args.epoch_sizes = [100_000, 200_000]
    if args.epoch_sizes is None:
        args.epoch_sizes = [100_000, 1_000_000, 4_000_000]
    # The accuracy queries the last HELD_OUT rows against the rows before
    # them, by their 3 nearest neighbours.
    if args.n_samples < HELD_OUT + 3:
        p.error(f"--n-samples must be at least {HELD_OUT + 3:,} (the last {HELD_OUT:,} rows "
                f"are held out), got {args.n_samples}")
    n_train = args.n_samples - HELD_OUT
    if not args.skip_subsample and args.subsample > n_train:
        p.error(f"--subsample must be at most the {n_train:,} training rows, "
                f"got {args.subsample}")
    return args


def stochastic_params(args, name, epochs):
    params = dict(solver="adam", batch_size=args.batch_size, n_candidates=args.n_candidates,
                  learning_rate=(args.nca_learning_rate if name == "NCA"
                                 else args.lmnn_learning_rate),
                  max_iter=epochs, n_iter_no_change=epochs)
    if name == "LMNN":
        params.update(target_block_size=args.target_block_size, convergence_tol=0.0,
                      init_subsample=args.lmnn_init_subsample or None)
    else:
        params.update(tol=0.0)
    return params


def main(argv=None):
    args = parse_args(argv)
    print(f"load: {os.getloadavg()}", flush=True)
    n_total = args.n_samples
    n_train = n_total - HELD_OUT
    path = ensure_data(args.dir, n_total)
    data_bytes = 4 * 64 * n_train
    out_dir = os.path.join(args.dir, "fastmetric_large_neighbors_models")
    os.makedirs(out_dir, exist_ok=True)
    fits = []
    epochs_of = {"NCA": args.nca_epochs, "LMNN": args.lmnn_epochs}
    for name in ([] if args.skip_fits else args.learners):
        epochs = epochs_of[name]
        out = os.path.join(out_dir, f"{name}_{n_total}_adam.npy")
        res = run_fit(path, name, n_train, stochastic_params(args, name, epochs),
                      args.threads, out)
        fits.append((f"{name} adam, {n_train:,} rows", name, n_train, res, out))
        print(f"{name} adam: {res['seconds']:.1f} s (set-up {res['setup']:.1f} s), epochs "
              f"{res['epoch_times']}, losses {res['losses']}, peak RSS "
              f"{res['peak_rss'] / 1e9:.2f} GB, load {res['load']}", flush=True)
        if not args.skip_subsample:
            out = os.path.join(out_dir, f"{name}_{n_total}_sub{args.subsample}.npy")
            res = run_fit(path, name, args.subsample, {}, args.threads, out)
            fits.append((f"{name} lbfgs, {args.subsample:,} rows", name, args.subsample, res,
                         out))
            print(f"{name} lbfgs subsample: {res['seconds']:.1f} s, load {res['load']}",
                  flush=True)
    body = []
    if not args.no_euclidean and not args.skip_fits:
        base = knn_accuracy(path, n_train, n_total, None, args.threads)
        body.append(["Euclidean (no fit)", "-", "-", "-", "-", "-", "-", "-", f"{base:.4f}"])
    for label, _name, n, res, out in fits:
        acc = knn_accuracy(path, n_train, n_total, np.load(out), args.threads)
        stochastic = "adam" in label
        epoch = setup = "-"
        if stochastic:
            epoch = f"{np.median(res['epoch_times']):.1f} s" if res["epoch_times"] else "-"
            setup = f"{res['setup']:.1f} s"
        rss = res["peak_rss"]
        body.append([label, f"{res['seconds']:.1f} s", setup, str(res["n_iter"]), epoch,
                     f"{rss / 1e9:.2f} GB",
                     f"{rss / (4 * 64 * n):.2f}x" if stochastic else "-",
                     " ".join(res["load"]), f"{acc:.4f}"])
        print(f"{label}: 3-NN accuracy {acc:.4f}", flush=True)
    if body:
        print(f"\n{n_train:,} training rows ({data_bytes / 1e9:.2f} GB float32), "
              f"{HELD_OUT:,} held out; {args.threads} threads")
        print_rows(["fit", "time", "set-up", "epochs / iters", "epoch (median)", "peak RSS",
                    "RSS / data", "load after", "3-NN accuracy (held out)"], body,
                   args.markdown)

    rows = []
    for n in args.epoch_sizes:
        p = ensure_data(args.dir, n) if n != n_total else path
        for name in args.learners:
            params = stochastic_params(args, name, args.timed_epochs)
            res = run_fit(p, name, n, params, args.threads,
                          os.path.join(out_dir, f"{name}_{n}_epochs.npy"))
            epoch = float(np.median(res["epoch_times"]))
            rows.append([name, f"{n:,}", f"{epoch:.1f} s", f"{1e6 * epoch / n:.1f} us",
                         f"{res['setup']:.1f} s", f"{res['peak_rss'] / 1e9:.2f} GB",
                         " ".join(res["load"])])
            print(f"{name} at {n:,} rows: epochs {res['epoch_times']}, set-up "
                  f"{res['setup']:.1f} s, load {res['load']}", flush=True)
    if rows:
        print(f"\nepoch time (median of {args.timed_epochs}), {args.threads} threads")
        print_rows(["learner", "rows", "epoch", "per row", "set-up", "peak RSS", "load after"],
                   rows, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
