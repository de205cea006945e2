"""Tests of the pair sampler ``sample_pairs`` (fastmetric/kernels/sampling.pyx)."""
import itertools
from collections import Counter

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from scipy.stats import chisquare
from threadpoolctl import threadpool_limits

from fastmetric._core.sampling import sample_pairs

# 7 points in 3 labels of sizes 3, 2, 2: 3 + 1 + 1 = 5 positive pairs and
# (49 - 9 - 4 - 4) / 2 = 16 negative pairs.
SMALL = np.array([0, 1, 0, 2, 1, 0, 2])

MODES = [
    dict(),
    dict(balanced=True),
    dict(anchor_label=1),
    dict(unique=True),
    dict(unique=True, balanced=True),
    dict(unique=True, anchor_label=1),
]


def _medium_labels(n=300, n_labels=7, seed=0):
    return np.random.default_rng(seed).integers(0, n_labels, n)


def _all_pairs(labels, positive):
    n = len(labels)
    return [
        (a, b)
        for a, b in itertools.combinations(range(n), 2)
        if (labels[a] == labels[b]) == positive
    ]


def _check_pairs(labels, pairs, y, n_pos, n_neg):
    labels = np.asarray(labels)
    assert pairs.shape == (n_pos + n_neg, 2)
    assert pairs.dtype == np.intp
    assert y.shape == (n_pos + n_neg,)
    assert y.dtype == np.int8
    assert np.all(y[:n_pos] == 1) and np.all(y[n_pos:] == 0)
    assert np.all(pairs[:, 0] < pairs[:, 1])
    assert pairs.min(initial=0) >= 0 and pairs.max(initial=0) < len(labels)
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert np.all(same[:n_pos])
    assert not np.any(same[n_pos:])


# ---------------------------------------------------------------------------
# Basic properties
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", MODES)
def test_labels_of_pairs_shapes_and_dtypes(kwargs):
    labels = _medium_labels()
    pairs, y = sample_pairs(labels, 150, 250, random_state=0, **kwargs)
    _check_pairs(labels, pairs, y, 150, 250)
    if "anchor_label" in kwargs:
        v = kwargs["anchor_label"]
        assert np.all(labels[pairs[:150]] == v)
        # Negatives: exactly one end in the anchor label.
        assert np.all((labels[pairs[150:, 0]] == v) ^ (labels[pairs[150:, 1]] == v))
    if kwargs.get("unique"):
        for block in (pairs[:150], pairs[150:]):
            assert len(np.unique(block, axis=0)) == len(block)


def test_string_labels():
    labels = np.array(["cat", "dog", "cat", "bird", "dog", "cat"])
    pairs, y = sample_pairs(labels, 10, 10, random_state=3)
    _check_pairs(labels, pairs, y, 10, 10)
    pairs, y = sample_pairs(list(labels), 4, 8, anchor_label="cat", random_state=3)
    _check_pairs(labels, pairs, y, 4, 8)
    assert np.all(labels[pairs[:4]] == "cat")


def test_other_label_types():
    # Floats, booleans, huge integers (no small-range relabelling), objects.
    for labels in (
        np.array([0.5, 1.5, 0.5, 1.5, 2.5]),
        np.array([True, False, True, False, True]),
        np.array([10**15, -(10**15), 10**15, 7, 7]),
        np.array(["x", "y", "x", "y", "x"], dtype=object),
    ):
        pairs, y = sample_pairs(labels, 5, 5, random_state=0)
        _check_pairs(labels, pairs, y, 5, 5)


def test_empty_request():
    pairs, y = sample_pairs(SMALL, 0, 0, random_state=0)
    assert pairs.shape == (0, 2) and pairs.dtype == np.intp
    assert y.shape == (0,) and y.dtype == np.int8
    # Only negatives with all singletons; only positives with one label.
    pairs, y = sample_pairs([0, 1, 2], 0, 4, random_state=0)
    _check_pairs([0, 1, 2], pairs, y, 0, 4)
    pairs, y = sample_pairs([5, 5, 5], 4, 0, random_state=0)
    _check_pairs([5, 5, 5], pairs, y, 4, 0)


