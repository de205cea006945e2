"""LDML_Supervised(pairs='neighbors'): each point with its nearest same-class
and other-class points (``fastmetric._core.constraints.neighbor_pairs``)."""
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils._param_validation import InvalidParameterError

from fastmetric import LDML_Supervised
from fastmetric._core.constraints import neighbor_pairs

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def two_groups_per_class(n=800, seed=0):
    """make_classification's default: two clusters per class, where random
    same-class pairs join a class's two clusters across other classes."""
    return make_classification(n_samples=n, n_features=10, n_informative=6, n_classes=3,
                               random_state=seed)


def test_neighbor_pairs_are_the_nearest_of_each_kind():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 3)
    y = rng.randint(0, 3, 60)
    pairs, targets = neighbor_pairs(X, y, k_genuine=2, k_impostor=3)
    D = ((X[:, None] - X[None]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    expected_similar, expected_dissimilar = set(), set()
    for i in range(60):
        same = np.flatnonzero(y == y[i])
        same = same[same != i]
        other = np.flatnonzero(y != y[i])
        expected_similar |= {(i, j) for j in same[np.argsort(D[i, same], kind="stable")[:2]]}
        expected_dissimilar |= {(i, j) for j in other[np.argsort(D[i, other], kind="stable")[:3]]}
    similar = {tuple(p) for p in pairs[targets == 1].tolist()}
    dissimilar = {tuple(p) for p in pairs[targets == 0].tolist()}
    assert similar == expected_similar
    assert dissimilar == expected_dissimilar
    assert len(pairs) == len(similar) + len(dissimilar)  # each pair once
    assert np.all(y[pairs[targets == 1, 0]] == y[pairs[targets == 1, 1]])
    assert np.all(y[pairs[targets == 0, 0]] != y[pairs[targets == 0, 1]])


def test_neighbor_pairs_learn_where_random_pairs_do_not():
    """Two clusters per class: random pairs give a metric below the
    Euclidean distance (0.667 against 0.788 3-NN on this split), local
    pairs one above it (0.833)."""
    X, y = two_groups_per_class()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                        random_state=0)

    def accuracy(transform):
        knn = KNeighborsClassifier(3).fit(transform(X_train), y_train)
        return knn.score(transform(X_test), y_test)

    local = LDML_Supervised(pairs="neighbors", random_state=0).fit(X_train, y_train)
    drawn = LDML_Supervised(random_state=0).fit(X_train, y_train)
    euclidean = accuracy(lambda Z: Z)
    assert accuracy(local.transform) > euclidean + 0.02
    assert accuracy(local.transform) > accuracy(drawn.transform) + 0.1


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_neighbor_pairs_same_bits_for_any_thread_count(solver):
    X, y = two_groups_per_class(n=300)
    kw = dict(pairs="neighbors", solver=solver, max_iter=5, random_state=0)
    one = LDML_Supervised(n_jobs=1, **kw).fit(X, y)
    two = LDML_Supervised(n_jobs=2, **kw).fit(X, y)
    assert_array_equal(one.components_, two.components_)
    assert one.bias_ == two.bias_


def test_neighbor_pairs_partial_fit_and_parameters():
    X, y = two_groups_per_class(n=300)
    est = LDML_Supervised(pairs="neighbors", solver="adam", random_state=0)
    est.partial_fit(X[:150], y[:150]).partial_fit(X[150:], y[150:])
    assert est.n_iter_ == 2 and np.all(np.isfinite(est.components_))
    with pytest.raises(InvalidParameterError, match="pairs"):
        LDML_Supervised(pairs="nearest").fit(X, y)
    with pytest.raises(InvalidParameterError, match="k_genuine"):
        LDML_Supervised(pairs="neighbors", k_genuine=0).fit(X, y)


def test_neighbor_pairs_refuse_a_dask_array():
    da = pytest.importorskip("dask.array")
    X, y = two_groups_per_class(n=100)
    with pytest.raises(NotImplementedError, match="pairs='random'"):
        LDML_Supervised(pairs="neighbors").fit(da.from_array(X, chunks=50), y)
