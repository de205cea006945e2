"""LSML's pair quadratic forms with the thread count chosen for the work:
:func:`pair_quadratic_forms` over the kernel
:func:`fastmetric.kernels.lsml.quadratic_forms` (whose module docstring
gives the math and the cost).
"""
from fastmetric._core.threads import threads_for_work
from fastmetric.kernels.lsml import quadratic_forms

__all__ = ["pair_quadratic_forms"]


def pair_quadratic_forms(X, S, a, b, out, n_threads=1):
    """``out[p] = (x_a - x_b)^T S (x_a - x_b)`` for valid indices (unchecked),
    by :func:`fastmetric.kernels.lsml.quadratic_forms` (same parameters) on
    at most ``n_threads`` threads: fewer when the work is too small to share.
    """
    n, d = X.shape
    # GEMM work ~ n d^2, pair work ~ n_pairs d: ~2^20 multiply-adds per thread
    # (as the pair scatter); the cap never changes the result.
    n_threads = threads_for_work(n_threads, n * d * d + a.shape[0] * d, 1 << 20)
    return quadratic_forms(X, S, a, b, out, n_threads)
