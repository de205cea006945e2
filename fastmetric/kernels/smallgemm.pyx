"""The one switch of the small-GEMM kernels (see smallgemm.pxd).

Every kernel module that cimports ``smallgemm.pxd`` asks
:c:func:`small_gemm_available` before using the AVX-512F kernels; the flag
behind it is defined here only, so that one setting serves the whole
package.
"""
from fastmetric.kernels.smallgemm cimport fm_small_gemm_cpu_ok, fm_small_gemm_env_enabled

# -1 until first read, then 1 (use the kernels where the CPU can) or 0 (BLAS
# everywhere).  FASTMETRIC_SMALL_GEMM=0 in the environment starts it at 0.  A
# race between threads on the first read stores the same value twice.
cdef int _enabled = -1


cdef bint small_gemm_available() noexcept nogil:
    """Whether the kernels are switched on and the CPU can run them."""
    global _enabled
    if _enabled < 0:
        _enabled = fm_small_gemm_env_enabled()
    return _enabled != 0 and fm_small_gemm_cpu_ok()


cdef void set_small_gemm_enabled(bint on) noexcept nogil:
    """Switch the kernels on or off, for every kernel module."""
    global _enabled
    _enabled = on


def _set_small_gemm(bint enabled):
    """Use the small-GEMM kernels (True, the default where the CPU has
    AVX-512F) or BLAS (False) for every kernel's products; returns whether
    the kernels are now in use.  For tests and benchmarks."""
    set_small_gemm_enabled(enabled)
    return bool(small_gemm_available())


def small_gemm_in_use():
    """Whether the kernels' small products use the AVX-512F kernels."""
    return bool(small_gemm_available())
