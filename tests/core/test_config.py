import doctest
import io
import os
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastmetric
from fastmetric import pairwise
from fastmetric._core import threads as threads_module
from fastmetric._core.threads import cpu_count, effective_n_threads
from fastmetric.kernels.openmp_helpers import openmp_enabled
from fastmetric.kernels.smallgemm import small_gemm_in_use


def test_show_config_reports_versions_and_threads():
    buf = io.StringIO()
    fastmetric.show_config(file=buf)
    text = buf.getvalue()
    assert fastmetric.__version__ in text
    assert np.__version__ in text
    assert "OpenMP" in text and ("enabled" in text or "DISABLED" in text)
    assert "n_jobs=None uses" in text
    assert "huge pages (THP)" in text
    assert "small products" in text
    # which kernels the small products use (a CPU without AVX-512F gets BLAS)
    assert ("AVX-512F kernels (row mappings" in text) == small_gemm_in_use()
    assert ("BLAS (no AVX-512F kernels" in text) == (not small_gemm_in_use())


def test_built_with_openmp():
    # CI builds with gcc, which supports OpenMP: a serial build there is a bug.
    assert openmp_enabled()


def test_get_include_contains_pxd_files():
    inc = fastmetric.get_include()
    for name in ("common.pxd", "distances.pxd", "pair_loss.pxd", "sampling.pxd"):
        assert os.path.isfile(os.path.join(inc, "fastmetric", "kernels", name)), name


def test_effective_n_threads(monkeypatch):
    # No load from other processes here (tests/core/test_threads.py covers it).
    quiet = threads_module.LoadEstimate(lambda: None, runnable=lambda: None)
    monkeypatch.setattr(threads_module, "_LOAD", quiet)
    assert effective_n_threads(1) == 1
    assert effective_n_threads(3) == 3
    assert effective_n_threads(-1) == cpu_count()
    with threadpool_limits(1):
        assert effective_n_threads(None) == 1
    with threadpool_limits(2):
        assert effective_n_threads(None) == 2
    with pytest.raises(ValueError, match="n_jobs"):
        effective_n_threads(0)
    with pytest.raises(TypeError, match="n_jobs"):
        effective_n_threads("2")


@pytest.mark.parametrize(
    "func",
    [getattr(pairwise, name) for name in pairwise.__all__] + [fastmetric.show_config, fastmetric.get_include],
    ids=lambda f: f.__name__,
)
def test_docstring_examples(func):
    """Run the Examples of each public kernel (compiled functions included)."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(func.__doc__, {}, func.__name__, None, 0)
    assert test.examples, f"{func.__name__} has no doctest example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0


# Every learner that metric-learn 0.7 exports.
METRIC_LEARN_LEARNERS = [
    "Covariance", "ITML", "ITML_Supervised", "LFDA", "LMNN", "LSML", "LSML_Supervised",
    "MLKR", "MMC", "MMC_Supervised", "NCA", "RCA", "RCA_Supervised", "SCML",
    "SCML_Supervised", "SDML", "SDML_Supervised",
]


@pytest.mark.parametrize("name", METRIC_LEARN_LEARNERS)
def test_every_metric_learn_learner_is_exported(name):
    from sklearn.base import BaseEstimator

    assert name in fastmetric.__all__
    cls = getattr(fastmetric, name)
    assert issubclass(cls, BaseEstimator)
    for method in ("fit", "transform", "get_mahalanobis_matrix", "get_metric",
                   "pair_distance"):
        assert callable(getattr(cls, method)), (name, method)


def test_unknown_attribute_is_attribute_error():
    with pytest.raises(AttributeError):
        _ = fastmetric.DoesNotExist


def test_threads_for_work_caps_small_calls():
    from fastmetric._core.threads import threads_for_work

    assert threads_for_work(2, 100, 4096) == 1
    assert threads_for_work(2, 8192, 4096) == 2
    assert threads_for_work(8, 3 * 4096, 4096) == 3
    assert threads_for_work(2, 10, 0) == 2  # no minimum


@pytest.mark.parametrize("name", [n for n in fastmetric.__all__ if n[0].isupper()])
def test_learner_docstring_examples(name):
    """Every public learner has an Examples section, and it runs."""
    cls = getattr(fastmetric, name)
    parser = doctest.DocTestParser()
    test = parser.get_doctest(cls.__doc__, {}, name, None, 0)
    assert test.examples, f"{name} has no doctest example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.run(test)
    assert runner.failures == 0
