"""Other libraries' Cython code can cimport fastmetric's nogil kernels."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastmetric

pytest.importorskip("Cython")

USER_MODULE = textwrap.dedent(
    """
    # A third-party extension using fastmetric's kernels directly.
    from fastmetric._common cimport fm_logit_loss, fm_random_u64, fm_stream_key
    from fastmetric._distances cimport transform_rows, paired_sq_dist_transformed

    def transform(const double[:, ::1] X, const double[:, ::1] L, double[:, ::1] out):
        with nogil:
            transform_rows(X, L, out, 16, 1)

    def paired(const double[:, ::1] XL, const Py_ssize_t[::1] a,
               const Py_ssize_t[::1] b, double[::1] out):
        with nogil:
            paired_sq_dist_transformed(XL, a, b, out, False, 8, 1)

    def logit_loss(double z, double t):
        cdef double dz
        cdef double loss = fm_logit_loss(z, t, &dz)
        return loss, dz

    def draw(unsigned long long seed, unsigned long long counter):
        return fm_random_u64(fm_stream_key(seed, 0), counter)
    """
)

SETUP = textwrap.dedent(
    """
    import numpy as np
    import fastmetric
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    setup(
        ext_modules=cythonize(
            [Extension("user_module", ["user_module.pyx"], include_dirs=[np.get_include()])],
            include_path=[fastmetric.get_include()],
            compiler_directives={"language_level": 3},
        ),
        script_args=["build_ext", "--inplace", "-q"],
    )
    """
)


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cython_user")
    (tmp / "user_module.pyx").write_text(USER_MODULE)
    (tmp / "setup.py").write_text(SETUP)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmetric.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "setup.py"], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sys.path.insert(0, str(tmp))
    try:
        import user_module

        yield user_module
    finally:
        sys.path.remove(str(tmp))


def test_cimported_kernels_compute_the_same_as_the_public_functions(user_module):
    from fastmetric.pairwise import paired_mahalanobis_distances

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    L = rng.normal(size=(3, 5))
    XL = np.empty((40, 3))
    user_module.transform(X, L, XL)
    np.testing.assert_allclose(XL, X @ L.T, rtol=1e-12)
    pairs = rng.integers(0, 40, size=(30, 2))
    out = np.empty(30)
    user_module.paired(XL, pairs[:, 0].copy(), pairs[:, 1].copy(), out)
    np.testing.assert_allclose(
        out, paired_mahalanobis_distances(X, pairs, components=L, squared=True), rtol=1e-10
    )


def test_cimported_helpers(user_module):
    loss, dz = user_module.logit_loss(2.0, 1.0)
    np.testing.assert_allclose(loss, np.logaddexp(0, 2.0) - 2.0)
    np.testing.assert_allclose(dz, 1 / (1 + np.exp(-2.0)) - 1.0)
    assert user_module.draw(1, 5) == user_module.draw(1, 5)
    assert user_module.draw(1, 5) != user_module.draw(2, 5)
