#!/usr/bin/env python
"""LDML_Supervised with a stochastic solver on a large float32 memmap.

Writes synthetic labelled rows (``--max-rows`` x ``--features`` float32, 10
classes: random class means of scale 0.3 per feature plus unit noise; 2.5 GB for the
default 10,000,000 x 64) to a ``numpy.memmap`` file once, then, for each
size n in ``--sizes``, fits ``LDML_Supervised(solver='adam')`` on the first
n rows in a fresh subprocess:

* ``n_pairs = --pairs-per-row * n`` pairs per epoch, drawn minibatch by
  minibatch (``batch_size=--batch-size``), so an epoch visits every row
  about 2 x pairs-per-row times and costs O(n);
* ``--epochs`` epochs with ``tol=0`` (no early stop), ``init='identity'``;
* reported: the fit time, the time of each epoch after the first (the
  first also holds the set-up: label grouping, the initial bias), and the
  peak resident memory of the process (``ru_maxrss``; it counts the pages
  of the memmap that the process touched), against the data size.

The goals of issue 6: the largest fit finishes on this 2-core, 24 GB
machine with peak memory under 1.5x the data size, and the time per epoch
grows linearly with n.  Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scale_memmap.py

(``--sizes 100000 1000000`` and ``--max-rows 1000000`` for a quick run.)
The data file is kept in ``--dir`` for later runs (``--remove`` deletes it).
"""
import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from _report import (  # also puts fastmetric on sys.path
    ROOT,
    existing_dir,
    nonnegative_int,
    positive_int,
    print_rows,
    run_json_child,
)

FIT_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.join(sys.argv[1], "benchmarks"))
import numpy as np
from fastmetric import LDML_Supervised
from _report import epoch_times, timed_epochs_fit
path, n, d, pairs_per_row, batch, epochs, threads = sys.argv[2], *map(int, sys.argv[3:9])
X = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
y = np.load(path + ".labels.npy", mmap_mode="r")[:n]
est, fit = timed_epochs_fit(lambda record: LDML_Supervised(
    solver="adam", n_pairs=pairs_per_row * n, batch_size=batch, max_iter=epochs, tol=0.0,
    init="identity", learning_rate=0.01, random_state=0, n_jobs=threads, callback=record),
    X, y)
stamps = fit["stamps"]
print(json.dumps({"seconds": fit["seconds"], "first_epoch": stamps[0][0] - fit["t0"],
                  "epoch_times": epoch_times(stamps), "losses": [s[1] for s in stamps],
                  "peak_rss": fit["peak_rss"], "components_dtype": str(est.components_.dtype),
                  "transform_dtype": str(est.transform(X[:4]).dtype),
                  "finite": bool(np.all(np.isfinite(est.components_)))}))
"""


def make_data(path, n, d, seed, block=1_000_000):
    """Write n x d float32 rows and their labels, block by block."""
    if os.path.exists(path) and os.path.getsize(path) == 4 * n * d and \
            os.path.exists(path + ".labels.npy"):
        return False
    rng = np.random.default_rng(seed)
    n_classes = 10
    means = rng.standard_normal((n_classes, d)).astype(np.float32) * 0.3
    X = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, d))
    y = np.empty(n, dtype=np.int32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        lab = rng.integers(0, n_classes, stop - start)
        noise = rng.standard_normal((stop - start, d), dtype=np.float32)
        X[start:stop] = means[lab] + noise
        y[start:stop] = lab
    X.flush()
    del X
    np.save(path + ".labels.npy", y)
    return True


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="LDML_Supervised (adam) on a float32 memmap "
                                            "(see the module docstring).")
    p.add_argument("--dir", type=existing_dir, default="/tmp",
                   help="where the data file lives (default /tmp)")
    p.add_argument("--max-rows", type=positive_int, default=10_000_000)
    p.add_argument("--features", type=positive_int, default=64)
    p.add_argument("--sizes", type=positive_int, nargs="+",
                   default=[100_000, 1_000_000, 10_000_000])
    p.add_argument("--pairs-per-row", type=positive_int, default=2)
    p.add_argument("--batch-size", type=positive_int, default=10_000)
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--remove", action="store_true",
                   help="delete the data file at the end (also when the run fails)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    # Checked before the data file is written: every fit reads the first n
    # rows of that file.
    too_big = [n for n in args.sizes if n > args.max_rows]
    if too_big:
        p.error(f"--sizes {' '.join(map(str, too_big))}: larger than --max-rows "
                f"{args.max_rows}")
    return args


def remove_data(path):
    """Delete the data file and its labels, whichever of the two exist."""
    for name in (path, path + ".labels.npy"):
        try:
            os.remove(name)
        except FileNotFoundError:
            pass


def main(argv=None):
    args = parse_args(argv)
    path = os.path.join(args.dir, f"fastmetric_scale_{args.max_rows}x{args.features}"
                                  f"_s{args.seed}.f32")
    try:
        return run(args, path)
    finally:
        if args.remove:
            remove_data(path)


def run(args, path):
    d = args.features
    t0 = time.perf_counter()
    # In a subprocess: ru_maxrss survives fork and exec, so this process must
    # stay small for the fits' peak memory to be their own.
    made = subprocess.run(
        [sys.executable, "-c", ("import sys; sys.path.insert(0, sys.argv[1]); import scale_memmap as s; "
                                "print(s.make_data(sys.argv[2], *map(int, sys.argv[3:])))"),
         os.path.dirname(os.path.abspath(__file__)), path, str(args.max_rows), str(d),
         str(args.seed)], check=True, capture_output=True, text=True).stdout.strip() == "True"
    print(f"data: {path} ({args.max_rows} x {d} float32, "
          f"{4 * args.max_rows * d / 1e9:.2f} GB), "
          + (f"written in {time.perf_counter() - t0:.1f} s" if made else "reused"))
    rows, body, failed = [], [], False
    for n in args.sizes:
        cmd = [sys.executable, "-c", FIT_SCRIPT, ROOT, path, str(n), str(d),
               str(args.pairs_per_row), str(args.batch_size), str(args.epochs),
               str(args.threads)]
        try:
            res = run_json_child(cmd, f"n={n}: the fit")
        except RuntimeError as err:
            print(err)
            failed = True
            continue
        data_bytes = 4 * n * d
        epoch = statistics.median(res["epoch_times"]) if res["epoch_times"] else \
            res["first_epoch"]
        rows.append((n, epoch))
        body.append([f"{n:,}", f"{data_bytes / 1e9:.3f} GB", f"{res['seconds']:.1f} s",
                     f"{epoch:.2f} s", f"{1e6 * epoch / n:.2f} us",
                     f"{res['peak_rss'] / 1e9:.2f} GB",
                     f"{res['peak_rss'] / data_bytes:.2f}x",
                     " -> ".join(f"{v:.4f}" for v in res["losses"]),
                     "yes" if res["finite"] else "NO"])
        if not res["finite"] or res["transform_dtype"] != "float32":
            failed = True
    print(f"\nLDML_Supervised(solver='adam', n_pairs={args.pairs_per_row} n, "
          f"batch_size={args.batch_size}, {args.epochs} epochs, n_jobs={args.threads}) "
          "on the first n rows of the memmap, each in a fresh process")
    print_rows(["n", "data", "fit", "epoch (median)", "epoch / row", "peak RSS",
                "peak / data", "loss per epoch", "finite"], body, args.markdown)
    for (n0, t0_), (n1, t1) in itertools.pairwise(rows):
        print(f"epoch time x{t1 / t0_:.1f} for rows x{n1 / n0:.0f} (linear: x{n1 / n0:.0f})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
