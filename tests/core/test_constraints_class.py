"""metric-learn's public ``Constraints`` class and ``wrap_pairs``.

``import fastmetric as metric_learn`` must give ``metric_learn.Constraints``
and ``from metric_learn.constraints import Constraints, wrap_pairs`` must
work as ``from fastmetric.constraints import ...``.  The draws need not be
metric-learn's numbers, but every output must satisfy its constraints
exactly, a seed must fix it, and it must be the draw of the one sampler of
``fastmetric._core.constraints`` (the ``_Supervised`` learners').
"""
import doctest
import importlib
import itertools
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastmetric
from fastmetric._core.constraints import (
    chunks_from_labels,
    generate_knn_triplets,
    pairs_from_labels,
)


@pytest.fixture
def partial():
    """Labels of 3 classes (6, 4 and 5 samples) with 4 unknown (-1, -3)
    scattered among them."""
    y = np.repeat([3, 7, 9], [6, 4, 5])
    y = np.random.RandomState(0).permutation(y)
    return np.insert(y, [0, 4, 9, 15], [-1, -1, -3, -1])


def _pair_sets(y):
    """All distinct similar and dissimilar pairs (a < b) of labelled samples."""
    known = np.flatnonzero(y >= 0)
    pairs = list(itertools.combinations(known.tolist(), 2))
    return ({p for p in pairs if y[p[0]] == y[p[1]]},
            {p for p in pairs if y[p[0]] != y[p[1]]})


# --------------------------------------------------------------------------
# Where metric-learn code finds them
# --------------------------------------------------------------------------
def test_exported_as_metric_learn_exports_them():
    import fastmetric as metric_learn

    assert "Constraints" in metric_learn.__all__
    assert "constraints" in metric_learn.__all__
    cons = metric_learn.Constraints([0, 0, 1, 1])
    assert isinstance(cons, metric_learn.constraints.Constraints)
    module = importlib.import_module("fastmetric.constraints")
    from fastmetric.constraints import Constraints, wrap_pairs

    assert module is metric_learn.constraints
    assert Constraints is metric_learn.Constraints
    assert callable(wrap_pairs) and "wrap_pairs" in module.__all__


def test_partial_labels_attribute():
    cons = fastmetric.Constraints([2, -1, 0, 2])
    assert cons.partial_labels.dtype == np.int64
    assert_array_equal(cons.partial_labels, [2, -1, 0, 2])
    # integer-valued floats (a float y) and object arrays of ints are labels too
    assert_array_equal(fastmetric.Constraints(np.array([1.0, -1.0])).partial_labels, [1, -1])
    assert_array_equal(fastmetric.Constraints(np.array([4, -1], dtype=object)).partial_labels,
                       [4, -1])


# --------------------------------------------------------------------------
# positive_negative_pairs
# --------------------------------------------------------------------------
def test_pairs_satisfy_their_constraints(partial):
    a, b, c, d = fastmetric.Constraints(partial).positive_negative_pairs(12, random_state=0)
    for arr in (a, b, c, d):
        assert arr.dtype == np.intp and arr.shape == (12,)
    similar, dissimilar = _pair_sets(partial)
    got_similar = set(zip(a.tolist(), b.tolist()))
    got_dissimilar = set(zip(c.tolist(), d.tolist()))
    # distinct pairs of two different labelled rows, of the right kind
    assert len(got_similar) == 12 and got_similar <= similar
    assert len(got_dissimilar) == 12 and got_dissimilar <= dissimilar
    assert np.all(partial[np.concatenate([a, b, c, d])] >= 0)
    assert np.all(a < b) and np.all(c < d)


def test_pairs_depend_on_the_seed_only(partial):
    cons = fastmetric.Constraints(partial)
    first = cons.positive_negative_pairs(10, random_state=3)
    for again in (cons.positive_negative_pairs(10, random_state=3),
                  fastmetric.Constraints(partial).positive_negative_pairs(
                      10, random_state=np.random.RandomState(3))):
        for x, y in zip(first, again):
            assert_array_equal(x, y)
    other = cons.positive_negative_pairs(10, random_state=4)
    assert any(not np.array_equal(x, y) for x, y in zip(first, other))