# ---------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", MODES)
def test_same_seed_same_output_different_seed_different(kwargs):
    labels = _medium_labels()
    p1, y1 = sample_pairs(labels, 100, 100, random_state=42, **kwargs)
    p2, y2 = sample_pairs(labels, 100, 100, random_state=42, **kwargs)
    p3, _ = sample_pairs(labels, 100, 100, random_state=43, **kwargs)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(p1, p3)


@pytest.mark.parametrize("kwargs", MODES)
def test_thread_count_independence(kwargs):
    # Enough pairs for the kernel to use 2 threads (it keeps >= 32768 pairs
    # per thread) and several work chunks per thread.
    labels = _medium_labels(n=3000, n_labels=5)
    n_pos, n_neg = 70000, 80000
    ref, y_ref = sample_pairs(labels, n_pos, n_neg, random_state=7, n_jobs=1, **kwargs)
    _check_pairs(labels, ref, y_ref, n_pos, n_neg)
    out, y = sample_pairs(labels, n_pos, n_neg, random_state=7, n_jobs=2, **kwargs)
    np.testing.assert_array_equal(ref, out)
    np.testing.assert_array_equal(y_ref, y)
    for limit in (1, 2):
        with threadpool_limits(limits=limit):
            out, _ = sample_pairs(labels, n_pos, n_neg, random_state=7, **kwargs)
        np.testing.assert_array_equal(ref, out)


def test_pairs_are_independent_of_each_other():
    # Pair p is a function of (seed, p) only: a shorter request is a prefix.
    labels = _medium_labels()
    long_pairs, _ = sample_pairs(labels, 9000, 9000, random_state=5)
    short_pairs, _ = sample_pairs(labels, 100, 50, random_state=5)
    np.testing.assert_array_equal(short_pairs[:100], long_pairs[:100])
    np.testing.assert_array_equal(short_pairs[100:], long_pairs[9000:9050])


def test_random_state_objects():
    labels = _medium_labels()
    p1, _ = sample_pairs(labels, 50, 50, random_state=np.random.RandomState(0))
    p2, _ = sample_pairs(labels, 50, 50, random_state=np.random.RandomState(0))
    _check_pairs(labels, p1, np.repeat(np.int8([1, 0]), 50), 50, 50)
    np.testing.assert_array_equal(p1, p2)
    rs = np.random.RandomState(0)
    p3, _ = sample_pairs(labels, 50, 50, random_state=rs)
    p4, _ = sample_pairs(labels, 50, 50, random_state=rs)  # state advanced
    assert not np.array_equal(p3, p4)
    g1, _ = sample_pairs(labels, 50, 50, random_state=np.random.default_rng(1))
    g2, _ = sample_pairs(labels, 50, 50, random_state=np.random.default_rng(1))
    np.testing.assert_array_equal(g1, g2)
    # None: fresh seed from numpy's global state; still valid pairs.
    p5, y5 = sample_pairs(labels, 50, 50)
    _check_pairs(labels, p5, y5, 50, 50)
    # Negative and huge integer seeds are taken modulo 2**64.
    a, _ = sample_pairs(labels, 20, 20, random_state=-1)
    b, _ = sample_pairs(labels, 20, 20, random_state=2**64 - 1)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# Distribution: chi-square goodness of fit on the 7-point example
# ---------------------------------------------------------------------------

