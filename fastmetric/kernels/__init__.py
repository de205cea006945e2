"""The kernels (layer 1): OpenMP-parallel Cython and C, the stable cimport path.

Each module computes one family over float32/float64 memoryviews, writes into
arrays the caller allocates, and takes a thread count; none knows of
estimators, and none imports a fastmetric Python module (validation, thread
counts and work arrays belong to the metric core, :mod:`fastmetric._core`).
Other libraries' Cython code cimports the ``.pxd`` files here, whose C lives in
the headers ``include/fm_<family>.h``, with :func:`fastmetric.get_include` on
both Cython's ``include_path`` and the compiler's ``include_dirs``::

    from fastmetric.kernels.distances cimport transform_rows

* ``common``: OpenMP shim, log-loss point functions, counter-based random
  generator, BLAS GEMM; ``smallgemm``: AVX-512 products with a small side
  (and the package's one switch for them);
* ``distances``: pairwise and paired Mahalanobis distances;
* ``pair_loss``: the LDML log-loss and its gradient over pairs;
* ``sampling``, ``chunks``, ``pair_index``: pairs and chunks drawn from labels,
  index pairs split and range-checked;
* ``pair_scatter``: weighted pair scatter matrices;
* ``itml``, ``lmnn``, ``lsml``, ``scml``, ``softmax_neighbors``: the learners'
  own hot loops;
* ``team``: the process's one team of threads for short regions on busy
  machines (``include/fm_team.h``), whose caller takes over a late helper's
  chunk instead of waiting for it; ``pair_loss`` and ``softmax_neighbors``
  run their main pass on it under load, ``lmnn`` its impostor search,
  ``distances`` its paired kernel.

The validated Python functions over these kernels live in the core
(``_core.distances``, ``_core.scatter``, ``_core.sampling``, ``_core.objectives``)
and the public ones are re-exported by :mod:`fastmetric.pairwise`.
"""
import os as _os

# ---------------------------------------------------------------------------
# How idle OpenMP threads wait
# ---------------------------------------------------------------------------
# GNU libgomp lets a thread that waits (for the next parallel region, or at a
# barrier) spin for GOMP_SPINCOUNT pause instructions before it sleeps;
# unset, that is 300,000 pauses, about 3 ms on the development machine.
# On a quiet machine the spinning costs nothing; when other processes share
# the cores it takes their time slices from the threads that have work (and
# from the main thread between kernel calls): at a load average of 15 on 2
# cores, NCA on breast cancer took 2.5 s with 2 threads against 0.12 s with
# 1 (before the default thread count followed the load).  Too short a spin
# costs quiet speed, since the small fits' parallel regions often follow
# each other within microseconds: 0 and 1,000 pauses lost 10-40 %, 3,000
# (about 30 us) 5-17 % on LDML_Supervised, LMNN and NCA on breast cancer and
# LDML_Supervised and LMNN on digits, against 30,000 or the default
# (alternating processes, quiet, 2026-12-06).  30,000 (about 0.3 ms) was as
# fast as the default quiet on every fit timed, and beside one or two busy
# processes benchmarks/busy_machine.py met the same goals with it as with
# 3,000: under load the default runs one thread, fm_team.h's team (whose
# helpers spin 300 pauses), or more threads than CPUs, where libgomp cuts
# every spin to 100 pauses by itself.
# libgomp reads the variable once, when it is loaded, so it is set here,
# before any kernel module loads libgomp, and only when the user has set
# neither it nor OMP_WAIT_POLICY (their choice stands).  It stays in the
# environment: child processes and a libgomp loaded later inherit it.
# (scikit-learn's own libgomp, used by the k-means of ClusterLDML, is loaded
# earlier, by the scikit-learn imports, and keeps its default.)
SHORT_SPINCOUNT = "30000"


def _libgomp_loaded(maps_path="/proc/self/maps"):
    """True when a libgomp.so is mapped into this process already (then
    setting the variable has no effect on it); False when not, or unknown."""
    try:
        with open(maps_path) as f:
            return any("/libgomp.so" in line for line in f)
    except OSError:
        return False


def short_spin_setting(environ, libgomp_loaded):
    """The GOMP_SPINCOUNT value to set, and why.

    Parameters
    ----------
    environ : mapping
        The process environment.
    libgomp_loaded : bool
        Whether libgomp is loaded already.

    Returns
    -------
    value : str or None
        The value to set, or None to leave the environment alone.
    note : str
        What decided it (``fastmetric.show_config()`` prints it).
    """
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        if name in environ:
            return None, f"{name}={environ[name]} set by the user"
    if libgomp_loaded:
        return None, "libgomp was loaded before fastmetric: its wait policy stands"
    return SHORT_SPINCOUNT, f"GOMP_SPINCOUNT={SHORT_SPINCOUNT} set by fastmetric"


_value, WAIT_POLICY = short_spin_setting(_os.environ, _libgomp_loaded())
if _value is not None:
    _os.environ["GOMP_SPINCOUNT"] = _value
del _value