def test_pairs_are_the_supervised_learners_draw():
    """On fully labelled data: the pairs ITML_Supervised draws for that seed
    (pairs_from_labels, distinct), not a second sampler."""
    y = np.repeat([5, 1, 8], [7, 6, 4])
    a, b, c, d = fastmetric.Constraints(y).positive_negative_pairs(20, random_state=7)
    pa, pb, similar = pairs_from_labels(y, 20, np.random.RandomState(7), "ITML",
                                        distinct=True)
    assert_array_equal(np.concatenate([a, c]), pa)
    assert_array_equal(np.concatenate([b, d]), pb)
    assert similar[:20].all() and not similar[20:].any()


def test_too_few_pairs_warn_and_same_length_cuts(partial):
    similar, dissimilar = _pair_sets(partial)  # 31 similar, 74 dissimilar
    cons = fastmetric.Constraints(partial)
    with pytest.warns(UserWarning, match="only 31 distinct similar pairs") as rec:
        a, b, c, d = cons.positive_negative_pairs(40, random_state=0)
    assert not any("dissimilar" in str(w.message) for w in rec)
    assert rec[0].filename == __file__  # the warning points at the caller
    assert set(zip(a.tolist(), b.tolist())) == similar  # every one of them
    assert len(set(zip(c.tolist(), d.tolist()))) == 40
    with pytest.warns(UserWarning):
        a2, b2, c2, d2 = cons.positive_negative_pairs(40, same_length=True, random_state=0)
    assert [len(x) for x in (a2, b2, c2, d2)] == [31] * 4
    assert_array_equal(c2, c[:31])
    assert_array_equal(d2, d[:31])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        *_, c3, _ = cons.positive_negative_pairs(500, random_state=0)
    assert [str(w.message)[:32] for w in rec] == ["only 31 distinct similar pairs e",
                                                 "only 74 distinct dissimilar pair"]
    assert len(c3) == len(dissimilar)


def test_pairs_of_one_class_or_no_label():
    with pytest.warns(UserWarning, match="only 0 distinct dissimilar"):
        a, b, c, d = fastmetric.Constraints([4, 4, -1, 4]).positive_negative_pairs(
            2, random_state=0)
    assert sorted(zip(a.tolist(), b.tolist())) in ([(0, 1), (0, 3)], [(0, 1), (1, 3)],
                                                   [(0, 3), (1, 3)])
    assert c.shape == d.shape == (0,) and c.dtype == np.intp
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fastmetric.Constraints([-1, -1]).positive_negative_pairs(3)
    assert len(rec) == 2 and all("only 0 distinct" in str(w.message) for w in rec)
    assert all(x.shape == (0,) for x in out)


def test_num_constraints_is_the_deprecated_name(partial):
    cons = fastmetric.Constraints(partial)
    ref = cons.positive_negative_pairs(n_constraints=6, random_state=2)
    with pytest.warns(FutureWarning, match="num_constraints was renamed n_constraints"):
        old = cons.positive_negative_pairs(num_constraints=6, random_state=2)
    for x, y in zip(ref, old):
        assert_array_equal(x, y)


# --------------------------------------------------------------------------
# chunks
# --------------------------------------------------------------------------
def test_chunks_satisfy_their_constraints(partial):
    chunks = fastmetric.Constraints(partial).chunks(n_chunks=5, chunk_size=2, random_state=0)
    assert chunks.shape == partial.shape and chunks.dtype == np.int64
    assert np.all(chunks[partial < 0] == -1)
    assert sorted(set(chunks.tolist()) - {-1}) == list(range(5))
    for j in range(5):
        members = np.flatnonzero(chunks == j)
        assert members.shape == (2,) and len(set(partial[members].tolist())) == 1
    again = fastmetric.Constraints(partial).chunks(n_chunks=5, chunk_size=2, random_state=0)
    assert_array_equal(chunks, again)
    # the exact number the classes supply: 6 // 3 + 4 // 3 + 5 // 3 = 4
    full = fastmetric.Constraints(partial).chunks(n_chunks=4, chunk_size=3, random_state=1)
    assert np.bincount(full[full >= 0]).tolist() == [3, 3, 3, 3]


