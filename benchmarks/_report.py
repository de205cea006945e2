"""Pieces shared by the comparison scripts in this folder: timing, tables,
the environment and load reports, the warnings about a machine that is not
quiet, and the command-line options of the metric-learn peer.

Importing this module makes ``import fastmetric`` work from a checkout: an
installed fastmetric is used if there is one, else the in-place build of
this repository (``python setup.py build_ext --inplace``).
"""
import argparse
import gc
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("fastmetric") is None:
    sys.path.insert(0, ROOT)

# Set on the shared machines; they slow numpy's OpenBLAS (unset them in the
# benchmark command only).
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# --------------------------------------------------------------------------
# argparse ``type=`` checks: a bad value becomes a usage error (exit status 2,
# "error: argument --repeat: must be a positive integer, got 0") before any
# work starts, instead of a traceback or a hang halfway through a run.
# --------------------------------------------------------------------------

def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive_int(text):
    """An integer >= 1: a count, a size, a number of threads or workers."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def nonnegative_int(text):
    """An integer >= 0: a seed, or a count where 0 means none."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def positive_float(text):
    """A finite number > 0: a timeout, a learning rate."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def existing_file(text):
    """The path of a file that exists (an input read later in the run)."""
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def existing_dir(text):
    """The path of a directory that exists (where data files are written)."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"no such directory: {text!r}")
    return text


def median_time(fn, repeat, warmup=2):
    """Median wall time of ``repeat`` calls of fn() after ``warmup`` calls.

    Two warm-up calls, because on these virtual machines the first calls
    that touch a new size of memory pay for it being backed by the host
    (seen as 2-3x slower first calls, for numpy and fastmetric alike).  The
    variants are timed one after the other, not interleaved: interleaved,
    each side's large allocations and spinning threads slowed the other
    (numpy's paired baseline took 1.1 s instead of 0.5 s).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_fit(estimator, *args):
    """Wall time of ``estimator.fit(*args)``, its warnings silenced (a fit
    with a fixed iteration budget warns that it did not converge)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        estimator.fit(*args)
        return time.perf_counter() - t0


def peak_memory_gb():
    """Peak resident memory of this process so far, in GB (``ru_maxrss`` is
    in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_average():
    """The 1, 5 and 15 minute load averages as text ("n/a" where the system
    has none)."""
    if hasattr(os, "getloadavg"):
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "n/a"


def warn_openblas_vars(script, effect):
    """Warn on stderr when the shared machines' OpenBLAS variables are set.

    Parameters
    ----------
    script : str
        The script's file name, for the command line that unsets them.
    effect : str
        What the variables do to this comparison, e.g. "slows numpy's
        OpenBLAS".

    Returns
    -------
    set_vars : list of str
        The variables that are set, for :func:`print_closing`.
    """
    set_vars = [v for v in OPENBLAS_VARS if v in os.environ]
    if set_vars:
        print("WARNING: " + ", ".join(f"{v}={os.environ[v]}" for v in set_vars)
              + f" is set; it {effect}. Run as\n"
              f"  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/{script}\n",
              file=sys.stderr, flush=True)
    return set_vars


def warn_if_busy(limit=0.5):
    """Warn on stderr when the 1-minute load average exceeds ``limit``: other
    processes take cores from both fastmetric's OpenMP threads and OpenBLAS's,
    and the timings then mostly measure waiting."""
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load1 > limit:
        print(f"WARNING: 1-minute load average is {load1:.2f} before starting: the machine is "
              "not quiet and the timings (above all the multi-threaded ones) are unreliable.",
              file=sys.stderr, flush=True)


def print_closing(set_vars, whose, *, memory=False):
    """The lines a comparison prints last: with ``memory``, this process's
    peak resident memory; a reminder when OpenBLAS variables were set
    (``set_vars`` from :func:`warn_openblas_vars`) while ``whose`` timings
    were taken; the load average."""
    if memory:
        print(f"peak resident memory of this run: {peak_memory_gb():.2f} GB")
    if set_vars:
        print(f"WARNING: {whose} timings taken with " + " and ".join(set_vars) + " set (see above).")
    print(f"load average at the end (1, 5, 15 min): {load_average()}")


def add_peer_options(parser, *, timeout, repeat, fits):
    """The options of a comparison with metric-learn.

    ``--peer-python`` and ``--peer-timeout`` (default ``timeout`` seconds):
    metric-learn runs in another interpreter, as it needs scikit-learn < 1.8;
    ``--repeat`` (default ``repeat``): the timed fastmetric fits ``fits``
    (e.g. "per learner"), whose median is reported; ``--threads``:
    fastmetric's ``n_jobs``.
    """
    parser.add_argument("--peer-python", help="interpreter with metric-learn installed "
                                              "(e.g. /tmp/mlvenv/bin/python); skipped if absent")
    parser.add_argument("--peer-timeout", type=positive_float, default=timeout,
                        help=f"seconds before a metric-learn run is abandoned (default {timeout:g})")
    parser.add_argument("--repeat", type=positive_int, default=repeat,
                        help=f"timed fastmetric fits {fits} (median; default {repeat})")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="fastmetric n_jobs (default 2)")


def peer_unusable(python):
    """Why the peer interpreter ``python`` cannot run, or None when it can."""
    if not python:
        return "skipped: no --peer-python given (metric-learn needs scikit-learn < 1.8)"
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return f"skipped: {python} is not an executable interpreter"
    return None


def last_json_line(stdout):
    """The last line of a child's output that holds a JSON object, or None."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    return lines[-1] if lines else None


