"""Fuzzing the public surface with hypothesis.

Every public estimator (each learner, its ``_Supervised`` form, the pairs,
triplets and quadruplets learners, ClusterLDML, MahalanobisNeighbors and the
two graph transformers), every public kernel function of
:mod:`fastmetric.pairwise`, the neighbour functions of
:mod:`fastmetric.neighbors`, the retrieval scores, ``evaluate`` and the
scorers of :mod:`fastmetric.metrics`, and ``save``/``load`` (damaged and
tampered model files) are driven with generated input:
shapes (0 and 1 rows, 1 feature, more features than rows, more components
than features), dtypes (bool, int, float16/32/64, complex, object, strings),
NaN and infinities anywhere, magnitudes from 1e-300 to 1e300, constant and
duplicated rows and columns, F-ordered, strided, read-only and memmap
arrays, sparse matrices, lists (and DataFrames when pandas is installed),
wrong labels (strings, floats, one class, wrong length), pair indices out of
range or negative, and wrong parameter values and types.

Each case must end in a finite result of the right shape, or in a
ValueError/TypeError with a message (a MemoryError only for the requests of
10**12 items): never another exception, a crash, a hang (small data, small
budgets, a timeout), a storm of warnings, or NaN in a fitted model.

The examples are derandomised (the same cases on every run) and their number
is ``FASTMETRIC_FUZZ_EXAMPLES`` per test (default 200: 13,000 cases in about
30 seconds on a quiet 2-core machine, in a suite of about 3.5 minutes); a
longer run::

    FASTMETRIC_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py

At the end a summary counts the cases by outcome (written to the terminal,
and to the file named by ``FASTMETRIC_FUZZ_REPORT`` when it is set).
"""
import collections
import contextlib
import json
import os
import shutil
import tempfile
import warnings

import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmetric as fm
from fastmetric import pairwise

from ._learner_cases import all_cases, iris_std