def test_chunks_are_rca_supervised_draw():
    y = np.repeat([0, 1, 2], [5, 4, 6])
    assert_array_equal(fastmetric.Constraints(y).chunks(6, 2, random_state=9),
                       chunks_from_labels(y, 6, 2, random_state=9))


def test_chunks_the_classes_cannot_supply(partial):
    cons = fastmetric.Constraints(partial)
    with pytest.raises(ValueError, match=r"n_chunks=8 .* at most 7 chunks"):
        cons.chunks(n_chunks=8, chunk_size=2)
    with pytest.raises(ValueError, match="no labelled sample"):
        fastmetric.Constraints([-1, -1, -2]).chunks(n_chunks=1)
    with pytest.warns(FutureWarning, match="num_chunks was renamed n_chunks"):
        chunks = cons.chunks(num_chunks=7, random_state=0)
    assert chunks.max() == 6


# --------------------------------------------------------------------------
# generate_knntriplets
# --------------------------------------------------------------------------
def _brute_force_triplets(X, y, k_genuine, k_impostor):
    """Every (anchor, genuine, impostor) of the labelled rows, by sorting
    distances (ties by index)."""
    known = np.flatnonzero(y >= 0)
    out = []
    for a in known:
        dist = np.linalg.norm(X - X[a], axis=1)
        same = [i for i in known if y[i] == y[a] and i != a]
        other = [i for i in known if y[i] != y[a]]
        gen = sorted(same, key=lambda i: (dist[i], i))[:k_genuine]
        imp = sorted(other, key=lambda i: (dist[i], i))[:k_impostor]
        out += [[int(a), int(g), int(q)] for g in gen for q in imp]
    return sorted(out)


def test_knn_triplets_satisfy_their_constraints(partial):
    X = np.random.RandomState(1).randn(partial.shape[0], 3)
    cons = fastmetric.Constraints(partial)
    triplets = cons.generate_knntriplets(X, k_genuine=2, k_impostor=3)
    assert triplets.dtype == np.intp and triplets.shape == (15 * 2 * 3, 3)
    # indices of the rows as given; unknown rows in none of them
    assert sorted(triplets.tolist()) == _brute_force_triplets(X, partial, 2, 3)
    assert np.all(partial[triplets] >= 0)
    assert np.all(partial[triplets[:, 0]] == partial[triplets[:, 1]])
    assert np.all(partial[triplets[:, 0]] != partial[triplets[:, 2]])


def test_knn_triplets_are_scml_supervised_triplets():
    X = np.random.RandomState(2).randn(12, 2)
    y = np.repeat([0, 1, 2], 4)
    assert_array_equal(fastmetric.Constraints(y).generate_knntriplets(X, 2, 2),
                       generate_knn_triplets(X, y, 2, 2))


def test_knn_triplets_of_small_classes_warn():
    X = np.array([[0.0], [1.0], [3.0], [10.0], [12.0], [50.0]])
    y = np.array([0, 0, 0, 1, 1, -1])
    with pytest.warns(UserWarning, match=r"too few samples for k_genuine=2") as rec:
        triplets = fastmetric.Constraints(y).generate_knntriplets(X, 2, 1)
    assert rec[0].filename == __file__
    assert sorted(triplets.tolist()) == _brute_force_triplets(X, y, 2, 1)
    with pytest.warns(UserWarning, match=r"k_impostor=4 impostors"):
        triplets = fastmetric.Constraints(y).generate_knntriplets(X, 1, 4)
    assert sorted(triplets.tolist()) == _brute_force_triplets(X, y, 1, 4)


# --------------------------------------------------------------------------
# wrap_pairs
# --------------------------------------------------------------------------
def test_wrap_pairs_gives_a_pair_learners_input(partial):
    from fastmetric.constraints import wrap_pairs

    X = np.random.RandomState(3).randn(partial.shape[0], 4)
    abcd = fastmetric.Constraints(partial).positive_negative_pairs(8, random_state=0)
    pairs, y = wrap_pairs(X, abcd)
    a, b, c, d = abcd
    assert pairs.shape == (16, 2, 4) and pairs.dtype == X.dtype
    assert_array_equal(pairs[:8, 0], X[a])
    assert_array_equal(pairs[:8, 1], X[b])
    assert_array_equal(pairs[8:, 0], X[c])
    assert_array_equal(pairs[8:, 1], X[d])
    assert y.tolist() == [1] * 8 + [-1] * 8
    mmc = fastmetric.MMC(random_state=0).fit(pairs, y)
    assert mmc.predict(pairs).shape == (16,)
    # lists, and no similar pair at all
    pairs, y = wrap_pairs(X.tolist(), ([], [], [0, 1], [2, 3]))
    assert pairs.shape == (2, 2, 4) and y.tolist() == [-1, -1]


