"""Small row helpers that every layer of the core shares.

They sit at the bottom of the core (they import nothing from fastmetric) so
that the Mahalanobis base, the dask support and the k-means over rows can all
use them without importing one another.
"""
import numpy as np

__all__ = ["evenly_spaced", "l2_normalize_rows"]


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
