"""Work arrays (aligned, huge pages) and the parallel split of index pairs."""
import mmap

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from fastmetric._core.validation import check_index_pairs
from fastmetric._core.workspace import CACHE_LINE, HUGE_PAGE, HUGE_PAGE_MIN_BYTES, empty_aligned
from fastmetric.kernels.pair_index import split_index_pairs


@pytest.mark.parametrize("shape", [0, 7, (3, 5), (1000, 64), (HUGE_PAGE_MIN_BYTES // 8 + 3,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.intp])
def test_empty_aligned_shape_dtype_and_alignment(shape, dtype):
    arr = empty_aligned(shape, dtype)
    expected = (shape,) if np.ndim(shape) == 0 else shape
    assert arr.shape == expected and arr.dtype == dtype
    assert arr.flags.c_contiguous and arr.flags.writeable
    if arr.size:  # an empty array has no first element to align
        assert arr.ctypes.data % CACHE_LINE == 0
    if arr.nbytes >= HUGE_PAGE_MIN_BYTES and hasattr(mmap, "MADV_HUGEPAGE"):
        # Large arrays are memory maps placed on huge-page boundaries.
        assert arr.ctypes.data % HUGE_PAGE == 0
    # Every element can be written and read back.
    arr[...] = 1
    assert arr.sum() == arr.size


def test_empty_aligned_memory_outlives_intermediate_views():
    arr = empty_aligned((HUGE_PAGE_MIN_BYTES // 8,), np.float64)
    view = arr[10:20]
    del arr
    view[:] = np.arange(10)
    assert_array_equal(view, np.arange(10))


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("n_pairs", [0, 1, 5, 65536 * 3 + 17])
def test_split_index_pairs_matches_numpy_for_any_thread_count(index_dtype, n_pairs):
    rng = np.random.default_rng(0)
    pairs = rng.integers(-5, 1000, size=(n_pairs, 2)).astype(index_dtype)
    results = [split_index_pairs(pairs, t) for t in (1, 2, 3)]
    for a, b, lo, hi in results:
        assert a.dtype == np.intp and b.dtype == np.intp
        assert_array_equal(a, pairs[:, 0])
        assert_array_equal(b, pairs[:, 1])
        if n_pairs:
            assert (lo, hi) == (pairs.min(), pairs.max())
        else:
            assert (lo, hi) == (0, -1)


@pytest.mark.parametrize("bad", [-1, 500])
def test_large_pair_arrays_name_the_out_of_range_index(bad):
    # The bad index sits in a later chunk of the parallel split.
    pairs = np.zeros((300_000, 2), dtype=np.int64)
    pairs[250_001, 1] = bad
    with pytest.raises(ValueError, match=rf"index {bad} at pair 250001, column 1"):
        check_index_pairs(pairs, 500, "pairs", n_threads=2)


def test_strided_and_other_integer_pairs_take_the_numpy_path():
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 50, size=(100, 4))
    for pairs in (wide[:, ::2], wide[:, :2].astype(np.uint16), wide[:, 1:3].astype(np.int8)):
        a, b = check_index_pairs(pairs, 50, "pairs")
        assert_array_equal(a, pairs[:, 0])
        assert_array_equal(b, pairs[:, 1])
        assert a.dtype == np.intp and a.flags.c_contiguous


@pytest.mark.parametrize(
    "content, expected",
    [("always [madvise] never\n", "madvise"), ("[always] madvise never\n", "always"),
     ("always madvise [never]\n", "never"), ("garbled\n", "unavailable")],
)
def test_huge_page_setting_reads_the_bracketed_choice(tmp_path, monkeypatch, content, expected):
    from fastmetric._core import workspace as _workspace

    if not hasattr(mmap, "MADV_HUGEPAGE"):
        pytest.skip("no MADV_HUGEPAGE on this system: the setting is never read")
    path = tmp_path / "enabled"
    path.write_text(content)
    monkeypatch.setattr(_workspace, "THP_SETTING_FILE", str(path))
    assert _workspace.huge_page_setting() == expected
    monkeypatch.setattr(_workspace, "THP_SETTING_FILE", str(tmp_path / "missing"))
    assert _workspace.huge_page_setting() == "unavailable"


def test_empty_aligned_without_huge_pages(monkeypatch):
    # Where the OS has no MADV_HUGEPAGE (macOS, Windows), large arrays are
    # ordinary aligned arrays.
    from fastmetric._core import workspace as _workspace

    monkeypatch.delattr(mmap, "MADV_HUGEPAGE", raising=False)
    arr = _workspace.empty_aligned((HUGE_PAGE_MIN_BYTES // 8 + 1,), np.float64)
    assert arr.ctypes.data % CACHE_LINE == 0
    arr[:] = 2.0
    assert arr.sum() == 2.0 * arr.size
