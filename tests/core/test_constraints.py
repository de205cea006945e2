"""Class labels turned into constraints (fastmetric._core.constraints).

Each function is the one draw of its kind: it must give exactly the pairs,
quadruplets and chunks of the kernels' samplers for the same seed, with the
count rules the learners document.
"""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.utils import check_random_state

from fastmetric._core.constraints import (
    chunks_from_labels,
    data_pair_count,
    distinct_pair_counts,
    label_pairs,
    pairs_from_labels,
    quadruplets_from_labels,
    split_pair_count,
)
from fastmetric._core.sampling import sample_chunks, sample_pairs


@pytest.fixture
def labels():
    return np.repeat([3, 7, 9], [6, 4, 5])


def _seed(random_state):
    return int(check_random_state(random_state).randint(0, np.iinfo(np.int32).max))


def test_counts():
    n = np.array([6, 4, 5])
    similar, dissimilar = distinct_pair_counts(n)
    assert similar == 15 + 6 + 10
    assert similar + dissimilar == 15 * 14 // 2
    assert split_pair_count(10, 0.5) == (5, 5)
    assert split_pair_count(10, 0.01) == (1, 9)  # at least one of each kind
    assert split_pair_count(10, 0.99) == (9, 1)


def test_pairs_are_the_samplers(labels):
    _, enc = np.unique(labels, return_inverse=True)
    a, b, similar = pairs_from_labels(labels, 12, np.random.RandomState(5), "MMC", n_jobs=2)
    pairs, t = sample_pairs(enc, 12, 12, random_state=_seed(5), n_jobs=1)
    assert a.flags.c_contiguous and b.flags.c_contiguous and similar.dtype == bool
    assert_array_equal(np.column_stack((a, b)), pairs)
    assert_array_equal(similar, t.astype(bool))
    assert_array_equal(enc[a] == enc[b], similar)
    # Default count: 20 n_classes^2 of each kind.
    a, _, similar = pairs_from_labels(labels, None, np.random.RandomState(0), "MMC")
    assert similar.sum() == (~similar).sum() == 20 * 9


def test_data_pair_count_grows_with_the_data(labels):
    # max(20 n_classes^2, min(10 n, 100000)) of each kind; a given count as is.
    assert data_pair_count(None, [6, 4, 5]) == 20 * 9          # 150 < 180
    assert data_pair_count(None, [100, 87]) == 1870             # sonar-sized: not 80
    assert data_pair_count(None, [10**5, 10**5]) == 100_000     # the ceiling
    assert data_pair_count(None, [5] * 40) == 20 * 40 ** 2      # never below metric-learn
    assert data_pair_count(7, [100, 87]) == 7
    # pairs_from_labels(grow=True) draws that count, and the same pairs as
    # the sampler for it; grow=False keeps metric-learn's count.
    y = np.repeat([0, 1], [40, 35])
    a, b, similar = pairs_from_labels(y, None, np.random.RandomState(2), "MMC", grow=True)
    assert similar.sum() == (~similar).sum() == 750
    pairs, _ = sample_pairs(y, 750, 750, random_state=_seed(2))
    assert_array_equal(np.column_stack((a, b)), pairs)
    _, _, similar = pairs_from_labels(y, None, np.random.RandomState(2), "MMC")
    assert similar.sum() == 80


def test_distinct_pairs_clip_with_a_warning(labels):
    _, enc = np.unique(labels, return_inverse=True)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a, b, similar = pairs_from_labels(labels, 40, np.random.RandomState(1), "ITML",
                                          distinct=True)
    assert any("only 31 distinct similar pairs" in str(w.message) for w in rec)
    assert similar.sum() == 31 and (~similar).sum() == 40
    assert len({tuple(sorted(p)) for p in zip(a, b)}) == a.shape[0]
    pairs, _ = sample_pairs(enc, 31, 40, unique=True, random_state=_seed(1))
    assert_array_equal(np.column_stack((a, b)), pairs)


def test_quadruplets(labels):
    _, enc = np.unique(labels, return_inverse=True)
    quads = quadruplets_from_labels(labels, 20, np.random.RandomState(2), "LSML")
    pairs, _ = sample_pairs(enc, 20, 20, unique=True, random_state=_seed(2))
    assert quads.shape == (20, 4) and quads.dtype == np.intp
    assert_array_equal(quads, np.hstack((pairs[:20], pairs[20:])))
    assert np.all(enc[quads[:, 0]] == enc[quads[:, 1]])
    assert np.all(enc[quads[:, 2]] != enc[quads[:, 3]])
    with pytest.warns(UserWarning, match="only 31 quadruplets"):
        assert quadruplets_from_labels(labels, 50, np.random.RandomState(2), "LSML").shape[0] == 31
    with pytest.raises(ValueError, match="LSML needs at least 2 classes"):
        quadruplets_from_labels(np.zeros(5), 5, np.random.RandomState(2), "LSML")


def test_label_pairs_anchor_and_balanced(labels):
    _, enc = np.unique(labels, return_inverse=True)
    pairs, t = label_pairs(enc, 5, 7, 11, anchor_label=1, n_jobs=2)
    ref, ref_t = sample_pairs(enc, 5, 7, anchor_label=1, random_state=11, n_jobs=1)
    assert_array_equal(pairs, ref)
    assert_array_equal(t, ref_t)
    assert np.all((enc[pairs[:, 0]] == 1) | (enc[pairs[:, 1]] == 1))
    pairs, _ = label_pairs(enc, 5, 7, 11, balanced=True)
    assert_array_equal(pairs, sample_pairs(enc, 5, 7, balanced=True, random_state=11)[0])


def test_chunks(labels):
    chunks = chunks_from_labels(labels, 4, 2, random_state=3, n_jobs=2)
    assert chunks.dtype == np.int64
    assert_array_equal(chunks, sample_chunks(labels, 4, 2, random_state=3, n_jobs=1))
    for c in range(4):
        members = np.flatnonzero(chunks == c)
        assert members.shape == (2,) and len(set(labels[members])) == 1


def test_class_labels_of_mixed_types_name_y():
    """Object labels numpy cannot sort ('a', 1, None) raised np.unique's
    bare "'<' not supported"; now a TypeError that names y and the types."""
    from fastmetric._core.inputs import encode_classes

    with pytest.raises(TypeError, match=r"LDML_Supervised: the class labels in y mix types "
                                        r"that cannot be ordered \(NoneType, int, str\)"):
        encode_classes(np.array(["a", 1, None] * 3, dtype=object), "LDML_Supervised", "")
