"""Small row helpers that every layer of the core shares.

They sit at the bottom of the core (they import nothing from fastmetric) so
that the Mahalanobis base, the dask support and the k-means over rows can all
use them without importing one another.
"""
import numpy as np

__all__ = ["distinct_indices", "evenly_spaced", "l2_normalize_rows"]


def l2_normalize_rows(X):
    """Return a copy of ``X`` whose rows have unit Euclidean norm.

    Rows of norm zero stay zero (there is no direction to keep).  The dtype
    of ``X`` is kept.  With normalised rows, ``||x/|x| - y/|y|||^2 =
    2 - 2 cos(x, y)``: the learned metric then works on directions only.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    norms[norms == 0] = 1
    return np.ascontiguousarray(X / norms[:, None], dtype=X.dtype)


def evenly_spaced(n, max_count):
    """At most ``max_count`` evenly spaced indices of ``range(n)`` (all of them
    when ``n <= max_count``): a deterministic subset, so that a start-up
    computation on a sample does not depend on a seed."""
    if n <= max_count:
        return np.arange(n)
    return np.linspace(0, n - 1, max_count).astype(np.intp)


def distinct_indices(rows, n_rows):
    """The distinct values ``uniq`` of ``rows`` (indices below ``n_rows``),
    sorted, and the position of each entry of ``rows`` in ``uniq``: what
    ``np.unique(rows, return_inverse=True)`` gives, with an intp inverse.

    Used for the rows of a minibatch or a group of minibatches.  Marking
    them in a table of all rows is about 10x faster than sorting them (and
    20x faster than binary searches for the positions) while there are less
    than 64 times more rows than entries; beyond that, the sort is cheaper
    than the table.
    """
    if n_rows > 64 * rows.shape[0]:
        uniq, local = np.unique(rows, return_inverse=True)
        return uniq, local.reshape(-1).astype(np.intp)
    seen = np.zeros(n_rows, dtype=bool)
    seen[rows] = True
    uniq = np.flatnonzero(seen)
    position = np.empty(n_rows, dtype=np.intp)  # read only where seen
    position[uniq] = np.arange(uniq.shape[0])
    return uniq, position[rows]