def _expected_probabilities(labels, positive, balanced=False, anchor=None):
    labels = np.asarray(labels)
    n = len(labels)
    values, counts = np.unique(labels, return_counts=True)
    size = dict(zip(values.tolist(), counts.tolist()))
    probs = {}
    for a, b in _all_pairs(labels, positive):
        la, lb = labels[a].item(), labels[b].item()
        if anchor is not None:
            if anchor not in (la, lb):
                continue
            probs[(a, b)] = 1.0
        elif not balanced:
            probs[(a, b)] = 1.0
        elif positive:
            # Uniform label among those with >= 2 members, then uniform pair.
            k = sum(1 for s in size.values() if s >= 2)
            probs[(a, b)] = 1.0 / k / (size[la] * (size[la] - 1) / 2)
        else:
            # One end's label uniform, that end uniform in its label, the
            # other end uniform outside it; either end can be the first.
            c = len(size)
            probs[(a, b)] = sum(
                1.0 / c / size[lab] / (n - size[lab]) for lab in (la, lb)
            )
    total = sum(probs.values())
    return {k: v / total for k, v in probs.items()}


def _chi2_pvalue(pairs, probs):
    observed = Counter(map(tuple, pairs.tolist()))
    assert set(observed) <= set(probs), "a pair outside the support was drawn"
    keys = sorted(probs)
    if len(keys) == 1:  # a single eligible pair: the support check is the test
        return 1.0
    f_obs = np.array([observed.get(k, 0) for k in keys], dtype=float)
    f_exp = np.array([probs[k] for k in keys]) * len(pairs)
    return chisquare(f_obs, f_exp).pvalue


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(balanced=True), dict(anchor_label=0), dict(anchor_label=2)],
    ids=["uniform", "balanced", "anchor0", "anchor2"],
)
def test_uniformity_chi_square(kwargs):
    n_draws = 20000
    pairs, _ = sample_pairs(SMALL, n_draws, n_draws, random_state=11, **kwargs)
    balanced = kwargs.get("balanced", False)
    anchor = kwargs.get("anchor_label")
    p_pos = _chi2_pvalue(pairs[:n_draws], _expected_probabilities(SMALL, True, balanced, anchor))
    p_neg = _chi2_pvalue(pairs[n_draws:], _expected_probabilities(SMALL, False, balanced, anchor))
    assert p_pos > 1e-3
    assert p_neg > 1e-3


def test_balanced_differs_from_uniform():
    # Sanity check of the test itself: balanced draws fail the uniform fit.
    n_draws = 20000
    pairs, _ = sample_pairs(SMALL, n_draws, 0, balanced=True, random_state=2)
    assert _chi2_pvalue(pairs, _expected_probabilities(SMALL, True)) < 1e-6


@pytest.mark.parametrize("n_neg", [4, 13], ids=["rejection", "enumeration"])
def test_unique_subsets_are_uniform(n_neg):
    # Without replacement every negative pair is included with probability
    # n_neg / 16; the inclusion counts over many seeds must be flat (the
    # chi-square is conservative for these negatively correlated counts).
    counts = Counter()
    n_rep = 1500
    for seed in range(n_rep):
        pairs, _ = sample_pairs(SMALL, 0, n_neg, unique=True, random_state=seed)
        counts.update(map(tuple, pairs.tolist()))
    keys = _all_pairs(SMALL, False)
    assert set(counts) == set(keys)
    f_obs = np.array([counts[k] for k in keys], dtype=float)
    assert chisquare(f_obs).pvalue > 1e-3


# ---------------------------------------------------------------------------
# unique=True
# ---------------------------------------------------------------------------

def test_unique_all_eligible_pairs_exactly():
    all_pos = set(_all_pairs(SMALL, True))
    all_neg = set(_all_pairs(SMALL, False))
    pairs, y = sample_pairs(SMALL, len(all_pos), len(all_neg), unique=True, random_state=0)
    _check_pairs(SMALL, pairs, y, len(all_pos), len(all_neg))
    assert set(map(tuple, pairs[: len(all_pos)].tolist())) == all_pos
    assert set(map(tuple, pairs[len(all_pos):].tolist())) == all_neg
    # Anchor label 0 (3 members): 3 positive pairs, 3 * 4 negative pairs.
    pairs, y = sample_pairs(SMALL, 3, 12, unique=True, anchor_label=0, random_state=0)
    assert len(set(map(tuple, pairs[:3].tolist()))) == 3
    assert len(set(map(tuple, pairs[3:].tolist()))) == 12
    assert np.all(SMALL[pairs[:3]] == 0)


