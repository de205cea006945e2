"""Splitting an (n_pairs, 2) index array into its two columns, in parallel.

Every pair kernel needs the two ends of its pairs as contiguous ``intp``
arrays, and the validation needs their smallest and largest values.  Done by
numpy that is four passes over the pairs (min, max, two strided copies); here
it is one parallel pass.  The result does not depend on the number of
threads.
"""
import numpy as np

from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t

ctypedef fused index_t:
    int32_t
    int64_t

# Pairs per work unit; below a few units one thread does the work.
DEF_SPLIT_CHUNK = 65536


def split_index_pairs(const index_t[:, ::1] pairs, int n_threads, a_out=None, b_out=None):
    """Columns ``a``, ``b`` (intp) of ``pairs`` and the extreme index values.

    Parameters
    ----------
    pairs : ndarray of shape (n_pairs, 2), int32 or int64, C-contiguous
    n_threads : int
    a_out, b_out : ndarray of shape (n_pairs,), intp, optional
        Where to write the columns (fastmetric._core.validation passes
        aligned arrays on huge pages: every thread writes them at once);
        new arrays by default.

    Returns
    -------
    a, b : ndarray of shape (n_pairs,), intp
    lo, hi : int
        The smallest and largest index in ``pairs`` (0 and -1 when empty).
    """
    cdef Py_ssize_t n_pairs = pairs.shape[0]
    cdef Py_ssize_t chunk = DEF_SPLIT_CHUNK
    # O(1) checks: a wrong width read past the rows' end, and a short
    # a_out / b_out was written past its end (heap corruption).
    if pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (n_pairs, 2); got ({pairs.shape[0]}, {pairs.shape[1]}).")
    for name, given in (("a_out", a_out), ("b_out", b_out)):
        if given is not None and (not isinstance(given, np.ndarray) or given.dtype != np.intp
                                  or given.shape != (n_pairs,)):
            raise ValueError(f"{name} must be an intp array of shape ({n_pairs},); got "
                             f"{getattr(given, 'dtype', type(given).__name__)} of shape "
                             f"{getattr(given, 'shape', None)}.")
    cdef Py_ssize_t n_chunks = (n_pairs + chunk - 1) // chunk
    a_arr = np.empty(n_pairs, dtype=np.intp) if a_out is None else a_out
    b_arr = np.empty(n_pairs, dtype=np.intp) if b_out is None else b_out
    lo_arr = np.empty(max(n_chunks, 1), dtype=np.int64)
    hi_arr = np.empty(max(n_chunks, 1), dtype=np.int64)
    cdef Py_ssize_t[::1] a = a_arr, b = b_arr
    cdef int64_t[::1] lo = lo_arr, hi = hi_arr
    cdef Py_ssize_t c, p, stop
    cdef int64_t u, v, cmin, cmax
    if n_pairs == 0:
        return a_arr, b_arr, 0, -1
    n_threads = max(1, min(n_threads, <int> n_chunks))
    for c in prange(n_chunks, nogil=True, schedule='dynamic', num_threads=n_threads):
        stop = min((c + 1) * chunk, n_pairs)
        cmin = pairs[c * chunk, 0]
        cmax = cmin
        for p in range(c * chunk, stop):
            u = pairs[p, 0]
            v = pairs[p, 1]
            a[p] = u
            b[p] = v
            cmin = min(cmin, min(u, v))
            cmax = max(cmax, max(u, v))
        lo[c] = cmin
        hi[c] = cmax
    return a_arr, b_arr, int(lo_arr.min()), int(hi_arr.max())
