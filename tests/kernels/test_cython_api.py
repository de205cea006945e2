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
    from fastmetric.kernels.common cimport fm_logit_loss, fm_random_u64, fm_stream_key
    from fastmetric.kernels.distances cimport transform_rows, paired_sq_dist_transformed
    from fastmetric.kernels.pair_loss cimport PairValues, build_endpoint_index, ldml_point_pass
    from fastmetric.kernels.neighbors cimport knn_search
    from libc.stdint cimport int64_t

    def transform(const double[:, ::1] X, const double[:, ::1] L, double[:, ::1] out):
        with nogil:
            transform_rows(X, L, out, 16, 1)

    def paired(const double[:, ::1] XL, const Py_ssize_t[::1] a,
               const Py_ssize_t[::1] b, double[::1] out):
        with nogil:
            paired_sq_dist_transformed(XL, a, b, out, False, 8, 1)

    def nearest(const double[:, ::1] Q, const double[:, ::1] Z, Py_ssize_t k,
                double[:, ::1] dist, int64_t[:, ::1] idx):
        # The exact k-NN search on rows mapped already (BLAS is not used by
        # this caller, so it is single-threaded here as the kernel asks).
        cdef int status
        with nogil:
            status = knn_search(Q, Z, k, False, 0, dist, idx, 2)
        return status

    def logit_loss(double z, double t):
        cdef double dz
        cdef double loss = fm_logit_loss(z, t, &dz)
        return loss, dz

    def draw(unsigned long long seed, unsigned long long counter):
        return fm_random_u64(fm_stream_key(seed, 0), counter)

    def ldml_point_sums(const double[:, ::1] U, const Py_ssize_t[::1] a,
                        const Py_ssize_t[::1] b, const double[::1] targets, double bias):
        # The LDML index and point pass: summed loss and bias-gradient terms,
        # and H = Lap U, on the caller's arrays.
        import numpy as np
        cdef Py_ssize_t n = U.shape[0], n_pairs = a.shape[0], chunk = 8
        cdef Py_ssize_t n_chunks = (n + chunk - 1) // chunk
        offsets = np.empty(n + 1, dtype=np.intp)
        keys = np.empty(2 * n_pairs, dtype=np.intp)
        # Soft targets: each entry also gets its (target, weight) record.
        values = np.empty(2 * n_pairs, dtype=[("target", np.float64), ("weight", np.float64)])
        cursor = np.zeros((1, n), dtype=np.intp)
        H = np.empty((n, U.shape[1]))
        chunk_loss = np.empty(n_chunks)
        chunk_grad_bias = np.empty(n_chunks)
        cdef double[::1] no_weights = np.empty(0)
        cdef Py_ssize_t[::1] o = offsets
        cdef Py_ssize_t[::1] kv = keys
        cdef PairValues[::1] vv = values
        cdef Py_ssize_t[:, ::1] cur = cursor
        cdef double[:, ::1] h = H
        cdef double[::1] cl = chunk_loss, cg = chunk_grad_bias
        with nogil:
            build_endpoint_index(a, b, targets, no_weights, False, o, kv, vv, cur, 1)
            ldml_point_pass(U, o, kv, vv, bias, h, True, cl, cg, chunk, 1)
        return chunk_loss.sum(), H, chunk_grad_bias.sum()
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
            # The one include directory serves Cython (the .pxd files) and the
            # C compiler (the headers the .pxd files name) alike.
            [Extension("user_module", ["user_module.pyx"],
                       include_dirs=[np.get_include(), fastmetric.get_include()])],
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


def test_cimported_ldml_index_and_point_pass(user_module):
    from fastmetric.pairwise import ldml_loss

    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 4))
    L = rng.normal(size=(3, 4)) / 2
    pairs = rng.integers(0, 50, size=(120, 2))
    y = rng.random(120)
    loss_sum, H, grad_bias_sum = user_module.ldml_point_sums(
        X @ L.T, pairs[:, 0].copy(), pairs[:, 1].copy(), y, 1.5
    )
    loss, grad, grad_bias = ldml_loss(X, pairs, y, L, 1.5)
    np.testing.assert_allclose(loss_sum / 120, loss, rtol=1e-12)
    np.testing.assert_allclose(grad_bias_sum / 120, grad_bias, rtol=1e-12)
    # d loss / dL = -(2 / P) H^T X with H = Lap U.
    np.testing.assert_allclose(-2.0 / 120 * H.T @ X, grad, rtol=1e-10, atol=1e-14)


def test_cimported_neighbour_search(user_module):
    from fastmetric.neighbors import kneighbors

    rng = np.random.default_rng(2)
    Z = rng.normal(size=(300, 7))
    Q = rng.normal(size=(25, 7))
    dist = np.empty((25, 4))
    idx = np.empty((25, 4), dtype=np.int64)
    assert user_module.nearest(Q, Z, 4, dist, idx) == 0
    ref_dist, ref_idx = kneighbors(Q, Z, n_neighbors=4)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(np.sqrt(dist), ref_dist, rtol=1e-12)
