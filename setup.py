"""Build script for fastmetric's Cython extensions.

Every ``fastmetric/**/*.pyx`` file becomes one extension module (named by
its path: ``fastmetric/kernels/distances.pyx`` is ``fastmetric.kernels.distances``), compiled with
``-O3`` and OpenMP.  When the compiler cannot build an OpenMP program the
extensions are built serially instead, with a warning: the package still
works, on one thread.

Environment variables (for developers):

``FASTMETRIC_DISABLE_OPENMP=1``
    Build without OpenMP even if the compiler supports it.
``FASTMETRIC_ONLY=distances,sampling``
    Only (re)build the listed extension modules (faster inner loop when
    working on one kernel with ``python setup.py build_ext --inplace``).
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))

OPENMP_TEST_PROGRAM = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d", omp_get_max_threads() > 0 && n > 0);
        return 0;
    }
    """
)


def _openmp_flags(compiler_type):
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def _check_openmp(compiler):
    """Compile, link and run a tiny OpenMP program; True when all succeed."""
    compile_flags, link_flags = _openmp_flags(compiler.compiler_type)
    tmpdir = tempfile.mkdtemp()
    cwd = os.getcwd()
    try:
        os.chdir(tmpdir)
        with open("test_openmp.c", "w") as f:
            f.write(OPENMP_TEST_PROGRAM)
        objects = compiler.compile(["test_openmp.c"], extra_postargs=compile_flags)
        compiler.link_executable(objects, "test_openmp", extra_postargs=link_flags)
        out = subprocess.check_output([os.path.join(tmpdir, "test_openmp")])
        return out.decode().strip() == "1"
    except Exception:  # any failure means: no usable OpenMP
        return False
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmpdir, ignore_errors=True)


class BuildExtWithOpenMP(build_ext):
    """build_ext that adds OpenMP flags when a test program builds."""

    def build_extensions(self):
        disabled = os.environ.get("FASTMETRIC_DISABLE_OPENMP", "0") not in ("", "0")
        use_openmp = (not disabled) and _check_openmp(self.compiler)
        if not use_openmp:
            reason = (
                "OpenMP disabled by FASTMETRIC_DISABLE_OPENMP"
                if disabled
                else "the C compiler could not build an OpenMP program"
            )
            warnings.warn(
                f"fastmetric: {reason}; the kernels are built serially and will "
                "use one thread.",
                stacklevel=1,
            )
            print("*** fastmetric: building WITHOUT OpenMP (serial kernels) ***")
        compile_flags, link_flags = _openmp_flags(self.compiler.compiler_type)
        for ext in self.extensions:
            if self.compiler.compiler_type != "msvc":
                ext.extra_compile_args += ["-O3"]
            if use_openmp:
                ext.extra_compile_args += compile_flags
                ext.extra_link_args += link_flags
        super().build_extensions()


def _extensions():
    only = [s.strip() for s in os.environ.get("FASTMETRIC_ONLY", "").split(",") if s.strip()]
    exts = []
    for path in sorted(glob.glob(os.path.join("fastmetric", "**", "*.pyx"), recursive=True)):
        modname = os.path.splitext(path)[0].replace(os.sep, ".")
        if only and modname.rsplit(".", 1)[-1] not in only:
            continue
        exts.append(
            Extension(
                modname,
                [path],
                include_dirs=[np.get_include(), HERE],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
            )
        )
    return cythonize(
        exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "nonecheck": False,
            "cpow": True,
        },
        nthreads=int(os.environ.get("FASTMETRIC_CYTHON_JOBS", "1")),
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExtWithOpenMP})
