"""Public kernel functions: Mahalanobis distances, the LDML loss, weighted
pair scatter matrices, pair and chunk sampling.

Each function validates its input (in the metric core, ``fastmetric._core``),
then calls an OpenMP-parallel Cython kernel (``fastmetric.kernels``) over
float32 or float64 data.  ``n_jobs`` follows one convention everywhere:
``None`` uses as many threads as OpenMP and threadpoolctl allow, ``-1``
every CPU, ``k > 0`` ``k`` threads (at most 4 per CPU).  Results do not
depend on the number of threads.

The kernels' nogil C-level signatures are declared in ``.pxd`` files shipped
in the package, so other Cython code can call them directly (see
:func:`fastmetric.get_include`).
"""
from fastmetric._core.distances import mahalanobis_distances, paired_mahalanobis_distances
from fastmetric._core.objectives.pair_loss import ldml_loss
from fastmetric._core.sampling import sample_chunks, sample_pairs
from fastmetric._core.scatter import weighted_pair_scatter

__all__ = [
    "ldml_loss",
    "mahalanobis_distances",
    "paired_mahalanobis_distances",
    "sample_chunks",
    "sample_pairs",
    "weighted_pair_scatter",
]