# --------------------------------------------------------------------------
# Bad input: a ValueError or TypeError that names it
# --------------------------------------------------------------------------
@pytest.mark.parametrize("labels, error, match", [
    ([[0, 1], [1, 0]], ValueError, "1-D array"),
    (5, ValueError, "1-D array"),
    (["a", "b", "a"], TypeError, "integer class labels"),
    ([True, False], TypeError, "integer class labels"),
    ([0, 1.5, 1], ValueError, "got 1.5 at index 1"),
    ([0, np.nan, 1], ValueError, "Mark an unknown label with -1"),
    (np.array([1, None], dtype=object), TypeError, "integer class labels"),
])
def test_bad_partial_labels(labels, error, match):
    with pytest.raises(error, match=match):
        fastmetric.Constraints(labels)


@pytest.mark.parametrize("n", [0, -2, 2.5, "3", True])
def test_n_constraints_must_be_a_positive_integer(partial, n):
    with pytest.raises((ValueError, TypeError), match="n_constraints"):
        fastmetric.Constraints(partial).positive_negative_pairs(n)


def test_bad_arguments_of_the_methods(partial):
    cons = fastmetric.Constraints(partial)
    with pytest.raises(TypeError, match="needs n_constraints"):
        cons.positive_negative_pairs()
    with pytest.raises(ValueError, match="same_length"):
        cons.positive_negative_pairs(3, same_length="yes")
    for kwargs in ({"n_chunks": 0}, {"chunk_size": 0}, {"n_chunks": 2.0}):
        with pytest.raises((ValueError, TypeError), match=next(iter(kwargs))):
            cons.chunks(**kwargs)
    X = np.zeros((partial.shape[0], 2))
    with pytest.raises(ValueError, match="X has 18 rows but partial_labels has 19 labels"):
        cons.generate_knntriplets(X[1:], 1, 1)
    with pytest.raises((ValueError, TypeError), match="k_genuine"):
        cons.generate_knntriplets(X, 0, 1)
    with pytest.raises((ValueError, TypeError), match="k_impostor"):
        cons.generate_knntriplets(X, 1, 1.5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fastmetric.Constraints([1, 1, -1]).generate_knntriplets(X[:3], 1, 1)


def test_bad_arguments_of_wrap_pairs():
    from fastmetric.constraints import wrap_pairs

    X = np.arange(10.0).reshape(5, 2)
    with pytest.raises(ValueError, match="4 index arrays"):
        wrap_pairs(X, ([0], [1], [2]))
    with pytest.raises(ValueError, match="4 index arrays"):
        wrap_pairs(X, 3)
    with pytest.raises(ValueError, match="same length"):
        wrap_pairs(X, ([0, 1], [1], [2], [3]))
    with pytest.raises(ValueError, match=r"index 5 .* \[0, 5\)"):
        wrap_pairs(X, ([0], [5], [2], [3]))
    with pytest.raises(TypeError, match="integer row indices"):
        wrap_pairs(X, ([0.5], [1], [2], [3]))
    with pytest.raises(ValueError, match="2-D array"):
        wrap_pairs(X.ravel(), ([0], [1], [2], [3]))


def test_docstring_examples_run():
    from fastmetric.constraints import wrap_pairs

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    cls = fastmetric.Constraints
    for obj in (cls, cls.positive_negative_pairs, cls.chunks, cls.generate_knntriplets,
                wrap_pairs):
        test = doctest.DocTestParser().get_doctest(obj.__doc__, {}, obj.__name__, None, 0)
        assert test.examples, obj.__name__
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the examples draw without a warning
            runner.run(test)
    assert runner.failures == 0
