"""The kernels (layer 1): OpenMP-parallel Cython and C, the stable cimport path.

Each module computes one family over float32/float64 memoryviews, writes into
arrays the caller allocates, and takes a thread count; none knows of
estimators.  Other libraries' Cython code cimports the ``.pxd`` files here (and
the C headers in ``include/``) with :func:`fastmetric.get_include` on its
include path::

    from fastmetric.kernels.distances cimport transform_rows

* ``common``: OpenMP shim, log-loss point functions, counter-based random
  generator, BLAS GEMM; ``smallgemm``: AVX-512 products with a small side;
* ``distances``: pairwise and paired Mahalanobis distances;
* ``pair_loss``: the LDML log-loss and its gradient over pairs;
* ``sampling``, ``chunks``, ``pair_index``: pairs and chunks drawn from labels,
  index pairs split and range-checked;
* ``pair_scatter``: weighted pair scatter matrices;
* ``itml``, ``lmnn``, ``lsml``, ``scml``, ``softmax_neighbors``: the learners'
  own hot loops.

The validated Python functions over these kernels are in
:mod:`fastmetric.pairwise`.
"""
