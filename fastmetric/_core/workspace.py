"""Work arrays for the kernels: aligned to cache lines, on huge pages when large.

Two properties of a work array change the speed of the kernels that read its
rows at random (the mapped rows ``U = X L^T`` of the paired-distance and
log-loss kernels):

* **Alignment.**  ``np.empty`` returns memory aligned to 16 bytes only, so a
  row of 64 doubles (512 bytes) usually straddles 9 cache lines instead of 8;
  every random row read then moves 12 % more memory.
* **Page faults.**  A fresh array of 100 MB is backed page by page on first
  write: 25,000 faults of 4 KiB, taken by all the threads of the kernel at
  once, cost more than the GEMM that fills it.  With transparent huge pages
  (2 MiB), 50 faults do.

:func:`empty_aligned` returns arrays with both properties.  Large arrays are
anonymous private memory maps aligned to 2 MiB with ``MADV_HUGEPAGE``, which
asks the kernel for huge pages where transparent huge pages are set to
``madvise`` (the usual default) or ``always``; elsewhere (another OS, huge
pages off) they are ordinary pages, still aligned.  The memory is returned to
the system when the array is garbage-collected, as for ``np.empty``.
"""
import math
import mmap

import numpy as np

CACHE_LINE = 64
HUGE_PAGE = 2 << 20
# Below a few huge pages the faults saved are few, and rounding the size up
# to whole huge pages would waste memory.
HUGE_PAGE_MIN_BYTES = 4 << 20


THP_SETTING_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def huge_page_setting():
    """How this system gives transparent huge pages to our work arrays.

    Returns
    -------
    setting : str
        ``"always"`` or ``"madvise"`` (work arrays get huge pages),
        ``"never"`` (they do not), or ``"unavailable"`` (no such setting,
        e.g. not Linux).
    """
    if getattr(mmap, "MADV_HUGEPAGE", None) is None:
        return "unavailable"
    try:
        with open(THP_SETTING_FILE) as f:
            text = f.read()
    except OSError:
        return "unavailable"
    # The active choice is the bracketed one: "always [madvise] never".
    start, stop = text.find("["), text.find("]")
    return text[start + 1: stop] if 0 <= start < stop else "unavailable"


def _huge_page_buffer(nbytes):
    """A writable uint8 array of ``nbytes + HUGE_PAGE`` bytes in its own memory
    map with MADV_HUGEPAGE, or None where that is unavailable."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    flags = getattr(mmap, "MAP_PRIVATE", None)
    if advice is None or flags is None:
        return None
    try:
        region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=flags)
    except (OSError, ValueError):
        return None
    try:
        region.madvise(advice)
    except (OSError, ValueError):
        # The map still works with ordinary pages.
        pass
    # The array keeps the map alive; the map is unmapped with the last view.
    return np.frombuffer(region, dtype=np.uint8)


def empty_aligned(shape, dtype):
    """An uninitialised C-contiguous array whose first element starts a cache line.

    Parameters
    ----------
    shape : int or tuple of int
    dtype : data-type

    Returns
    -------
    out : ndarray
        Aligned to 64 bytes; arrays of at least 4 MiB are aligned to 2 MiB and
        backed by transparent huge pages where the system provides them.
    """
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = None
    align = CACHE_LINE
    if nbytes >= HUGE_PAGE_MIN_BYTES:
        raw = _huge_page_buffer(nbytes)
        align = HUGE_PAGE
    if raw is None:
        align = CACHE_LINE
        raw = np.empty(nbytes + CACHE_LINE, dtype=np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset: offset + nbytes].view(dtype).reshape(shape)