def run_json_child(cmd, what):
    """Run a child process and return the JSON object of its last JSON line.

    The large-data scripts fit in a child process each, so that every fit's
    peak RSS is its own.  RuntimeError naming ``what``, with the end of the
    child's stderr, when it fails or prints no JSON line.
    """
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    line = last_json_line(proc.stdout)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-3000:]}")
    return json.loads(line)


def timed_epochs_fit(make_estimator, X, y):
    """In a child process: fit ``make_estimator(callback)`` on ``(X, y)``,
    its warnings silenced, stamping each epoch through the callback.

    Returns the estimator and ``{"seconds", "stamps", "t0", "peak_rss"}``:
    the wall time of ``fit``, the ``(time, loss)`` pairs of the epochs, the
    start time, and the process's peak resident set size in bytes.
    """
    stamps = []

    def record(estimator, epoch, loss):
        stamps.append((time.perf_counter(), float(loss)))

    est = make_estimator(record)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KB on Linux
    return est, {"seconds": seconds, "stamps": stamps, "t0": t0, "peak_rss": rss}


def epoch_times(stamps):
    """Seconds between consecutive epoch stamps (the first epoch excluded)."""
    return [b[0] - a[0] for a, b in zip(stamps, stamps[1:])]


def run_peer_script(python, script, arrays, argv, timeout):
    """Run ``script`` in the peer interpreter on arrays saved as ``.npy`` files.

    Parameters
    ----------
    python : str or None
        The peer interpreter (``--peer-python``).
    script : str
        Python source; its first argument is a temporary directory holding
        ``<name>.npy`` for each entry of ``arrays``, then come ``argv``.  It
        reports by printing a JSON object on one line.
    arrays : dict of str to ndarray
    argv : list of str
    timeout : float
        Seconds before the run is abandoned.

    Returns
    -------
    result : dict or None
        The last JSON line the script printed; None when it did not run, ran
        out of time or failed.
    status : str
        ``"ok"``, ``"timeout"``, or why there is no result.
    """
    import numpy as np

    unusable = peer_unusable(python)
    if unusable:
        return None, unusable
    with tempfile.TemporaryDirectory() as tmp:
        for name, arr in arrays.items():
            np.save(os.path.join(tmp, name + ".npy"), arr)
        try:
            proc = subprocess.run([python, "-c", script, tmp, *argv], check=False,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, "timeout"
    line = last_json_line(proc.stdout)
    if proc.returncode != 0 or line is None:
        return None, f"failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
    return json.loads(line), "ok"


def add_size_options(parser, full, quick, meanings):
    """``--quick`` and an integer option for each problem size.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    full, quick : dict of str to int
        The default sizes, and the smaller ones of ``--quick`` (a smoke test).
    meanings : dict of str to str
        What each size key counts, for the help; key ``pw_n`` is option
        ``--pw-n``.

    Returns
    -------
    resolve : callable
        ``resolve(args)``, after parsing: gives each size option left unset
        its ``--quick`` or default value (a size below 1 is a usage error)
        and returns the sizes used, as a dict.
    """
    parser.add_argument("--quick", action="store_true",
                        help="the --quick sizes below: a smoke test (its ratios mean little)")
    for key, meaning in meanings.items():
        parser.add_argument("--" + key.replace("_", "-"), type=int,
                            help=f"{meaning} (default {full[key]:,}; --quick {quick[key]:,})")

    def resolve(args):
        sizes = dict(quick if args.quick else full)
        for key, default in list(sizes.items()):
            value = getattr(args, key)
            if value is None:
                setattr(args, key, default)
            elif value < 1:
                parser.error(f"--{key.replace('_', '-')} must be a positive integer, got {value}")
            sizes[key] = getattr(args, key)
        return sizes

    return resolve


def fmt_time(t):
    """A duration in s, ms or us; '-' for None."""
    if t is None:
        return "-"
    if t >= 1.0:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.1f} ms"
    return f"{t * 1e6:.0f} us"


