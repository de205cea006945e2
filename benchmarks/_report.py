"""Pieces shared by the comparison scripts in this folder.

Importing this module makes ``import fastmetric`` work from a checkout: an
installed fastmetric is used if there is one, else the in-place build of
this repository (``python setup.py build_ext --inplace``).
"""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("fastmetric") is None:
    sys.path.insert(0, ROOT)

# Set on the shared machines; they slow numpy's OpenBLAS (unset them in the
# benchmark command only).
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


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
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(head)]
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
    if hasattr(os, "getloadavg"):
        print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
