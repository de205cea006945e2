"""The metric core (layer 2, private): what every learner shares.

* ``base``: the Mahalanobis base (``components_``, ``transform``, distances,
  ``get_metric``); ``pairs``: the pairs classifier and its threshold;
  ``tuples``: triplet and quadruplet classifiers; ``inputs``: pairs, tuples,
  pair targets and preprocessor input checks; ``rows``: small row helpers
  (normalisation, evenly spaced subsets) at the bottom of the core;
* ``init``: the initial map and the prior, one helper for every learner;
* ``constraints``: class labels turned into pairs, chunks, triplets;
* ``objectives``: problem classes that prepare data once and evaluate a
  loss and gradient many times through the kernels (with the LDML, LMNN,
  LSML, MMC and SCML glue between them and the solvers);
* ``distances``, ``scatter``, ``sampling``: the validated Python layers over
  the distance, pair-scatter and sampling kernels (re-exported by
  :mod:`fastmetric.pairwise`);
* ``covariance``, ``local_scatter``, ``scml_basis``, ``softmax_learner``:
  covariance statistics of the closed forms, LFDA's local Fisher scatters,
  SCML's basis sets, the base of NCA and MLKR;
* ``solvers``: scipy's L-BFGS, metric-learn's halving gradient descent and
  the shared stochastic solver with its minibatch epochs;
* ``dask_support``, ``cluster_rows``: fits on dask arrays, k-means over rows;
* ``params``, ``validation``, ``threads``, ``workspace``: parameter checks,
  array checks, thread counts, aligned work arrays.

Data flows down: the core calls :mod:`fastmetric.kernels`; it never imports a
learner or a public facade.
"""
