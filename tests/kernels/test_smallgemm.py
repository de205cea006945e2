"""The small-GEMM kernels (AVX-512) that map rows through L and form the LDML
gradient: the same results as BLAS and numpy, for every shape and dtype.

Where the CPU has no AVX-512F the kernels are not used; these tests then
check that, and that the BLAS path gives the same results."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastmetric._core.distances import transform_rows
from fastmetric.kernels import smallgemm as _smallgemm
from fastmetric.pairwise import ldml_loss, paired_mahalanobis_distances

from ..conftest import tolerance


def cpu_has_avx512f():
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


@pytest.fixture
def small_gemm():
    """Switch the kernels on or off (one switch for every kernel module);
    restores them after."""
    def use(enabled):
        return _smallgemm._set_small_gemm(enabled)
    yield use
    use(True)


def test_kernels_are_used_where_the_cpu_has_avx512f(small_gemm):
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the kernels are compiled for x86-64 only")
    assert small_gemm(True) == cpu_has_avx512f()
    assert small_gemm(False) is False


# Shapes around the tile sizes: 6 rows, 4 vectors of 8 doubles / 16 floats,
# and the partial last vector.
@pytest.mark.parametrize("n", [1, 5, 6, 7, 13, 300])
@pytest.mark.parametrize("d, k", [(1, 1), (3, 2), (8, 9), (17, 31), (64, 64), (70, 65), (16, 100)])
def test_mapping_matches_numpy(small_gemm, dtype, n, d, k):
    rng = np.random.default_rng(n * 1000 + d * 10 + k)
    X = rng.standard_normal((n, d)).astype(dtype)
    L = rng.standard_normal((k, d)).astype(dtype)
    ref = X.astype(np.float64) @ L.T.astype(np.float64)
    for enabled in (True, False):
        small_gemm(enabled)
        U = transform_rows(X, L, 256, 2)
        assert U.dtype == dtype
        assert_allclose(U, ref, rtol=tolerance(dtype), atol=tolerance(dtype) * np.abs(ref).max())


def test_large_mapping_with_streaming_stores(small_gemm, dtype):
    # Over 8 MB of mapped rows, 64-byte rows: written with non-temporal stores.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40_000, 32)).astype(dtype)
    L = rng.standard_normal((64, 32)).astype(dtype)
    small_gemm(True)
    U = transform_rows(X, L, 256, 2)
    ref = X.astype(np.float64) @ L.T.astype(np.float64)
    assert_allclose(U, ref, rtol=tolerance(dtype), atol=tolerance(dtype) * np.abs(ref).max())


@pytest.mark.parametrize("n_points, n_pairs", [(300, 2000), (2000, 100)])
@pytest.mark.parametrize("d, k", [(5, 3), (64, 64), (33, 20)])
def test_ldml_gradient_same_with_and_without_kernels(small_gemm, dtype, n_points, n_pairs, d, k):
    # (2000 points, 100 pairs) takes the path over the rows that occur only.
    rng = np.random.default_rng(d + k)
    X = rng.standard_normal((n_points, d)).astype(dtype)
    L = (rng.standard_normal((k, d)) / np.sqrt(d)).astype(dtype)
    pairs = rng.integers(0, n_points, size=(n_pairs, 2))
    y = rng.random(n_pairs)
    results = []
    for enabled in (True, False):
        small_gemm(enabled)
        results.append(ldml_loss(X, pairs, y, L, 2.0, chunk_size=64))
    (l1, g1, b1), (l2, g2, b2) = results
    rtol = 10 * tolerance(dtype)
    assert_allclose(l1, l2, rtol=rtol)
    assert_allclose(b1, b2, rtol=rtol, atol=rtol)
    assert_allclose(g1, g2, rtol=rtol, atol=rtol * np.abs(g2).max())


def test_paired_distances_same_with_and_without_kernels(small_gemm, dtype):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((500, 24)).astype(dtype)
    L = rng.standard_normal((24, 24)).astype(dtype)
    pairs = rng.integers(0, 500, size=(4000, 2))
    small_gemm(True)
    on = paired_mahalanobis_distances(X, pairs, components=L)
    small_gemm(False)
    off = paired_mahalanobis_distances(X, pairs, components=L)
    assert_allclose(on, off, rtol=10 * tolerance(dtype))


@pytest.mark.filterwarnings("ignore:L-BFGS did not converge")
@pytest.mark.parametrize("normalize", [False, True])
def test_estimator_transform_uses_the_row_mapping(small_gemm, dtype, normalize):
    # transform maps rows with the same kernels: X L^T (of the normalised
    # rows when normalize=True), the same for any n_jobs, on both paths.
    from fastmetric import LDML_Supervised

    rng = np.random.default_rng(11)
    X = rng.standard_normal((3000, 40)).astype(dtype)
    y = rng.integers(0, 4, size=3000)
    est = LDML_Supervised(n_pairs=2000, max_iter=3, normalize=normalize, random_state=0,
                          n_jobs=2).fit(X, y)
    rows = X / np.linalg.norm(X, axis=1, keepdims=True) if normalize else X
    ref = rows.astype(np.float64) @ est.components_.T.astype(np.float64)
    for enabled in (True, False):
        small_gemm(enabled)
        Z = est.transform(X)
        assert Z.dtype == dtype and Z.shape == (3000, est.components_.shape[0])
        assert_allclose(Z, ref, rtol=10 * tolerance(dtype), atol=10 * tolerance(dtype) * np.abs(ref).max())
        est.set_params(n_jobs=1)
        assert np.array_equal(est.transform(X), Z)
        est.set_params(n_jobs=2)


FIT_SCRIPT = """
import sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
import fastmetric.kernels.smallgemm
from fastmetric import LMNN, NCA, MLKR, MMC_Supervised, LDML_Supervised

rng = np.random.default_rng(0)
X = rng.standard_normal((300, 12))
y = rng.integers(0, 3, size=300)
models = [
    LMNN(n_neighbors=3, max_iter=5, random_state=0),
    NCA(max_iter=5, random_state=0),
    MLKR(max_iter=5, random_state=0),
    MMC_Supervised(max_iter=5, random_state=0),
    LDML_Supervised(n_pairs=2000, max_iter=5, random_state=0),
]
out = {}
for m in models:
    target = y.astype(float) if isinstance(m, MLKR) else y
    out[type(m).__name__] = m.fit(X, target).components_
np.savez(sys.argv[1], in_use=fastmetric.kernels.smallgemm.small_gemm_in_use(), **out)
"""


def test_environment_variable_switches_every_learner_to_blas(tmp_path):
    # FASTMETRIC_SMALL_GEMM=0 makes every module use BLAS; the learners then
    # fit the same models (here bitwise or to rounding).
    import os
    import subprocess
    import sys

    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT)
    results = {}
    import fastmetric

    # The child imports the same fastmetric (installed or built in place).
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmetric.__file__)))
    for value in ("0", "1"):
        env = dict(os.environ, FASTMETRIC_SMALL_GEMM=value,
                   PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        path = tmp_path / f"out{value}.npz"
        proc = subprocess.run([sys.executable, str(script), str(path)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[value] = np.load(path)
    assert not results["0"]["in_use"]
    assert bool(results["1"]["in_use"]) == cpu_has_avx512f()
    for name in ("LMNN", "NCA", "MLKR", "MMC_Supervised", "LDML_Supervised"):
        assert_allclose(results["0"][name], results["1"][name], rtol=1e-9, atol=1e-12)
