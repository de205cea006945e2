"""Every public estimator of fastmetric on small data, fitted in a few
milliseconds: the cases shared by the persistence, thread-safety, fault and
fuzz tests.

A :class:`Case` knows how to build the estimator (small ``max_iter``, a fixed
seed, one thread unless asked), what to fit it on, and which inputs its
prediction methods take: points for ``transform``, pairs for
``pair_distance``, and the tuples of its own kind for ``predict`` /
``decision_function`` (pairs, triplets or quadruplets; ``None`` for the
learners that are not tuple classifiers).
"""
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import fastmetric as fm


@lru_cache(maxsize=1)
def iris_std():
    """Standardised iris (150 x 4) and its labels, read-only."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


@lru_cache(maxsize=1)
def iris_tuples():
    """Index pairs with +1/-1 labels, triplets, quadruplets and chunk labels
    on :func:`iris_std` (every tuple drawn from a fixed seed)."""
    X, y = iris_std()
    rng = np.random.RandomState(0)
    pairs = rng.randint(0, len(X), size=(120, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    y_pairs = np.where(y[pairs[:, 0]] == y[pairs[:, 1]], 1, -1)
    triplets = []
    for a in rng.randint(0, len(X), size=80):
        same = np.flatnonzero((y == y[a]) & (np.arange(len(y)) != a))
        other = np.flatnonzero(y != y[a])
        triplets.append([a, rng.choice(same), rng.choice(other)])
    triplets = np.array(triplets)
    quadruplets = np.c_[triplets[:, :2], triplets[:, [0, 2]]]
    # Chunks of 3 points of one class each: 4 chunks per class.
    chunks = np.full(len(X), -1)
    for c in range(3):
        members = rng.permutation(np.flatnonzero(y == c))[:12]
        chunks[members] = c * 4 + np.arange(12) // 3
    return pairs, y_pairs, triplets, quadruplets, chunks


@dataclass
class Case:
    """One public estimator on small data.

    Attributes
    ----------
    name : str
        Test id (class name, and the input form when there are several).
    cls : type
        The public class.
    params : dict
        Constructor parameters (small budgets, fixed seed).
    fit_args : tuple
        Positional arguments of ``fit``.
    tuples : ndarray or None
        Input of ``predict`` / ``decision_function`` (tuple classifiers only).
    pairs : ndarray
        Input of ``pair_distance`` (3-D pair arrays of points, which every
        learner accepts, or index pairs when the learner has a preprocessor).
    """

    name: str
    cls: type
    params: dict
    fit_args: tuple
    tuples: object = None
    pairs: object = None

    def make(self, **overrides):
        """A new unfitted estimator of this case."""
        return self.cls(**{**self.params, **overrides})

    def fit(self, **overrides):
        """A new estimator fitted on the case's data, warnings silenced (a
        small ``max_iter`` warns that it did not converge)."""
        est = self.make(**overrides)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(*self.fit_args)
        return est

    @property
    def X(self):
        """Points for ``transform``."""
        return iris_std()[0]


def all_cases():
    """One :class:`Case` per public estimator and input form."""
    X, y = iris_std()
    pairs, y_pairs, triplets, quads, chunks = iris_tuples()
    pair_points = X[pairs]
    seed = {"random_state": 0}
    one = {"n_jobs": 1}
    cases = [
        # Pair classifiers: index pairs into a preprocessor, and 3-D pair arrays.
        Case("LDML-indices", fm.LDML, dict(preprocessor=X, max_iter=10, **seed, **one),
             (pairs, y_pairs), pairs, pairs),
        Case("LDML-points", fm.LDML, dict(max_iter=10, **seed, **one),
             (pair_points, y_pairs), pair_points, pair_points),
        Case("ITML-indices", fm.ITML, dict(preprocessor=X, max_iter=20, **seed, **one),
             (pairs, y_pairs), pairs, pairs),
        Case("ITML-points", fm.ITML, dict(max_iter=20, **seed, **one),
             (pair_points, y_pairs), pair_points, pair_points),
        Case("MMC-indices", fm.MMC, dict(preprocessor=X, max_iter=10, **seed, **one),
             (pairs, y_pairs), pairs, pairs),
        Case("MMC-points", fm.MMC, dict(max_iter=10, **seed, **one),
             (pair_points, y_pairs), pair_points, pair_points),
        Case("SDML-indices", fm.SDML, dict(preprocessor=X, max_iter=20, **seed, **one),
             (pairs, y_pairs), pairs, pairs),
        Case("SDML-points", fm.SDML, dict(max_iter=20, **seed, **one),
             (pair_points, y_pairs), pair_points, pair_points),
        # Triplets and quadruplets.
        Case("SCML-indices", fm.SCML, dict(preprocessor=X, max_iter=200, output_iter=50,
                                          **seed, **one),
             (triplets,), triplets, pairs),
        Case("SCML-points", fm.SCML, dict(max_iter=200, output_iter=50, **seed, **one),
             (X[triplets],), X[triplets], pair_points),
        Case("LSML-indices", fm.LSML, dict(preprocessor=X, max_iter=20, **seed, **one),
             (quads,), quads, pairs),
        Case("LSML-points", fm.LSML, dict(max_iter=20, **seed, **one),
             (X[quads],), X[quads], pair_points),
        # Chunks.
        Case("RCA", fm.RCA, {}, (X, chunks), None, pair_points),
        # Supervised forms and the learners on class labels.
        Case("LDML_Supervised", fm.LDML_Supervised,
             dict(n_pairs=300, max_iter=10, **seed, **one), (X, y), None, pair_points),
        Case("ITML_Supervised", fm.ITML_Supervised,
             dict(n_constraints=100, max_iter=20, **seed, **one), (X, y), None, pair_points),
        Case("MMC_Supervised", fm.MMC_Supervised,
             dict(n_constraints=100, max_iter=10, **seed, **one), (X, y), None, pair_points),
        Case("SDML_Supervised", fm.SDML_Supervised,
             dict(n_constraints=100, max_iter=20, **seed, **one), (X, y), None, pair_points),
        Case("LSML_Supervised", fm.LSML_Supervised,
             dict(n_constraints=100, max_iter=20, **seed, **one), (X, y), None, pair_points),
        Case("SCML_Supervised", fm.SCML_Supervised,
             dict(max_iter=200, output_iter=50, **seed, **one), (X, y), None, pair_points),
        Case("RCA_Supervised", fm.RCA_Supervised, dict(n_chunks=20, chunk_size=3, **seed),
             (X, y), None, pair_points),
        Case("NCA", fm.NCA, dict(max_iter=10, **seed, **one), (X, y), None, pair_points),
        Case("LMNN", fm.LMNN, dict(max_iter=10, min_iter=1, **seed, **one), (X, y), None,
             pair_points),
        Case("MLKR", fm.MLKR, dict(max_iter=10, **seed, **one), (X, y.astype(float)), None,
             pair_points),
        Case("LFDA", fm.LFDA, {"k": 5}, (X, y), None, pair_points),
        Case("Covariance", fm.Covariance, {}, (X,), None, pair_points),
        Case("ClusterLDML", fm.ClusterLDML,
             dict(n_clusters=3, max_rounds=2, ldml_max_iter=5, n_pairs_per_cluster=100,
                  **seed, **one),
             (X,), None, pair_points),
    ]
    return cases


def public_estimator_classes():
    """Every estimator class that ``fastmetric`` exports."""
    from sklearn.base import BaseEstimator

    return sorted(
        (getattr(fm, name) for name in fm.__all__
         if isinstance(getattr(fm, name), type) and issubclass(getattr(fm, name), BaseEstimator)),
        key=lambda cls: cls.__name__,
    )
