"""Build and runtime information: ``show_config``, ``get_include``."""
import os
import platform
import sys

# The package version (defined here, below the package, so that the package
# imports it and no module imports the package back).
__version__ = "0.1.0.dev0"


def get_include():
    """Directory to add to the include paths to cimport fastmetric's kernels.

    The kernels' Cython declarations (``fastmetric/kernels/*.pxd``) and their
    C headers (``fastmetric/kernels/include/fm_*.h``) ship inside the
    package.  Cython finds the ``.pxd`` files, and the C compiler the headers,
    when the directory that *contains* the ``fastmetric`` package is on both
    include paths (Cython's ``include_path`` and the extension's
    ``include_dirs``); this function returns that directory.

    Returns
    -------
    path : str

    Examples
    --------
    >>> import os, fastmetric
    >>> os.path.isfile(os.path.join(fastmetric.get_include(), "fastmetric", "kernels", "common.pxd"))
    True
    """
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config_dict():
    import numpy
    import scipy
    import sklearn
    import threadpoolctl

    from fastmetric._core.threads import cpu_count, effective_n_threads
    from fastmetric._core.workspace import huge_page_setting
    from fastmetric.kernels import WAIT_POLICY
    from fastmetric.kernels.openmp_helpers import openmp_enabled, openmp_max_threads
    from fastmetric.kernels.smallgemm import small_gemm_in_use

    info = threadpoolctl.threadpool_info()
    return {
        "fastmetric": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "openmp_enabled": openmp_enabled(),
        "openmp_max_threads": openmp_max_threads(),
        "cpu_count": cpu_count(),
        "default_n_threads": effective_n_threads(None),
        "wait_policy": WAIT_POLICY,
        "huge_pages": huge_page_setting(),
        "small_gemm": small_gemm_in_use(),
        "threadpools": [
            {k: d.get(k) for k in ("user_api", "internal_api", "num_threads", "version", "filepath")}
            for d in info
        ],
    }


def show_config(file=None):
    """Print fastmetric's versions, OpenMP status and thread counts in force.

    Parameters
    ----------
    file : file-like, default=sys.stdout
        Where to write.

    Examples
    --------
    >>> import fastmetric
    >>> fastmetric.show_config()  # doctest: +ELLIPSIS
    fastmetric ...
    """
    file = sys.stdout if file is None else file
    c = _config_dict()
    def w(s=""):
        print(s, file=file)

    w(f"fastmetric {c['fastmetric']}")
    w()
    w("versions:")
    for key in ("python", "numpy", "scipy", "scikit-learn", "threadpoolctl"):
        w(f"  {key:<14} {c[key]}")
    w(f"  {'platform':<14} {c['platform']}")
    w()
    w("threads:")
    w(f"  {'OpenMP':<22} {'enabled' if c['openmp_enabled'] else 'DISABLED (serial build)'}")
    w(f"  {'omp_get_max_threads':<22} {c['openmp_max_threads']}")
    w(f"  {'CPUs available':<22} {c['cpu_count']}")
    w(f"  {'n_jobs=None uses':<22} {c['default_n_threads']} thread(s)")
    w(f"  {'idle OpenMP threads':<22} {c['wait_policy']}")
    w()
    w("kernels:")
    w(f"  {'small products':<22} "
      + ("AVX-512F kernels (row mappings, LDML gradient)" if c["small_gemm"]
         else "BLAS (no AVX-512F kernels on this CPU or build)"))
    w()
    w("memory:")
    w(f"  {'huge pages (THP)':<22} {c['huge_pages']} "
      "(large work arrays use them when 'always' or 'madvise')")
    w()
    w("thread pools (threadpoolctl):")
    if not c["threadpools"]:
        w("  none loaded")
    for d in c["threadpools"]:
        w(
            f"  {d['user_api']:<7} {d['internal_api']:<10} num_threads={d['num_threads']}"
            f" version={d['version']}"
        )
