"""The metric core (layer 2, private): what every learner shares.

* ``base``: the Mahalanobis base (``components_``, ``transform``, distances,
  ``get_metric``), the pairs classifier; ``tuples``: triplet and quadruplet
  classifiers; ``inputs``: pairs, tuples and preprocessor input checks;
* ``init``: the initial map and the prior, one helper for every learner;
* ``constraints``: class labels turned into pairs, chunks, triplets;
* ``objectives``: problem classes that prepare data once and evaluate a
  loss and gradient many times through the kernels;
* ``distances``, ``scatter``, ``sampling``: the validated Python layers over
  the distance, pair-scatter and sampling kernels (re-exported by
  :mod:`fastmetric.pairwise`);
* ``solvers``: scipy's L-BFGS and the shared stochastic solver;
* ``dask_support``, ``cluster_rows``: fits on dask arrays, k-means over rows;
* ``params``, ``validation``, ``threads``, ``workspace``: parameter checks,
  array checks, thread counts, aligned work arrays.

Data flows down: the core calls :mod:`fastmetric.kernels`; it never imports a
learner or a public facade.
"""
