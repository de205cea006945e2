"""Public kernel functions: Mahalanobis distances, the LDML loss, weighted
pair scatter matrices, pair and chunk sampling.

Each function validates its input, then calls an OpenMP-parallel Cython
kernel over float32 or float64 data.  ``n_jobs`` follows one convention
everywhere: ``None`` uses as many threads as OpenMP and threadpoolctl allow,
``-1`` every CPU, ``k > 0`` exactly ``k`` threads.  Results do not depend on
the number of threads.

The kernels' nogil C-level signatures are declared in ``.pxd`` files shipped
in the package, so other Cython code can call them directly (see
:func:`fastmetric.get_include`).
"""
from fastmetric.kernels.distances import mahalanobis_distances, paired_mahalanobis_distances
from fastmetric.kernels.pair_loss import ldml_loss
from fastmetric.kernels.pair_scatter import weighted_pair_scatter
from fastmetric.kernels.sampling import sample_pairs
from fastmetric.kernels.chunks import sample_chunks

__all__ = [
    "mahalanobis_distances",
    "paired_mahalanobis_distances",
    "ldml_loss",
    "weighted_pair_scatter",
    "sample_pairs",
    "sample_chunks",
]
