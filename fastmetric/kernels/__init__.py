"""The kernels (layer 1): OpenMP-parallel Cython and C, the stable cimport path.

Each module computes one family over float32/float64 memoryviews, writes into
arrays the caller allocates, and takes a thread count; none knows of
estimators, and none imports a fastmetric Python module (validation, thread
counts and work arrays belong to the metric core, :mod:`fastmetric._core`).
Other libraries' Cython code cimports the ``.pxd`` files here, whose C lives in
the headers ``include/fm_<family>.h``, with :func:`fastmetric.get_include` on
both Cython's ``include_path`` and the compiler's ``include_dirs``::

    from fastmetric.kernels.distances cimport transform_rows

* ``common``: OpenMP shim, log-loss point functions, counter-based random
  generator, BLAS GEMM; ``smallgemm``: AVX-512 products with a small side
  (and the package's one switch for them);
* ``distances``: pairwise and paired Mahalanobis distances;
* ``pair_loss``: the LDML log-loss and its gradient over pairs;
* ``sampling``, ``chunks``, ``pair_index``: pairs and chunks drawn from labels,
  index pairs split and range-checked;
* ``pair_scatter``: weighted pair scatter matrices;
* ``itml``, ``lmnn``, ``lsml``, ``scml``, ``softmax_neighbors``: the learners'
  own hot loops.

The validated Python functions over these kernels live in the core
(``_core.distances``, ``_core.scatter``, ``_core.sampling``, ``_core.objectives``)
and the public ones are re-exported by :mod:`fastmetric.pairwise`.
"""