def test_unique_near_capacity_and_large_request():
    labels = _medium_labels(n=120, n_labels=3)
    n_pos_all = len(_all_pairs(labels, True))
    # Just under and over half of the eligible pairs: rejection / enumeration.
    for n_pos in (n_pos_all // 2, n_pos_all // 2 + 1, n_pos_all - 1):
        pairs, _ = sample_pairs(labels, n_pos, 0, unique=True, random_state=1)
        assert len(np.unique(pairs, axis=0)) == n_pos
        assert np.all(labels[pairs[:, 0]] == labels[pairs[:, 1]])


def test_balanced_unique_quotas():
    labels = _medium_labels(n=400, n_labels=5, seed=3)
    n_pos, n_neg = 503, 1002
    pairs, y = sample_pairs(labels, n_pos, n_neg, unique=True, balanced=True, random_state=4)
    _check_pairs(labels, pairs, y, n_pos, n_neg)
    pos, neg = pairs[:n_pos], pairs[n_pos:]
    assert len(np.unique(pos, axis=0)) == n_pos
    assert len(np.unique(neg, axis=0)) == n_neg
    # Positive quotas: 503 = 5 * 100 + 3, so 100 or 101 per label.
    per_label = np.bincount(labels[pos[:, 0]], minlength=5)
    assert set(per_label.tolist()) <= {100, 101} and per_label.sum() == n_pos


def test_balanced_unique_small_quotas():
    # Sizes 3, 2, 2 -> 3, 1, 1 positive pairs: 3 pairs = one per label.
    pairs, _ = sample_pairs(SMALL, 3, 0, unique=True, balanced=True, random_state=0)
    assert sorted(SMALL[pairs[:, 0]].tolist()) == [0, 1, 2]
    # 4 pairs: the extra one can only go to label 0.
    pairs, _ = sample_pairs(SMALL, 4, 0, unique=True, balanced=True, random_state=0)
    assert sorted(SMALL[pairs[:, 0]].tolist()) == [0, 0, 1, 2]
    with pytest.raises(ValueError, match="request at most 4 positive pairs"):
        sample_pairs(SMALL, 5, 0, unique=True, balanced=True, random_state=0)
    with pytest.raises(ValueError, match="balanced=True with unique=True"):
        sample_pairs([0, 0, 0, 0, 0, 1], 0, 9, unique=True, balanced=True, random_state=0)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

def test_infeasible_requests():
    with pytest.raises(ValueError, match="no positive pair exists"):
        sample_pairs([0, 1, 2, 3], 1, 0)
    with pytest.raises(ValueError, match="no positive pair exists"):
        sample_pairs([0, 1, 2, 3], 1, 0, balanced=True)
    with pytest.raises(ValueError, match="no negative pair exists"):
        sample_pairs([4, 4, 4], 0, 1)
    with pytest.raises(ValueError, match="anchor_label"):
        sample_pairs(SMALL, 1, 1, anchor_label=9)
    with pytest.raises(ValueError, match="anchor_label"):
        sample_pairs(SMALL, 1, 1, anchor_label="x")
    with pytest.raises(ValueError, match="single member"):
        sample_pairs([0, 0, 1], 1, 0, anchor_label=1)
    with pytest.raises(ValueError, match="5 distinct positive pairs"):
        sample_pairs(SMALL, 6, 0, unique=True)
    with pytest.raises(ValueError, match="16 distinct negative pairs"):
        sample_pairs(SMALL, 0, 17, unique=True)
    with pytest.raises(ValueError, match="12 distinct negative pairs"):
        sample_pairs(SMALL, 0, 13, unique=True, anchor_label=0)


@pytest.mark.parametrize(
    "labels, n_pos, n_neg, exc",
    [
        ([0.0, np.nan, 1.0, 1.0], 1, 1, ValueError),
        ([0.0, np.inf, 1.0, 1.0], 1, 1, ValueError),
        (np.array([1, None, 1, 2], dtype=object), 1, 1, ValueError),
        (np.zeros((4, 2)), 1, 1, ValueError),
        (np.zeros((4, 1)), 1, 1, ValueError),
        (np.int64(3), 1, 1, ValueError),
        ([], 1, 1, ValueError),
        ([1], 0, 0, ValueError),
        (SMALL, -1, 1, ValueError),
        (SMALL, 1, -2, ValueError),
        (SMALL, 1.0, 1, TypeError),
        (SMALL, 1, 2.5, TypeError),
        (SMALL, True, 1, TypeError),
        (SMALL, "3", 1, TypeError),
    ],
)
def test_bad_input(labels, n_pos, n_neg, exc):
    with pytest.raises(exc):
        sample_pairs(labels, n_pos, n_neg, random_state=0)


def test_bad_random_state_and_n_jobs():
    with pytest.raises((TypeError, ValueError)):
        sample_pairs(SMALL, 1, 1, random_state="seed")
    with pytest.raises(TypeError):
        sample_pairs(SMALL, 1, 1, random_state=True)
    with pytest.raises(ValueError):
        sample_pairs(SMALL, 1, 1, n_jobs=0)
    with pytest.raises(TypeError):
        sample_pairs(SMALL, 1, 1, n_jobs=1.5)


def test_numpy_integer_counts_and_public_reexport():
    pairs, y = sample_pairs(SMALL, np.int64(3), np.uint8(2), random_state=0)
    _check_pairs(SMALL, pairs, y, 3, 2)
    try:
        from fastmetric.pairwise import sample_pairs as public
    except ImportError:  # other kernels of pairwise.py not built
        pytest.skip("fastmetric.pairwise cannot be imported in this build")
    assert public is sample_pairs


def test_kernel_is_exported_for_cimport():
    import fastmetric.kernels.sampling as mod

    assert "sample_label_pairs" in mod.__pyx_capi__


# --------------------------------------------------------------------------
# Slices of the streams (minibatch sampling in bounded memory)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_label_pair_stream_slices_equal_sample_pairs(balanced, n_jobs):
    from fastmetric._core.sampling import LabelPairStream

    labels = np.random.RandomState(3).randint(0, 7, 500)
    pairs, y = sample_pairs(labels, 900, 600, balanced=balanced, random_state=11, n_jobs=1)
    stream = LabelPairStream(labels, balanced=balanced, n_jobs=n_jobs)
    pos, neg = [], []
    # Uneven slices: the result must not depend on how the draws are cut.
    for (ps, pn), (ns, nn) in zip([(0, 100), (100, 450), (550, 350)],
                                  [(0, 250), (250, 1), (251, 349)]):
        part, t = stream.draw(11, ps, pn, ns, nn)
        assert_array_equal(t, np.r_[np.ones(pn), np.zeros(nn)])
        pos.append(part[:pn])
        neg.append(part[pn:])
    assert_array_equal(np.concatenate(pos), pairs[:900])
    assert_array_equal(np.concatenate(neg), pairs[900:])


def test_label_pair_stream_with_anchor_label():
    from fastmetric._core.sampling import LabelPairStream

    labels = np.random.RandomState(4).randint(0, 5, 300)
    pairs, _ = sample_pairs(labels, 200, 150, anchor_label=3, random_state=9)
    part, _ = LabelPairStream(labels, anchor_label=3).draw(9, 0, 200, 0, 150)
    assert_array_equal(part, pairs)
    with pytest.raises(ValueError, match="anchor_label"):
        LabelPairStream(labels, anchor_label=7)


def test_label_pair_stream_errors():
    from fastmetric._core.sampling import LabelPairStream

    with pytest.raises(ValueError, match="no negative pair"):
        LabelPairStream(np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="no positive pair"):
        LabelPairStream(np.arange(5))
    with pytest.raises(ValueError, match="n_positive"):
        LabelPairStream(np.arange(6) % 2).draw(0, 0, -1, 0, 1)