def print_rows(head, body, markdown):
    """Print a table: markdown, or plain columns padded to their widths."""
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for line in body:
            print("| " + " | ".join(line) + " |")
        return
    # max over a list: an empty body (every run failed) leaves the headings' widths.
    widths = [max([len(h)] + [len(line[i]) for line in body]) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for line in body:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))


def print_environment(threads):
    """The lines every comparison prints first.

    fastmetric (where it was imported from, OpenMP, the threads ``n_jobs=threads``
    gives), the versions, the BLAS thread pools under the limit the numpy and
    peer baselines run with, the OpenBLAS/OpenMP variables and the load.
    """
    import platform

    import numpy as np
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info, threadpool_limits

    import fastmetric
    from fastmetric.kernels.openmp_helpers import openmp_enabled, openmp_max_threads
    from fastmetric._core.threads import effective_n_threads

    print(f"fastmetric {fastmetric.__version__} from {os.path.dirname(fastmetric.__file__)}")
    print(f"  OpenMP: {'enabled' if openmp_enabled() else 'DISABLED'}, "
          f"omp_get_max_threads() = {openmp_max_threads()}, "
          f"n_jobs={threads} -> {effective_n_threads(threads)} thread(s)")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"scikit-learn {sklearn.__version__}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"BLAS thread pools under the baselines' limit ({threads}):")
    with threadpool_limits(limits=threads, user_api="blas"):
        for d in threadpool_info():
            print(f"  {d['user_api']:<7} {d['internal_api']:<10} num_threads={d['num_threads']:<3} "
                  f"version={d.get('version')} arch={d.get('architecture', '-')} "
                  f"{os.path.basename(d['filepath'])}")
    for var in OPENBLAS_VARS + ("OMP_NUM_THREADS",):
        print(f"  {var}={os.environ.get(var, '<unset>')}")
    if any(os.environ.get(v) for v in OPENBLAS_VARS):
        print("  warning: OPENBLAS_* variables are set; unset them for representative timings")
    print(f"load average (1, 5, 15 min): {load_average()}")


def check_large_classification(parser, args):
    """``parser.error`` unless ``--large-n/-d/-classes`` suit make_classification.

    It draws ``d // 4`` informative features and puts each class on a vertex
    of a hypercube in them: at most ``2 ** (d // 4)`` classes (and no more
    than rows).
    """
    if args.large_d < 4:
        parser.error(f"--large-d must be at least 4 (a quarter of the features are "
                     f"informative), got {args.large_d}")
    top = min(args.large_n, 2 ** (args.large_d // 4))
    if not 2 <= args.large_classes <= top:
        parser.error(f"--large-classes must lie in [2, {top}] (at most --large-n and "
                     f"2 ** (--large-d // 4)), got {args.large_classes}")