EXAMPLES = int(os.environ.get("FASTMETRIC_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck), print_blob=True)
MAX_WARNINGS = 10  # more than this from one call is a warning storm
HUGE = 10**12  # a request for more memory than exists

try:
    import pandas
except ImportError:  # pandas is optional
    pandas = None

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

OUTCOMES = collections.Counter()
MESSAGES = collections.defaultdict(collections.Counter)
_TMP = tempfile.mkdtemp(prefix="fastmetric-fuzz-")


@pytest.fixture(scope="module", autouse=True)
def fuzz_report(request):
    """Count the outcomes, and report them when the module is done."""
    yield
    shutil.rmtree(_TMP, ignore_errors=True)
    total = sum(OUTCOMES.values())
    by_class = collections.Counter()
    for (_, outcome), count in OUTCOMES.items():
        by_class[outcome] += count
    lines = [f"fastmetric fuzz: {total} cases ({EXAMPLES} examples per test): "
             + ", ".join(f"{k} {v}" for k, v in by_class.most_common())]
    if not total:  # only the regression tests ran
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        # Past pytest's output capture, which holds a fixture's teardown output.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
    path = os.environ.get("FASTMETRIC_FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"examples_per_test": EXAMPLES, "cases": total,
                       "outcomes": dict(by_class),
                       "by_target": {f"{t} | {o}": c for (t, o), c in sorted(OUTCOMES.items())},
                       "messages": {t: dict(m.most_common(20)) for t, m in MESSAGES.items()}},
                      f, indent=1)


# --------------------------------------------------------------------------
# Running one case
# --------------------------------------------------------------------------
def _max_magnitude(*values):
    top = 0.0
    for v in values:
        try:
            arr = np.asarray(v.toarray() if hasattr(v, "toarray") else v)
            if arr.dtype.kind in "biufc" and arr.size:
                with np.errstate(all="ignore"):
                    top = max(top, float(np.nanmax(np.abs(arr.astype(np.complex128)))))
        except (TypeError, ValueError):
            pass
    return top


def check_array(result, shape, inputs=()):
    """A finite result of the given shape (None: any); an infinity is only
    accepted when the inputs are so large that the exact value overflows."""
    arr = np.asarray(result)
    if shape is not None:
        assert arr.shape == shape, f"shape {arr.shape}, expected {shape}"
    if arr.dtype.kind in "fc":
        assert not np.isnan(arr).any(), "NaN in the result"
        if not np.isfinite(arr).all():
            # (Squared) products of the inputs can exceed float32 from about 1e9.
            huge = 1e9 if arr.dtype == np.float32 else 1e100
            assert _max_magnitude(*inputs) >= huge, "infinity in the result of moderate input"


def run(target, call, check, memory_case=False):
    """Run one case; count its outcome; fail on anything not allowed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except (ValueError, TypeError) as exc:
            message = str(exc).strip()
            assert message, f"{target}: {type(exc).__name__} without a message"
            outcome = "TypeError" if isinstance(exc, TypeError) and not isinstance(
                exc, ValueError) else "ValueError"
            MESSAGES[target][message[:80]] += 1
        except MemoryError:
            if not memory_case:
                raise
            outcome = "MemoryError"
        else:
            check(result)
            outcome = "finite result"
    assert len(caught) <= MAX_WARNINGS, (
        f"{target}: a storm of {len(caught)} warnings: "
        f"{sorted({str(w.message)[:80] for w in caught})}")
    OUTCOMES[(target, outcome)] += 1
    return outcome, (None if outcome != "finite result" else result)


# --------------------------------------------------------------------------
# Generated input
# --------------------------------------------------------------------------
DTYPES = ["float64", "float32", "float16", "int64", "int8", "uint8", "bool", "complex128",
          "object", "str"]
SPECIALS = [None, None, "nan", "inf", "-inf", "const_col", "const_all", "dup_rows", "dup_cols"]
LAYOUTS = ["C", "C", "F", "strided", "readonly", "memmap", "list", "sparse", "pandas", "1d",
           "3d", "scalar"]
SCALES = [1.0, 1.0, 1e-300, 1e-30, 1e30, 1e300]


# Valid input only (every magnitude still): the cases that reach a result.
CLEAN_DTYPES = ["float64", "float64", "float32", "int64", "uint8", "bool"]
CLEAN_SPECIALS = [None, None, "const_col", "const_all", "dup_rows", "dup_cols"]
CLEAN_LAYOUTS = ["C", "C", "F", "strided", "readonly", "memmap", "list", "pandas"]


@st.composite
def recipes(draw, rows=(0, 1, 2, 3, 5, 12), cols=(1, 2, 3, 7), clean=False):
    """How to build an array: shape, dtype, values, layout and a seed
    (``clean``: a valid array, from the lists above)."""
    return {
        "n": draw(st.sampled_from(rows if not clean else [r for r in rows if r >= 2] or rows)),
        "d": draw(st.sampled_from(cols)),
        "dtype": draw(st.sampled_from(CLEAN_DTYPES if clean else DTYPES)),
        "scale": draw(st.sampled_from(SCALES)),
        "special": draw(st.sampled_from(CLEAN_SPECIALS if clean else SPECIALS)),
        "layout": draw(st.sampled_from(CLEAN_LAYOUTS if clean else LAYOUTS)),
        "seed": draw(st.integers(0, 2**16)),
    }


def any_recipes(**kwargs):
    """Half valid arrays, half anything."""
    return st.one_of(recipes(clean=True, **kwargs), recipes(**kwargs))


def _memmap(arr):
    fd, path = tempfile.mkstemp(dir=_TMP, suffix=".dat")
    os.close(fd)
    mm = np.memmap(path, dtype=arr.dtype, mode="w+", shape=arr.shape)
    mm[...] = arr
    mm.flush()
    return np.memmap(path, dtype=arr.dtype, mode="r", shape=arr.shape)


def build(r, base=None):
    """The array of recipe ``r`` (``base``: the values to start from)."""
    rng = np.random.RandomState(r["seed"])
    X = rng.randn(r["n"], r["d"]) if base is None else np.array(base, dtype=np.float64)
    X = X * r["scale"]
    n, d = X.shape
    special = r["special"]
    if special in ("nan", "inf", "-inf") and X.size:
        X[rng.randint(n), rng.randint(d)] = float(special)
    elif special == "const_col":
        X[:, rng.randint(d)] = 3.0
    elif special == "const_all":
        X[:] = 1.5
    elif special == "dup_rows" and n > 1:
        X[1:] = X[0]
    elif special == "dup_cols" and d > 1:
        X[:, 1:] = X[:, :1]
    kind = r["dtype"]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "object":
            X = X.astype(object)
        elif kind == "str":
            X = X.astype(str)
        elif kind == "complex128":
            X = X + 1j * X
        elif kind != "float64":
            info_max = np.iinfo(kind).max if kind[0] in "iu" else None
            if info_max is not None:
                X = np.nan_to_num(np.clip(X, -info_max, info_max))
            X = X.astype(kind)
    layout = r["layout"]
    if layout == "F":
        return np.asfortranarray(X)
    if layout == "strided":
        wide = np.repeat(X, 2, axis=1)
        return wide[:, ::2]
    if layout == "readonly":
        X = np.array(X)
        X.setflags(write=False)
        return X
    if layout == "memmap" and X.dtype.kind in "biuf" and X.size:
        return _memmap(X)
    if layout == "list":
        return X.tolist()
    if layout == "sparse" and X.dtype.kind in "biuf" and X.dtype != np.float16 and X.ndim == 2:
        return scipy.sparse.csr_matrix(X)
    if layout == "pandas" and pandas is not None and X.ndim == 2:
        return pandas.DataFrame(X)
    if layout == "1d":
        return X.ravel()
    if layout == "3d":
        return X[None]
    if layout == "scalar":
        return X.ravel()[:1].reshape(()) if X.size else np.float64(1.0)
    return X


LABEL_KINDS = ["int", "int", "int", "one_class", "str", "float", "bool", "wrong_length", "2d",
               "nan", "none", "mixed", "singletons"]


def labels_for(n, kind, seed, n_classes=3):
    rng = np.random.RandomState(seed)
    if kind == "int":
        return rng.randint(0, n_classes, n)
    if kind == "one_class":
        return np.zeros(n, dtype=int)
    if kind == "str":
        return np.array(["a", "b", "c"])[rng.randint(0, 3, n)]
    if kind == "float":
        return rng.randn(n)
    if kind == "bool":
        return rng.rand(n) < 0.5
    if kind == "wrong_length":
        return rng.randint(0, n_classes, n + 1)
    if kind == "2d":
        return rng.randint(0, n_classes, (n, 2))
    if kind == "nan":
        y = rng.randint(0, n_classes, n).astype(float)
        if n:
            y[0] = np.nan
        return y
    if kind == "none":
        return None
    if kind == "mixed":
        return np.array([1, "a", None] * n, dtype=object)[:n]
    return np.arange(n)  # singletons: every class of one sample


# --------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------
def _base_params():
    """Small budgets for every public class (from the shared cases), without
    a preprocessor (the fuzzer sets its own)."""
    params = {}
    for case in all_cases():
        p = {k: v for k, v in case.params.items() if k != "preprocessor"}
        params.setdefault(case.cls, p)
    return params


BASE = _base_params()
LABEL_LEARNERS = [fm.NCA, fm.LMNN, fm.MLKR, fm.LFDA, fm.Covariance, fm.ClusterLDML,
                  fm.LDML_Supervised, fm.ITML_Supervised, fm.MMC_Supervised,
                  fm.SDML_Supervised, fm.LSML_Supervised, fm.SCML_Supervised,
                  fm.RCA_Supervised, fm.RCA]
TUPLE_LEARNERS = {fm.LDML: 2, fm.ITML: 2, fm.MMC: 2, fm.SDML: 2, fm.SCML: 3, fm.LSML: 4}
UNSUPERVISED = (fm.Covariance, fm.ClusterLDML)


def check_fitted(est, n_features):
    L = np.asarray(est.components_)
    assert L.ndim == 2 and L.shape[1] == n_features, f"components_ shape {L.shape}"
    assert np.all(np.isfinite(L)), "non-finite components_ in a fitted model"


def _n_features(X):
    try:
        return np.asarray(X.toarray() if hasattr(X, "toarray") else X).reshape(
            np.shape(X)[0], -1).shape[1]
    except (ValueError, TypeError, IndexError):
        return None


def probe_fitted(name, est, data, r2):
    """Prediction methods of a fitted model on new generated points."""
    k = est.components_.shape[0]
    X2 = build(r2)
    n2 = np.shape(X2)[0] if np.ndim(X2) else 0
    run(f"{name}.transform", lambda: est.transform(X2),
        lambda out: check_array(out, (n2, k), (X2, est.components_)))
    if np.ndim(X2) == 2 and n2:
        pairs = np.stack([X2, X2[::-1]], axis=1) if not hasattr(X2, "toarray") else X2
        run(f"{name}.pair_distance", lambda: est.pair_distance(pairs),
            lambda out: check_array(out, (n2,), (X2, est.components_)))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("cls", LABEL_LEARNERS, ids=lambda c: c.__name__)
def test_fuzz_learners_on_labelled_points(cls):
    name = cls.__name__

    @FUZZ
    @given(r=any_recipes(), labels=st.sampled_from(LABEL_KINDS), r2=any_recipes(),
           n_components=st.sampled_from([None, None, 1, 2, 9]))
    def case(r, labels, r2, n_components):
        X = build(r)
        n = np.shape(X)[0] if np.ndim(X) else 0
        y = labels_for(n, labels, r["seed"])
        if cls is fm.MLKR and y is not None and labels == "int":
            y = y.astype(float)
        params = dict(BASE[cls])
        if n_components is not None and "n_components" in cls().get_params():
            params["n_components"] = n_components
        est = cls(**params)
        args = (X,) if cls in UNSUPERVISED else (X, y)
        outcome, _ = run(f"{name}.fit", lambda: est.fit(*args),
                         lambda e: check_fitted(e, _n_features(X)))
        if outcome == "finite result":
            probe_fitted(name, est, X, r2)

    case()


INDEX_FAULTS = ["ok", "ok", "ok", "negative", "out_of_range", "float", "wrong_width", "empty",
                "bool", "huge"]
PAIR_LABELS = ["pm1", "pm1", "01", "one_class", "str", "soft", "nan", "wrong_length", "none"]


def tuples_for(n_points, size, fault, seed, n_tuples=8):
    rng = np.random.RandomState(seed)
    T = rng.randint(0, max(n_points, 1), size=(n_tuples, size))
    if fault == "negative":
        T[0, 0] = -1
    elif fault == "out_of_range":
        T[-1, -1] = n_points
    elif fault == "float":
        T = T.astype(float)
    elif fault == "wrong_width":
        T = T[:, :-1] if size > 1 else T
    elif fault == "empty":
        T = T[:0]
    elif fault == "bool":
        T = T > 0
    elif fault == "huge":
        T[0, 0] = np.iinfo(np.int64).max
    return T


def pair_labels_for(n, kind, seed):
    rng = np.random.RandomState(seed)
    if kind == "pm1":
        return np.where(np.arange(n) % 2 == 0, 1, -1)
    if kind == "01":
        return np.arange(n) % 2
    if kind == "one_class":
        return np.ones(n, dtype=int)
    if kind == "str":
        return np.array(["same", "diff"] * n)[:n]
    if kind == "soft":
        return rng.rand(n)
    if kind == "nan":
        return np.full(n, np.nan)
    if kind == "wrong_length":
        return np.ones(n + 1)
    return None


@pytest.mark.timeout(600)
@pytest.mark.parametrize("cls", list(TUPLE_LEARNERS), ids=lambda c: c.__name__)
def test_fuzz_tuple_learners(cls):
    name = cls.__name__
    size = TUPLE_LEARNERS[cls]

    @FUZZ
    @given(r=any_recipes(rows=(0, 1, 2, 5, 12)), form=st.sampled_from(["indices", "points"]),
           fault=st.sampled_from(INDEX_FAULTS), labels=st.sampled_from(PAIR_LABELS),
           r2=recipes())
    def case(r, form, fault, labels, r2):
        P = build(r)
        n = np.shape(P)[0] if np.ndim(P) else 0
        T = tuples_for(n, size, fault, r["seed"])
        params = dict(BASE[cls])
        if form == "indices":
            params["preprocessor"] = P
            data = T
        else:
            arr = np.asarray(P) if not hasattr(P, "toarray") else P.toarray()
            try:
                data = arr[T] if arr.ndim == 2 and T.dtype.kind in "iu" else T
            except IndexError:
                data = T  # out-of-range tuples: give the indices without a preprocessor
        est = cls(**params)
        args = (data, pair_labels_for(len(T), labels, r["seed"])) if size == 2 else (data,)
        outcome, _ = run(f"{name}.fit", lambda: est.fit(*args),
                         lambda e: check_fitted(e, est.n_features_in_))
        if outcome == "finite result":
            run(f"{name}.decision_function", lambda: est.decision_function(data),
                lambda out: check_array(out, (len(T),), (P, est.components_)))
            run(f"{name}.predict", lambda: est.predict(data),
                lambda out: check_array(out, (len(T),)))
            probe_fitted(name, est, P, r2)

    case()


# --------------------------------------------------------------------------
# Wrong parameter values and types
# --------------------------------------------------------------------------
BUDGETS = {"max_iter", "ldml_max_iter", "max_rounds", "output_iter", "max_proj", "min_iter",
           "n_iter_no_change", "verbose"}
BAD_VALUES = [-1, 0, 0.5, 2, 3.7, float("nan"), float("inf"), -float("inf"), "bogus", None,
              [1, 2], True, 1e300, np.array([1.0, 2.0]), HUGE, {"a": 1}]


def _fit_args(cls):
    case = next(c for c in all_cases() if c.cls is cls)
    return case, case.fit_args


@pytest.mark.timeout(600)
@pytest.mark.parametrize("cls", sorted(BASE, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_fuzz_parameters(cls):
    name = cls.__name__
    case, args = _fit_args(cls)
    names = sorted(set(cls().get_params()) - BUDGETS)

    @FUZZ
    @given(param=st.sampled_from(names), value=st.sampled_from(BAD_VALUES),
           budget=st.sampled_from(sorted(BUDGETS & set(cls().get_params())) or [None]),
           budget_value=st.sampled_from([None, 1, 0, -1, 1.5, "x", True, float("nan")]))
    def one(param, value, budget, budget_value):
        params = dict(case.params)
        params[param] = value
        if budget is not None and budget_value is not None:
            params[budget] = budget_value
        est = cls(**params)
        n_features = iris_std()[0].shape[1]
        memory_case = value is HUGE
        run(f"{name}({param}=...)", lambda: est.fit(*args),
            lambda e: check_fitted(e, n_features), memory_case=memory_case)

    one()


# --------------------------------------------------------------------------
# The public kernel functions
# --------------------------------------------------------------------------
N_JOBS = [None, 1, 2, -1, 0, 1.5, "two"]


def mostly(valid, bad):
    """Valid values four times as likely as each bad one: cases with a bad
    value end at its check, so most must be valid for the rest to be reached."""
    return st.sampled_from(list(valid) * 4 + list(bad))


NJOBS = mostly([None, 1, 2, -1], [0, 1.5, "two"])


@pytest.mark.timeout(600)
def test_fuzz_mahalanobis_distances():
    @FUZZ
    @given(rx=any_recipes(), ry=any_recipes(), rl=any_recipes(rows=(1, 2, 3, 9)),
           use_y=st.booleans(), same_d=mostly([True], [False]),
           squared=mostly([False, True], [1, "yes"]),
           chunk=mostly([None, 1, 7], [0, -3, 2.5]), n_jobs=NJOBS)
    def case(rx, ry, rl, use_y, same_d, squared, chunk, n_jobs):
        if same_d:  # L and Y with X's number of features
            rl, ry = {**rl, "d": rx["d"]}, {**ry, "d": rx["d"]}
        X, Y, L = build(rx), (build(ry) if use_y else None), build(rl)
        n = np.shape(X)[0] if np.ndim(X) else 0
        m = (np.shape(Y)[0] if np.ndim(Y) else 0) if use_y else n
        run("mahalanobis_distances",
            lambda: pairwise.mahalanobis_distances(X, Y, components=L, squared=squared,
                                                   chunk_size=chunk, n_jobs=n_jobs),
            lambda out: check_array(out, (n, m), (X, Y, L)))

    case()


@pytest.mark.timeout(600)
def test_fuzz_paired_distances_and_ldml_loss():
    @FUZZ
    @given(rx=any_recipes(), rl=any_recipes(rows=(1, 2, 3, 9)),
           same_d=mostly([True], [False]), fault=st.sampled_from(INDEX_FAULTS),
           labels=mostly(["01", "soft"], PAIR_LABELS), bias=mostly([0.0, 3.0], [np.nan, "b"]),
           weights=mostly([None, "ones"], ["negative", "nan", "short"]),
           n_jobs=NJOBS)
    def case(rx, rl, same_d, fault, labels, bias, weights, n_jobs):
        if same_d:
            rl = {**rl, "d": rx["d"]}
        X, L = build(rx), build(rl)
        n = np.shape(X)[0] if np.ndim(X) else 0
        pairs = tuples_for(n, 2, fault, rx["seed"])
        n_pairs = len(pairs)
        run("paired_mahalanobis_distances",
            lambda: pairwise.paired_mahalanobis_distances(X, pairs, components=L,
                                                          n_jobs=n_jobs),
            lambda out: check_array(out, (n_pairs,), (X, L)))
        y = pair_labels_for(n_pairs, labels, rx["seed"])
        w = {None: None, "ones": np.ones(n_pairs), "negative": -np.ones(n_pairs),
             "nan": np.full(n_pairs, np.nan), "short": np.ones(max(n_pairs - 1, 0))}[weights]

        def check(out):
            loss, grad, grad_bias = out
            check_array(loss, (), (X, L))
            check_array(grad, np.shape(L), (X, L))
            check_array(grad_bias, (), (X, L))

        run("ldml_loss", lambda: pairwise.ldml_loss(X, pairs, y, L, bias, sample_weight=w,
                                                    n_jobs=n_jobs), check)

    case()


@pytest.mark.timeout(600)
def test_fuzz_weighted_pair_scatter():
    @FUZZ
    @given(rx=any_recipes(), fault=st.sampled_from(INDEX_FAULTS),
           weights=mostly([None, "ones", "int"], ["negative", "nan", "short"]),
           method=mostly(["auto", "pairs", "laplacian"], ["bogus", 3]),
           n_jobs=NJOBS)
    def case(rx, fault, weights, method, n_jobs):
        X = build(rx)
        n = np.shape(X)[0] if np.ndim(X) else 0
        pairs = tuples_for(n, 2, fault, rx["seed"])
        a, b = (pairs[:, 0], pairs[:, 1]) if pairs.ndim == 2 and pairs.shape[1] == 2 else (
            pairs, pairs)
        n_pairs = len(a)
        w = {None: None, "ones": np.ones(n_pairs), "negative": -np.ones(n_pairs),
             "nan": np.full(n_pairs, np.nan), "short": np.ones(max(n_pairs - 1, 0)),
             "int": np.arange(n_pairs)}[weights]
        d = _n_features(X)
        run("weighted_pair_scatter",
            lambda: pairwise.weighted_pair_scatter(X, a, b, w, n_jobs=n_jobs, method=method),
            lambda out: check_array(out, (d, d), (X,)))

    case()


@pytest.mark.timeout(600)
def test_fuzz_sampling():
    counts = [0, 1, 5, 100, -1, 2.5, "3", None, True, HUGE]

    @FUZZ
    @given(n=st.sampled_from([0, 1, 2, 5, 40]), labels=st.sampled_from(LABEL_KINDS),
           n_pos=st.sampled_from(counts), n_neg=st.sampled_from(counts),
           balanced=st.booleans(), unique=st.booleans(),
           anchor=st.sampled_from([None, 0, 1, "a", 99]),
           seed=st.sampled_from([0, None, -1, 2**70, "x", np.random.RandomState(1)]),
           n_chunks=st.sampled_from(counts), chunk_size=st.sampled_from(counts),
           n_jobs=NJOBS)
    def case(n, labels, n_pos, n_neg, balanced, unique, anchor, seed, n_chunks, chunk_size,
             n_jobs):
        y = labels_for(n, labels, 0)
        huge = HUGE in (n_pos, n_neg, n_chunks, chunk_size)

        def check_pairs(out):
            pairs, t = out
            total = int(n_pos) + int(n_neg)
            assert pairs.shape[1] == 2 and len(t) == len(pairs) <= total
            assert len(pairs) == total or unique
            if len(pairs):
                assert pairs.min() >= 0 and pairs.max() < len(y)

        run("sample_pairs",
            lambda: pairwise.sample_pairs(y, n_pos, n_neg, balanced=balanced, unique=unique,
                                          anchor_label=anchor, random_state=seed,
                                          n_jobs=n_jobs),
            check_pairs, memory_case=huge)
        run("sample_chunks",
            lambda: pairwise.sample_chunks(y, n_chunks, chunk_size, random_state=seed,
                                           n_jobs=n_jobs),
            lambda out: check_array(out, (len(y),)), memory_case=huge)

    case()


# --------------------------------------------------------------------------
# Regressions: bugs the fuzzer found, fixed where the input is validated
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, scale", [(np.float64, 1e300), (np.float32, 1e30)])
def test_scml_refuses_data_whose_squared_distances_overflow(dtype, scale):
    """SCML at 1e300 emitted a storm of overflow RuntimeWarnings and learned
    a zero metric from NaN distances; it now says what is wrong."""
    X, y = iris_std()
    Xs = (X * scale).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="squared distances overflow"):
            fm.SCML_Supervised(max_iter=10, output_iter=5, random_state=0).fit(Xs, y)
        triplets = np.array([[0, 1, 60], [50, 51, 120]])
        with pytest.raises(ValueError, match="squared distances overflow"):
            fm.SCML(preprocessor=Xs, max_iter=10, output_iter=5, random_state=0).fit(triplets)
    # Large but safe data still fit.
    est = fm.SCML_Supervised(max_iter=20, output_iter=10, random_state=0).fit(X * 1e100, y)
    assert np.all(np.isfinite(est.components_))


def test_a_huge_n_jobs_is_a_value_error():
    """n_jobs=10**12 raised OverflowError (a C int conversion in a kernel):
    the learners' shared n_jobs rule and the kernel functions refuse it."""
    X, y = iris_std()
    with pytest.raises(ValueError, match=r"'n_jobs' parameter of NCA .*Got 1000000000000"):
        fm.NCA(n_jobs=10**12, max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="n_jobs=-1000000000000 is out of range"):
        pairwise.mahalanobis_distances(X, n_jobs=-10**12)


def test_lmnn_with_more_neighbours_than_class_members():
    """n_neighbors=10**12 raised OverflowError (the kernel's C int); the
    target table is now as wide as the largest class allows, and LMNN warns
    that the classes are smaller than n_neighbors."""
    X, y = iris_std()
    with pytest.warns(UserWarning, match="n_neighbors=1000000000000"):
        big = fm.LMNN(n_neighbors=10**12, max_iter=5, random_state=0, n_jobs=1).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = fm.LMNN(n_neighbors=49, max_iter=5, random_state=0, n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(big.components_, same.components_)


def test_cluster_ldml_fits_data_whose_spread_would_overflow():
    """ClusterLDML at 1e300 returned components_ of inf, then refused the
    data (their squared spread overflows); the rounds now run on the points
    times a power of two: a finite map, labels_ as predict gives them."""
    X = np.random.RandomState(0).randn(30, 2) * 1e300
    fitted = fm.ClusterLDML(n_clusters=2, max_rounds=2, random_state=0).fit(X)
    assert np.isfinite(fitted.components_).all()
    np.testing.assert_array_equal(fitted.predict(X), fitted.labels_)


@pytest.mark.parametrize("cls", [fm.NCA, fm.LMNN])
def test_lda_init_on_data_of_tiny_magnitude(cls):
    """init='auto' (LDA) on points of magnitude 1e-300 raised IndexError from
    scikit-learn's LDA; it now starts from the identity, as for identical
    points, and the fit gives a finite model."""
    X = np.random.RandomState(0).randn(6, 2) * 1e-300
    y = np.array([0, 0, 0, 1, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = cls(max_iter=3, random_state=0, n_jobs=1).fit(X, y)
    assert np.all(np.isfinite(est.components_))


def test_scml_warns_once_about_many_small_classes():
    """SCML warned once per class smaller than k_genuine (a storm of 100
    warnings for 100 singleton classes); now once per kind."""
    X = np.random.RandomState(0).randn(100, 3)
    y = np.r_[np.zeros(10, int), np.arange(1, 91)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fm.SCML_Supervised(max_iter=10, output_iter=5, random_state=0).fit(X, y)
    small = [w for w in caught if "too few samples for k_genuine=3" in str(w.message)]
    assert len(small) == 1 and "90 class(es)" in str(small[0].message)
    assert len(caught) <= 5  # and perhaps: n_basis, convergence, no positive weight


# --------------------------------------------------------------------------
# Neighbour search: fastmetric.neighbors
# --------------------------------------------------------------------------
_FITTED = {}


def fitted_learner(cls=fm.NCA):
    """A learner fitted once on iris (4 features), shared by the cases."""
    if cls not in _FITTED:
        case = next(c for c in all_cases() if c.cls is cls)
        _FITTED[cls] = case.fit()
    return _FITTED[cls]


METRICS = mostly(["none", "array", "learner", "unfitted"], ["bogus", "nan_array", "wrong_width"])


def metric_for(kind, n_features, seed):
    """The ``metric`` argument of the search: None, an array L, a learner."""
    rng = np.random.RandomState(seed)
    d = n_features or 1
    if kind == "array":
        return rng.randn(rng.randint(1, d + 2), d)
    if kind == "nan_array":
        L = rng.randn(2, d)
        L[0, 0] = np.nan
        return L
    if kind == "wrong_width":
        return rng.randn(2, d + 1)
    if kind == "learner":
        return fitted_learner()
    if kind == "unfitted":
        return fm.Covariance()
    if kind == "bogus":
        return "mahalanobis"
    return None


def check_kneighbors(out, n_queries, k, n_db, return_distance=True):
    dist, idx = out if return_distance else (None, out)
    idx = np.asarray(idx)
    assert idx.shape == (n_queries, k), f"indices of shape {idx.shape}, expected {(n_queries, k)}"
    assert idx.dtype.kind in "iu"
    if idx.size:
        assert idx.min() >= 0 and idx.max() < n_db, "an index outside the fitted rows"
    if dist is not None:
        check_array(dist, (n_queries, k))
        assert np.all(np.isfinite(dist)), "a non-finite distance"
        assert np.all(dist >= 0) and np.all(np.diff(dist, axis=1) >= 0), "unsorted distances"


def check_radius_neighbors(out, n_queries, n_db, radius):
    dist, idx = out
    assert len(dist) == len(idx) == n_queries
    for d, i in zip(dist, idx):
        assert len(d) == len(i)
        if len(i):
            assert i.min() >= 0 and i.max() < n_db
            assert np.all(np.isfinite(d)) and np.all(d >= 0) and np.all(d <= radius * (1 + 1e-12))
            assert np.all(np.diff(d) >= 0), "unsorted distances"


def check_graph(out, n_queries, n_db):
    assert scipy.sparse.issparse(out) and out.shape == (n_queries, n_db)
    check_array(out.data, None)
    assert np.all(np.isfinite(out.data)) and np.all(out.data >= 0)


N_NEIGHBORS = mostly([1, 2, 3, 5], [0, -1, 2.5, "3", None, True, HUGE])
RADII = mostly([0.0, 0.5, 1.0, 3.0, 1e300], [-1.0, float("nan"), float("inf"), "1", None])


def _rows(X):
    return np.shape(X)[0] if np.ndim(X) else 0


@pytest.mark.timeout(600)
def test_fuzz_mahalanobis_neighbors():
    @FUZZ
    @given(r=any_recipes(), rq=any_recipes(), metric=METRICS, k=N_NEIGHBORS, radius=RADII,
           algorithm=mostly(["auto", "brute", "hnsw"], ["bogus"]),
           queries=st.sampled_from(["own", "new", "iris"]), n_jobs=NJOBS,
           mode=mostly(["connectivity", "distance"], ["bogus"]))
    def case(r, rq, metric, k, radius, algorithm, queries, n_jobs, mode):
        if metric != "learner":
            rq = {**rq, "d": r["d"]} if queries == "new" and rq["seed"] % 5 else rq
        X = iris_std()[0][:: max(1, r["n"])] if metric == "learner" else build(r)
        Xq = {"own": None, "new": build(rq), "iris": iris_std()[0][:7]}[queries]
        L = metric_for(metric, _n_features(X), r["seed"])
        nn = fm.MahalanobisNeighbors(n_neighbors=k, radius=radius, metric=L,
                                     algorithm=algorithm, n_jobs=n_jobs)
        outcome, _ = run("MahalanobisNeighbors.fit", lambda: nn.fit(X), lambda e: None)
        if outcome != "finite result":
            return
        n_db = nn.n_samples_fit_
        nq = n_db if Xq is None else _rows(Xq)
        run("MahalanobisNeighbors.kneighbors", lambda: nn.kneighbors(Xq),
            lambda out: check_kneighbors(out, nq, k, n_db))
        run("MahalanobisNeighbors.kneighbors_graph", lambda: nn.kneighbors_graph(Xq, mode=mode),
            lambda out: check_graph(out, nq, n_db))
        run("MahalanobisNeighbors.radius_neighbors", lambda: nn.radius_neighbors(Xq),
            lambda out: check_radius_neighbors(out, nq, n_db, radius))
        run("MahalanobisNeighbors.radius_neighbors_graph",
            lambda: nn.radius_neighbors_graph(Xq, mode=mode),
            lambda out: check_graph(out, nq, n_db))

    case()


@pytest.mark.timeout(600)
def test_fuzz_neighbour_functions_and_transformers():
    @FUZZ
    @given(r=any_recipes(), rq=any_recipes(), metric=METRICS, k=N_NEIGHBORS, radius=RADII,
           use_db=st.booleans(), same_d=mostly([True], [False]),
           return_distance=st.sampled_from([True, False]),
           mode=mostly(["distance", "connectivity"], ["bogus"]), n_jobs=NJOBS)
    def case(r, rq, metric, k, radius, use_db, same_d, return_distance, mode, n_jobs):
        if same_d:
            rq = {**rq, "d": r["d"]}
        X = build(r)
        X_db = build(rq) if use_db else None
        L = metric_for(metric if metric != "learner" else "array", _n_features(X), r["seed"])
        n_db = _rows(X_db if use_db else X)
        nq = _rows(X)
        run("kneighbors",
            lambda: fm.neighbors.kneighbors(X, X_db, k, metric=L,
                                            return_distance=return_distance, n_jobs=n_jobs),
            lambda out: check_kneighbors(out, nq, k, n_db, return_distance))

        def check_radius(out):
            if return_distance:
                check_radius_neighbors(out, nq, n_db, radius)
            else:
                assert len(out) == nq

        run("radius_neighbors",
            lambda: fm.neighbors.radius_neighbors(X, X_db, radius, metric=L,
                                                  return_distance=return_distance,
                                                  n_jobs=n_jobs),
            check_radius)
        kt = fm.MahalanobisKNeighborsTransformer(n_neighbors=k, metric=L, mode=mode,
                                                 n_jobs=n_jobs)
        run("MahalanobisKNeighborsTransformer.fit_transform", lambda: kt.fit_transform(X),
            lambda out: check_graph(out, nq, nq))
        rt = fm.MahalanobisRadiusNeighborsTransformer(radius=radius, metric=L, mode=mode,
                                                      n_jobs=n_jobs)
        outcome, _ = run("MahalanobisRadiusNeighborsTransformer.fit", lambda: rt.fit(X),
                         lambda e: None)
        if outcome == "finite result" and use_db:
            run("MahalanobisRadiusNeighborsTransformer.transform", lambda: rt.transform(X_db),
                lambda out: check_graph(out, n_db, nq))

    case()


# --------------------------------------------------------------------------
# Retrieval scores: fastmetric.metrics
# --------------------------------------------------------------------------
SCORES = ["precision_at_k", "recall_at_k", "r_precision", "map_at_r", "mean_reciprocal_rank",
          "knn_accuracy"]


def neighbour_labels_for(y_query, kind, width, seed):
    """Labels of neighbour lists: rectangular, ragged, or malformed."""
    rng = np.random.RandomState(seed)
    y = np.asarray(y_query) if y_query is not None else np.zeros(0)
    n = y.shape[0] if y.ndim else 0
    pool = y if y.size else np.array([0, 1])
    if kind == "rect":
        return pool[rng.randint(0, len(pool), (n, width))] if n else np.zeros((0, width))
    if kind == "ragged":
        return [pool[rng.randint(0, len(pool), rng.randint(0, width + 1))] for _ in range(n)]
    if kind == "wrong_rows":
        return pool[rng.randint(0, len(pool), (n + 1, width))]
    if kind == "1d":
        return pool[rng.randint(0, len(pool), n)]
    if kind == "3d":
        return np.zeros((n, width, 2))
    if kind == "str":
        return np.array([["a"] * width] * n)
    return None


def check_score(out, n_relevant, n_queries):
    assert isinstance(out, float), f"a score of type {type(out).__name__}"
    if np.isnan(out):
        # Documented: no query is scored (none, or none with R > 0).
        scored = n_queries if n_relevant is None else int(np.sum(np.asarray(n_relevant) > 0))
        assert scored == 0 or n_queries == 0, "NaN with scored queries"
    else:
        assert 0.0 <= out <= 1.0, f"a score of {out} outside [0, 1]"


@pytest.mark.timeout(600)
def test_fuzz_retrieval_scores():
    @FUZZ
    @given(n=st.sampled_from([0, 1, 2, 5, 12]), labels=st.sampled_from(LABEL_KINDS),
           kind=st.sampled_from(["rect", "rect", "ragged", "wrong_rows", "1d", "3d", "str",
                                 "none"]),
           width=st.sampled_from([0, 1, 3, 12]), k=st.sampled_from([1, 3, 20, 0, -1, 2.5, None]),
           relevant=st.sampled_from(["counts", "counts", "none", "negative", "short", "zeros"]),
           score=st.sampled_from(SCORES), seed=st.integers(0, 2**16))
    def case(n, labels, kind, width, k, relevant, score, seed):
        y = labels_for(n, labels, seed)
        yn = neighbour_labels_for(y, kind, width, seed)
        nq = np.shape(y)[0] if y is not None and np.ndim(y) else 0
        R = None
        if relevant != "none" and y is not None:
            outcome, counts = run("relevant_counts", lambda: fm.metrics.relevant_counts(y),
                                  lambda out: check_array(out, (nq,)))
            R = counts if outcome == "finite result" else np.ones(nq, dtype=int)
            R = {"counts": R, "negative": -np.ones(nq, dtype=int), "short": R[:-1],
                 "zeros": np.zeros(nq, dtype=int)}[relevant]
        func = getattr(fm.metrics, score)
        if score == "precision_at_k":
            call = lambda: func(y, yn, k, n_relevant=R)  # noqa: E731
        elif score == "recall_at_k":
            call = lambda: func(y, yn, R, k)  # noqa: E731
        elif score in ("r_precision", "map_at_r"):
            call = lambda: func(y, yn, R)  # noqa: E731
        elif score == "mean_reciprocal_rank":
            call = lambda: func(y, yn, n_relevant=R)  # noqa: E731
        else:
            call = lambda: func(y, yn, k)  # noqa: E731
        scored_R = None if score in ("knn_accuracy",) else R
        run(score, call, lambda out: check_score(out, scored_R, nq))

    case()


@pytest.mark.timeout(600)
def test_fuzz_evaluate_and_scorers():
    @FUZZ
    @given(r=any_recipes(rows=(0, 1, 2, 5, 12)), rdb=any_recipes(rows=(0, 1, 5, 12)),
           labels=mostly(["int", "str", "bool", "singletons"], LABEL_KINDS),
           db_labels=mostly(["int", "str"], LABEL_KINDS),
           learner=mostly(["none", "array", "fitted"], ["unfitted", "bogus"]),
           use_db=mostly(["none", "both"], ["x_only", "y_only"]),
           ks=mostly([(1, 5, 10), (1,), (3, 20)], [(), (0,), (-2,), (2.5,), "1", (HUGE,)]),
           knn_k=mostly([5, 1, 3], [0, -1, 2.5, None, HUGE]),
           clustering=st.booleans(),
           scorer=st.sampled_from(["map@r", "r_precision", "mrr", "precision@3", "recall@1",
                                   "knn_accuracy@5", "bogus", 3]))
    def case(r, rdb, labels, db_labels, learner, use_db, ks, knn_k, clustering, scorer):
        if learner == "fitted":
            Xq = iris_std()[0][:: max(1, r["n"])]
            Xdb = iris_std()[0][1::7]
        else:
            rdb = {**rdb, "d": r["d"]} if rdb["seed"] % 5 else rdb  # mostly matching widths
            Xq, Xdb = build(r), build(rdb)
        yq = labels_for(_rows(Xq), labels, r["seed"])
        ydb = labels_for(_rows(Xdb), db_labels, rdb["seed"])
        metric = {"none": None, "array": metric_for("array", _n_features(Xq), r["seed"]),
                  "fitted": fitted_learner(), "unfitted": fm.NCA(),
                  "bogus": "bogus"}[learner]
        X_db, y_db = {"none": (None, None), "both": (Xdb, ydb), "x_only": (Xdb, None),
                      "y_only": (None, ydb)}[use_db]

        def check(out):
            assert isinstance(out, dict) and out
            for key, value in out.items():
                assert isinstance(value, float), f"{key}: {type(value).__name__}"
                if key == "ami":
                    assert np.isnan(value) or -1.0 <= value <= 1.0
                elif not np.isnan(value):
                    assert 0.0 <= value <= 1.0, f"{key}={value} outside [0, 1]"
            # NaN only where documented: no query with a relevant item (the
            # R-based scores) or fewer than 2 classes (k-means).
            y_ref = None if y_db is None else y_db
            R = fm.metrics.relevant_counts(yq, y_ref)
            if (R > 0).any():
                for key in ("r_precision", "map@r", "mrr"):
                    assert not np.isnan(out[key]), f"{key} is NaN with scored queries"

        run("evaluate",
            lambda: fm.metrics.evaluate(metric, Xq, yq, X_db, y_db, ks=ks, knn_k=knn_k,
                                        clustering=clustering, n_jobs=1), check)
        outcome, sc = run("make_retrieval_scorer",
                          lambda: fm.metrics.make_retrieval_scorer(scorer), lambda out: None)
        if outcome == "finite result" and learner == "fitted":
            # Leave-one-out within (X, y): NaN only when no point shares its label
            # (the R-based scores leave such queries out).
            R = None
            with contextlib.suppress(ValueError, TypeError):
                R = fm.metrics.relevant_counts(yq) if not str(scorer).startswith(
                    ("precision", "knn")) else None
            run("RetrievalScorer", lambda: sc(metric, Xq, yq),
                lambda out: check_score(out, R, _rows(Xq)))

    case()


# --------------------------------------------------------------------------
# Model files: fastmetric.save / fastmetric.load
# --------------------------------------------------------------------------
_SAVED = {}


def saved_model(name):
    """Bytes of a saved fitted model of case ``name`` (once per case)."""
    if name not in _SAVED:
        import io

        case = next(c for c in all_cases() if c.name == name)
        est = case.fit()
        buf = io.BytesIO()
        fm.save(est, buf)
        _SAVED[name] = (case, buf.getvalue())
    return _SAVED[name]


SAVE_CASES = ["NCA", "LDML-indices", "ITML_Supervised", "SCML-points", "RCA", "ClusterLDML",
              "Covariance", "LMNN"]
TAMPERING = ["none", "truncate", "flip_bytes", "garbage", "empty", "header_json",
             "class", "param_value", "attribute_value", "attribute_shape", "attribute_nan",
             "attribute_dtype", "extra_member", "pickle_member", "drop_member"]


def _rewrite(data, edit):
    """The npz of ``data`` with its header JSON and members passed through ``edit``."""
    import io

    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        members = {k: archive[k] for k in archive.files}
    header = json.loads(bytes(members["header"]).decode())
    edit(header, members)
    members["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def tamper(data, how, seed):
    rng = np.random.RandomState(seed)
    if how == "truncate":
        return data[: rng.randint(0, len(data))]
    if how == "flip_bytes":
        b = bytearray(data)
        for i in rng.randint(0, len(b), size=rng.randint(1, 8)):
            b[i] ^= 1 << rng.randint(8)
        return bytes(b)
    if how == "garbage":
        return rng.bytes(rng.randint(1, 2000))
    if how == "empty":
        return b""

    def arrays(header):
        return [v["__array__"] for v in header["attributes"].values()
                if isinstance(v, dict) and "__array__" in v]

    def edit(header, members):
        keys = sorted(header["attributes"])
        if how == "header_json":
            header["format_version"] = int(rng.choice([0, 2, -1, 1]))
            header["params"] = header["params"] if rng.rand() < 0.5 else [1, 2]
        elif how == "class":
            header["class"] = str(rng.choice(["os.system", "Pipeline", "nca", "", "LDML"]))
        elif how == "param_value":
            name = sorted(header["params"])[rng.randint(len(header["params"]))]
            header["params"][name] = [-1, "bogus", None, 1e300, {"__float__": "nan"},
                                      [1, 2]][rng.randint(6)]
        elif how == "attribute_value" and keys:
            header["attributes"][keys[rng.randint(len(keys))]] = [
                None, "x", -5, {"__float__": "inf"}, [1.5], {"__tuple__": []}][rng.randint(6)]
        elif how in ("attribute_shape", "attribute_nan", "attribute_dtype") and arrays(header):
            key = arrays(header)[rng.randint(len(arrays(header)))]
            arr = members[key]
            if how == "attribute_shape":
                members[key] = np.resize(arr, (arr.size + 1,) if arr.ndim != 1
                                         else (1, arr.size))
            elif how == "attribute_nan" and arr.dtype.kind == "f" and arr.size:
                arr = arr.copy()
                arr.flat[rng.randint(arr.size)] = [np.nan, np.inf, 1e308][rng.randint(3)]
                members[key] = arr
            else:
                members[key] = arr.astype([np.int8, np.complex128, "U3", bool][rng.randint(4)])
        elif how == "extra_member":
            members["array_999"] = np.zeros(3)
        elif how == "pickle_member":
            members["array_999"] = np.array([{"a": 1}], dtype=object)
        elif how == "drop_member" and arrays(header):
            del members[arrays(header)[0]]

    if how == "pickle_member":
        import io
        import pickle

        buf = io.BytesIO()
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            members = {k: archive[k] for k in archive.files}
        members["array_999"] = np.array([pickle.dumps(len)], dtype=object)
        np.savez(buf, **members)
        return buf.getvalue()
    return _rewrite(data, edit)


@pytest.mark.timeout(600)
def test_fuzz_model_files():
    import io

    @FUZZ
    @given(name=st.sampled_from(SAVE_CASES), how=st.sampled_from(TAMPERING),
           seed=st.integers(0, 2**16), rq=recipes())
    def case(name, how, seed, rq):
        case_, data = saved_model(name)
        blob = tamper(data, how, seed) if how != "none" else data
        outcome, model = run("load", lambda: fm.load(io.BytesIO(blob)), lambda m: None)
        if outcome != "finite result":
            return
        # A file that loads gives a model that predicts like a fitted one:
        # finite, of the right shape, or a clear error.
        X = iris_std()[0][:9]
        run("loaded.transform", lambda: model.transform(X),
            lambda out: check_array(out, (9, np.shape(model.components_)[0])))
        run("loaded.pair_distance", lambda: model.pair_distance(case_.pairs[:5]),
            lambda out: check_array(out, (5,)))
        X2 = build(rq)
        run("loaded.transform (new data)", lambda: model.transform(X2),
            lambda out: check_array(out, None, (X2, model.components_)))

    case()


@pytest.mark.timeout(600)
def test_fuzz_save():
    import io

    @FUZZ
    @given(name=st.sampled_from(SAVE_CASES),
           change=st.sampled_from(["none", "callback", "unfitted", "not_estimator",
                                   "init_estimator", "odd_attribute", "path_dir"]))
    def case(name, change):
        case_ = next(c for c in all_cases() if c.name == name)
        model = case_.fit() if change != "unfitted" else case_.make()
        target = io.BytesIO()
        if change == "callback" and "callback" in model.get_params():
            model.set_params(callback=lambda *a: False)
        elif change == "not_estimator":
            model = {"components_": np.eye(2)}
        elif change == "init_estimator" and "init" in model.get_params():
            model.set_params(init=fm.NCA())
        elif change == "odd_attribute":
            model.extra_ = lambda: None
        elif change == "path_dir":
            target = _TMP  # a directory

        def check(_):
            if isinstance(target, io.BytesIO):
                again = fm.load(io.BytesIO(target.getvalue()))
                assert again.get_params().keys() == model.get_params().keys()
                if hasattr(model, "components_"):
                    np.testing.assert_array_equal(again.transform(case_.X),
                                                  model.transform(case_.X))

        try:
            run("save", lambda: fm.save(model, target), check)
        except (IsADirectoryError, PermissionError):
            OUTCOMES[("save", "OSError (a directory as path)")] += 1

    case()


# --------------------------------------------------------------------------
# Regressions: bugs the fuzzer found in the surface added since
# --------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e155, 1e300])
def test_overflowing_squared_distances_are_a_value_error(scale):
    """Finite data whose mapped squared distances overflow gave NaN distances,
    a NaN LDML loss and a NaN pair scatter; now a ValueError telling to rescale."""
    rng = np.random.RandomState(0)
    X, L = rng.randn(5, 3) * scale, rng.randn(2, 3)
    pairs, y = np.array([[0, 1], [2, 3]]), np.array([1, 0])
    for call in (lambda: pairwise.mahalanobis_distances(X, components=L),
                 lambda: pairwise.mahalanobis_distances(X, X[:2], components=L, squared=True),
                 lambda: pairwise.paired_mahalanobis_distances(X, pairs, components=L),
                 lambda: pairwise.ldml_loss(X, pairs, y, L, 0.0),
                 lambda: pairwise.ldml_loss(X, pairs, y, L, 0.0, return_gradient=False),
                 lambda: pairwise.weighted_pair_scatter(X, pairs[:, 0], pairs[:, 1],
                                                        [1.0, -1.0])):
        with pytest.raises(ValueError, match="overflow float64.*rescale the data"):
            call()
    # Large data whose squares still fit are computed.
    D = pairwise.mahalanobis_distances(X / scale * 1e100, components=L)
    assert np.all(np.isfinite(D))


@pytest.mark.parametrize("algorithm, scale", [("brute", 1e160), ("brute", 1e300),
                                              ("hnsw", 1e20)])
@pytest.mark.parametrize("metric", [None, "array"])
def test_neighbour_search_refuses_overflowing_distances(algorithm, scale, metric):
    """The exact search returned distances of inf with indices -1 (no
    neighbour found) and hnsw NaN distances (its float32 cast overflowed)
    for data of huge magnitude; now a ValueError."""
    if algorithm == "hnsw":
        pytest.importorskip("hnswlib")
    rng = np.random.RandomState(0)
    X = rng.randn(20, 3) * scale
    L = None if metric is None else rng.randn(2, 3)
    with pytest.raises(ValueError, match="squared distances overflow"):
        fm.MahalanobisNeighbors(n_neighbors=3, metric=L, algorithm=algorithm).fit(X)
    # Fitted on moderate data, huge queries are refused as well.
    nn = fm.MahalanobisNeighbors(n_neighbors=3, metric=L, algorithm=algorithm).fit(X / scale)
    with pytest.raises(ValueError, match="squared distances overflow"):
        nn.kneighbors(X[:2])
    dist, _ = nn.kneighbors(X[:2] / scale)
    assert np.all(np.isfinite(dist))


def test_load_refuses_damaged_and_unsound_files(tmp_path):
    """A model file with a flipped byte raised zipfile.BadZipFile (bad CRC),
    and one whose components_ holds NaN loaded into a model whose transform
    returned NaN; both are now refused with ModelFileError (a ValueError)."""
    import io

    from fastmetric._persistence import ModelFileError

    case, data = saved_model("NCA")
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        members = {k: archive[k] for k in archive.files}
    header = json.loads(bytes(members["header"]).decode())
    key = header["attributes"]["components_"]["__array__"]
    # Damage inside a stored member: its CRC no longer matches.
    raw = bytearray(data)
    at = raw.index(members[key].tobytes()[:16]) + 3
    raw[at] ^= 0xFF
    with pytest.raises(ModelFileError, match="damaged"):
        fm.load(io.BytesIO(bytes(raw)))
    for bad, match in ((np.full_like(members[key], np.nan), "NaN or infinity"),
                       (members[key][:, :2], "columns but n_features_in_"),
                       (members[key].ravel(), "2-D float array")):
        tampered = _rewrite(data, lambda h, m, bad=bad: m.__setitem__(key, bad))
        with pytest.raises(ModelFileError, match=match):
            fm.load(io.BytesIO(tampered))
    np.testing.assert_array_equal(fm.load(io.BytesIO(data)).transform(case.X),
                                  case.fit().transform(case.X))


def test_retrieval_scores_refuse_labels_that_are_not_1d():
    """relevant_counts of 2-D labels returned a 2-D array, and knn_accuracy
    and evaluate of a scalar label raised IndexError; now a ValueError."""
    y2 = np.zeros((4, 2), dtype=int)
    with pytest.raises(ValueError, match="y_query must be 1-D"):
        fm.metrics.relevant_counts(y2)
    with pytest.raises(ValueError, match="y_db must be 1-D"):
        fm.metrics.relevant_counts([0, 1], y2)
    with pytest.raises(ValueError, match="y_query must be 1-D"):
        fm.metrics.knn_accuracy(np.array(1), np.zeros((0, 1)), 1)
    X = iris_std()[0][:6]
    with pytest.raises(ValueError, match="y_query must be 1-D"):
        fm.metrics.evaluate(None, X, None)


def test_float32_rows_with_a_map_beyond_float32():
    """Covariance fitted on points of magnitude 1e-300 has components_ near
    1e300 (finite in float64); transform of float32 rows cast them to
    float32 (inf) and returned NaN.  It now computes in float64 and returns
    float32 where the values fit; values beyond float32 (then returned as
    inf) are a ValueError since 2026-12-07; pair distances are finite."""
    X = np.random.RandomState(0).randn(6, 3) * 1e-300
    est = fm.Covariance().fit(X)
    assert np.all(np.isfinite(est.components_)) and np.abs(est.components_).max() > 1e200
    with pytest.raises(ValueError, match="beyond float32's range"):
        est.transform(np.ones((2, 3), dtype=np.float32))
    tiny = (X[:2] * 1e0).astype(np.float32)  # underflows to 0 in float32: a zero map
    assert np.all(est.transform(tiny) == 0)
    d = est.pair_distance(np.zeros((2, 2, 3), dtype=np.float32))
    np.testing.assert_array_equal(d, [0.0, 0.0])


def test_sdml_refuses_data_whose_pair_scatter_overflows():
    """SDML_Supervised at 1e300 returned components_ of NaN (the pair scatter
    overflowed to inf, then its inverse); now a ValueError.  By default such
    data are brought to a range of one first and the fit is finite."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(30, 2) * 1e300, rng.randint(0, 2, 30)
    with pytest.raises(ValueError, match="pair scatter overflow float64.*rescale"):
        fm.SDML_Supervised(n_constraints=50, random_state=0, n_jobs=1,
                           feature_scaling=None).fit(X, y)
    fit = fm.SDML_Supervised(n_constraints=50, random_state=0, n_jobs=1).fit(X, y)
    assert np.isfinite(fit.components_).all()


def test_recall_refuses_more_hits_than_relevant_items():
    """recall_at_k returned 3.0 when the neighbour lists held more relevant
    items than n_relevant says exist (a duplicated item); now a ValueError."""
    y = np.array([0, 0])
    R = fm.metrics.relevant_counts(y)  # each query has 1 relevant item
    with pytest.raises(ValueError, match="more than its n_relevant=1"):
        fm.metrics.recall_at_k(y, np.zeros((2, 3), dtype=int), R, k=3)
    assert fm.metrics.recall_at_k(y, np.array([[0, 1], [1, 0]]), R, k=2) == 1.0


@pytest.mark.timeout(120)
def test_a_large_n_jobs_is_capped_per_cpu():
    """n_jobs=100_000 crashed libgomp while creating its threads (30,000
    hung): a positive n_jobs is lowered to 4 threads per CPU, with the same
    result as any other thread count."""
    from fastmetric._core.threads import MAX_THREADS_PER_CPU, cpu_count, effective_n_threads

    assert effective_n_threads(100_000) == MAX_THREADS_PER_CPU * cpu_count()
    assert effective_n_threads(1) == 1
    X, y = iris_std()
    big = fm.NCA(n_jobs=100_000, max_iter=5).fit(X, y)
    one = fm.NCA(n_jobs=1, max_iter=5).fit(X, y)
    np.testing.assert_array_equal(big.components_, one.components_)


def test_lmnn_refuses_data_whose_squared_distances_overflow():
    """At 1e160 LMNN failed inside numpy's eigh ("Eigenvalues did not
    converge") after its preconditioner overflowed; now a ValueError names
    the data's scale, as the other squared-distance learners do."""
    X = np.random.RandomState(0).randn(20, 3)
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match=r"LMNN: the data reach 2.55e\+160.*rescale"):
        fm.LMNN().fit(X * 1e160, y)
    assert np.all(np.isfinite(fm.LMNN().fit(X * 1e100, y).components_))


@pytest.mark.parametrize("make", [lambda: fm.Covariance(), lambda: fm.LFDA(),
                                  lambda: fm.RCA_Supervised(random_state=0),
                                  lambda: fm.MMC_Supervised(random_state=0)])
def test_an_overflowing_mahalanobis_matrix_is_a_value_error(make):
    """On features of scale 1e-160 these learners fit a finite L of entries
    near 1e160, and get_mahalanobis_matrix() returned +-inf (L^T L beyond the
    float range); now it says so, while transform stays finite."""
    X = np.random.RandomState(0).randn(60, 4) * 1e-160
    y = np.arange(60) % 3
    est = make().fit(X, y)
    assert np.all(np.isfinite(est.transform(X)))
    with pytest.raises(ValueError, match=r"M = L\^T L overflows float64: components_ reach"):
        est.get_mahalanobis_matrix()
    # At a representable scale M is returned as before.
    M = make().fit(X * 1e150, y).get_mahalanobis_matrix()
    assert np.all(np.isfinite(M))


def test_weights_of_any_scale_give_the_uniform_result():
    """Weights are normalised by their sum, so only their ratios matter; but
    weights of 1e308 (whose sum overflows) were silently ignored by
    ldml_loss and LSML, LDML blamed the data, and one subnormal weight gave
    a "rescale the data" error.  They are now brought to a safe scale by a
    power of two."""
    rng = np.random.RandomState(0)
    X, L = rng.randn(20, 3), rng.randn(2, 3)
    pairs, y = np.array([[0, 1], [2, 3], [4, 4], [5, 6]]), np.array([1, 0, 1, 0])
    uniform = pairwise.ldml_loss(X, pairs, y, L, 0.5, sample_weight=np.ones(4))
    huge = pairwise.ldml_loss(X, pairs, y, L, 0.5, sample_weight=np.full(4, 1e308))
    for u, h in zip(uniform, huge):
        np.testing.assert_allclose(h, u, rtol=1e-12)
    one = pairwise.ldml_loss(X, pairs, y, L, 0.5, sample_weight=[1.0, 0, 0, 0])
    tiny = pairwise.ldml_loss(X, pairs, y, L, 0.5, sample_weight=[1e-320, 0, 0, 0])
    for u, h in zip(one, tiny):
        np.testing.assert_allclose(h, u, rtol=1e-12)
    quads = X[np.array([[a, (a + 2) % 20, a, (a + 1) % 20] for a in range(20)])]
    np.testing.assert_allclose(fm.LSML().fit(quads, weights=np.full(20, 1e308)).components_,
                               fm.LSML().fit(quads, weights=np.ones(20)).components_,
                               rtol=1e-10, atol=1e-12)
    P = X[np.array([[i, (i + 1) % 20] for i in range(20)])]
    t = np.where(np.arange(20) % 2, 1, -1)
    np.testing.assert_allclose(
        fm.LDML(random_state=0).fit(P, t, sample_weight=np.full(20, 1e308)).components_,
        fm.LDML(random_state=0).fit(P, t, sample_weight=np.ones(20)).components_,
        rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="sample_weight sums to 0; at least one pair"):
        pairwise.ldml_loss(X, pairs, y, L, 0.5, sample_weight=np.zeros(4))


def test_nca_with_every_point_its_own_class():
    """init='auto' chose LDA, and scikit-learn's LDA refuses as many classes
    as samples ("The number of samples must be more than the number of
    classes"); 'auto' now goes on to PCA / identity, and NCA, whose points
    then have no neighbour of their class, keeps that start."""
    X = np.random.RandomState(0).randn(6, 4)
    est = fm.NCA().fit(X, np.arange(6))
    assert np.all(np.isfinite(est.components_)) and est.components_.shape == (4, 4)
    # With fewer classes than samples 'auto' is still LDA's start.
    from fastmetric._core.init import initialize_components

    y = np.arange(6) % 3
    np.testing.assert_array_equal(initialize_components("auto", X, y=y, n_components=2),
                                  initialize_components("lda", X, y=y, n_components=2))


@pytest.mark.parametrize("shrinkage", [0.0, "ledoit_wolf", "oas"])
def test_covariance_with_features_of_very_different_scales(shrinkage):
    """Features of 1e100 and 1e-100 side by side: the small one's variance
    underflowed in the common unit, and eigh failed on NaN.  Its spread is
    now measured in its own unit; the embedding is that of the
    standardised data."""
    X = np.random.RandomState(0).randn(60, 3)
    X[:, 0] *= 1e100
    X[:, 1] *= 1e-100
    est = fm.Covariance(shrinkage=shrinkage).fit(X)
    assert np.all(np.isfinite(est.components_))
    ref = fm.Covariance(shrinkage=shrinkage).fit(X / X.std(axis=0))
    np.testing.assert_allclose(est.transform(X), ref.transform(X / X.std(axis=0)),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("solver", ["lbfgs", "projection"])
def test_mmc_when_no_dissimilar_pair_can_be_separated(solver):
    """On constant data every dissimilar pair joins identical points; the
    full-matrix MMC then stopped with "the objective is not finite at the
    initial point; check the data scale".  It now keeps its start and says
    why (the diagonal form already kept it)."""
    X, y = np.ones((20, 3)), np.arange(20) % 2
    with pytest.warns(UserWarning, match="every dissimilar pair joins two identical points"):
        est = fm.MMC_Supervised(solver=solver, random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.components_, np.eye(3))
    assert est.n_iter_ == 0


def test_metric_callable_and_unfitted_learners_in_the_search():
    """get_metric()'s callable flattened its inputs, so two (2, 4) arrays
    were reported as "8 and 8" features; MahalanobisNeighbors with an
    unfitted NCA and no labels failed inside NCA.fit with a missing-argument
    TypeError."""
    X = np.random.RandomState(0).randn(20, 4)
    y = np.arange(20) % 2
    metric = fm.NCA(max_iter=3).fit(X, y).get_metric()
    assert metric(X[0], X[1]) == metric(X[:1], X[1:2]) > 0
    with pytest.raises(ValueError, match=r"got arrays of shapes \(2, 4\) and \(2, 4\)"):
        metric(X[:2], X[2:4])
    with pytest.raises(ValueError, match=r"metric=NCA\(...\) is not fitted and learns from labels"):
        fm.neighbors.MahalanobisNeighbors(metric=fm.NCA()).fit(X)
    # A learner that needs no labels is still fitted on X alone.
    nn = fm.neighbors.MahalanobisNeighbors(metric=fm.Covariance(), n_neighbors=2).fit(X)
    assert nn.kneighbors(X[:1])[1].shape == (1, 2)


@pytest.mark.parametrize("scale", [1e25, 1e-25, 1e100, 1e-100])
def test_lmnn_learns_the_same_metric_at_extreme_scales(scale):
    """LMNN's margin is one unit of squared distance: from the identity,
    features of 1e25 stopped L-BFGS at its start (the identity kept) and
    features of 1e-25 drove the map to zero, and its float32 impostor
    search overflowed or underflowed.  A named start is now brought to the
    data's scale by a power of two (and the search's embedding too)."""
    X, y = iris_std()
    ref = fm.LMNN(random_state=0, n_jobs=1).fit(X, y)
    est = fm.LMNN(random_state=0, n_jobs=1).fit(X * scale, y)
    assert est.n_iter_ > 5
    M_ref = ref.get_mahalanobis_matrix()
    L = est.components_ * scale  # the map in the unit of X
    np.testing.assert_allclose(L.T @ L, M_ref, atol=0.05 * np.abs(M_ref).max())


def test_squared_must_be_a_bool_and_a_missing_model_file_is_file_not_found(tmp_path):
    """squared='no' was truthy, so squared distances came back; load() of a
    path that does not exist raised ModelFileError ("not a model file")."""
    X = np.random.RandomState(0).randn(5, 3)
    for fn, args in ((pairwise.mahalanobis_distances, (X,)),
                     (pairwise.paired_mahalanobis_distances, (X, [[0, 1]]))):
        with pytest.raises(TypeError, match="squared must be True or False; got 'no'"):
            fn(*args, squared="no")
        np.testing.assert_array_equal(fn(*args, squared=np.bool_(True)), fn(*args, squared=True))
    with pytest.raises(FileNotFoundError):
        fm.load(tmp_path / "no-such-model.npz")


@pytest.mark.parametrize("scale", [1e25, 1e-25])
def test_stochastic_lmnn_steps_scale_with_extreme_features(scale):
    """The minibatch LMNN starts from a subsample fit at the data's scale
    (or a rescaled named start) and its Adam steps, in L's units, now scale
    with the features: steps of 0.001 on a map of 1e-25 had wiped it out."""
    X, y = iris_std()
    kw = dict(solver="adam", random_state=0, n_jobs=1, max_iter=5)
    ref = fm.LMNN(**kw).fit(X, y).get_mahalanobis_matrix()
    L = fm.LMNN(**kw).fit(X * scale, y).components_ * scale
    np.testing.assert_allclose(L.T @ L, ref, atol=0.05 * np.abs(ref).max())


def test_an_overflow_names_the_map_as_well_as_the_data():
    """A huge map overflowed the squared distances and the message blamed
    the data alone ("the data reach 2.55; rescale the data")."""
    X = np.random.RandomState(0).randn(20, 3)
    with pytest.raises(ValueError, match=r"overflow float32 \(the data reach 2.55, the "
                                         r"components 1e\+30\); rescale the data or the "
                                         r"components"):
        pairwise.mahalanobis_distances(X.astype(np.float32), components=np.eye(3) * 1e30)


@pytest.mark.parametrize("make", [lambda: fm.SDML(prior="covariance"),
                                  lambda: fm.MMC(init="covariance", max_iter=5),
                                  lambda: fm.LDML(init="pca", n_components=2, max_iter=5),
                                  lambda: fm.ITML(prior="covariance")])
def test_index_pairs_with_an_array_preprocessor_fit_as_the_points_do(make):
    """With an array preprocessor, SDML's and MMC's covariance and LDML's PCA
    were computed on every row of it, also rows no pair uses (ITML and LSML
    already used the pairs' points only): up to 24 % apart from the same
    pairs given as points or through a callable."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    X[30:] *= 10  # rows in no pair
    pairs = rng.integers(0, 30, (60, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    y = np.where(np.arange(len(pairs)) % 2, 1, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        points = make().fit(X[pairs], y).get_mahalanobis_matrix()
        indexed = make().set_params(preprocessor=X).fit(pairs, y).get_mahalanobis_matrix()
        called = make().set_params(preprocessor=lambda i: X[i]).fit(pairs, y)
    # The same rows in another order: the PCA start differs in its last bits
    # and five LDML steps carry that to about 1e-6 on some machines (7.7e-7
    # seen on an AMD EPYC); the bug this guards against was 24 % apart.
    np.testing.assert_allclose(indexed, points, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(called.get_mahalanobis_matrix(), points, rtol=1e-5, atol=1e-9)


def test_public_kernels_refuse_calls_that_would_crash():
    """split_index_pairs read past the rows of an (n, 1) array and wrote past
    a short a_out (heap corruption, a crash at exit); a negative thread
    count reached OpenMP as an allocation of terabytes (abort); pair_scatter
    with out inside X overwrote what it read; quadratic_forms left out
    unwritten when there is no feature."""
    from fastmetric.kernels.lsml import quadratic_forms
    from fastmetric.kernels.pair_index import split_index_pairs
    from fastmetric.kernels.pair_scatter import pair_scatter

    with pytest.raises(ValueError, match=r"pairs must have shape \(n_pairs, 2\); got \(10, 1\)"):
        split_index_pairs(np.arange(10).reshape(10, 1), 1)
    with pytest.raises(ValueError, match=r"a_out must be an intp array of shape \(10,\)"):
        split_index_pairs(np.arange(20).reshape(10, 2), 1, a_out=np.empty(3, np.intp))
    a, b, lo, hi = split_index_pairs(np.arange(20).reshape(10, 2), 1)
    np.testing.assert_array_equal(a, np.arange(0, 20, 2))
    assert (lo, hi) == (0, 19)
    X, i, j, w = np.ones((4, 4)), np.array([0, 1]), np.array([2, 3]), np.ones(2)
    with pytest.raises(ValueError, match="n_threads must be >= 0; got -1"):
        pair_scatter(X, i, j, w, np.zeros((4, 4)), -1)
    with pytest.raises(ValueError, match="method must be one of the codes"):
        pair_scatter(X, i, j, w, np.zeros((4, 4)), 1, 7)
    with pytest.raises(ValueError, match="out must not share memory with X"):
        pair_scatter(X, i, j, w, X, 1)
    with pytest.raises(ValueError, match="n_threads must be >= 0; got -1"):
        quadratic_forms(X, np.eye(4), i, j, np.zeros(2), -1)
    out = quadratic_forms(np.ones((5, 0)), np.zeros((0, 0)), i, j, np.full(2, np.nan))
    np.testing.assert_array_equal(out, [0.0, 0.0])


def test_learner_warnings_name_the_users_line():
    """SCML's, LSML's and SDML's warnings pointed into scikit-learn's fit
    wrapper (a fixed stacklevel, one frame short of the caller)."""
    import inspect

    X, y = iris_std()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        fm.SCML_Supervised(random_state=0, max_iter=10, output_iter=5).fit(X, y)
        fm.LSML_Supervised(random_state=0, max_iter=1).fit(X, y)
    ours = [w for w in caught if "n_basis" in str(w.message) or "did not converge" in str(w.message)]
    assert len(ours) == 2
    assert [(w.filename, w.lineno) for w in ours] == [(__file__, line), (__file__, line + 1)]
