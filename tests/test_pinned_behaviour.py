"""Refactorings must not move results: every learner's ``components_`` and the
public kernels' outputs are pinned by a hash of their bytes.

The hashes are exact, so they hold only on the machine (CPU, BLAS build,
library versions) that recorded them: ``tests/pinned_hashes.json`` keeps one
table per machine fingerprint.  On a machine without a table the comparison
is skipped with the command that records one::

    python tests/test_pinned_behaviour.py --record

Record before a change that must not move results, commit the table, and the
test then checks the change bitwise on that machine (CI runs on the
submitting session's machine).
"""
import hashlib
import json
import os
import platform
import sys
import warnings

import numpy as np
import pytest

PIN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pinned_hashes.json")


def machine_fingerprint():
    """What decides bitwise results: CPU, instruction sets, library builds."""
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = " ".join(sorted(
                        fl for fl in line.split(":", 1)[1].split()
                        if fl.startswith(("avx", "fma", "sse4"))))
                    break
    except OSError:
        pass
    blas = sorted(f"{i.get('internal_api')}-{i.get('version')}-{i.get('architecture')}"
                  for i in threadpool_info() if i.get("user_api") == "blas")
    parts = [cpu, flags, f"numpy {np.__version__}", f"scipy {scipy.__version__}",
             f"sklearn {sklearn.__version__}", ",".join(blas),
             "OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", ""),
             "FASTMETRIC_SMALL_GEMM=" + os.environ.get("FASTMETRIC_SMALL_GEMM", "")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def array_hash(a):
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:24]


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    return {"raw": (X, y), "std": (StandardScaler().fit_transform(X), y)}


def _with_seed(est):
    if "random_state" in est.get_params():
        est.set_params(random_state=0)
    return est


def _label_learners():
    import fastmetric as fm

    return {
        "LDML_Supervised": fm.LDML_Supervised(),
        "NCA": fm.NCA(),
        "LMNN": fm.LMNN(),
        "MLKR": fm.MLKR(),
        "ITML_Supervised": fm.ITML_Supervised(),
        "LSML_Supervised": fm.LSML_Supervised(),
        "MMC_Supervised": fm.MMC_Supervised(),
        "SDML_Supervised": fm.SDML_Supervised(),
        "RCA_Supervised": fm.RCA_Supervised(),
        "SCML_Supervised": fm.SCML_Supervised(),
        "LFDA": fm.LFDA(),
        "Covariance": fm.Covariance(),
        "ClusterLDML": fm.ClusterLDML(n_clusters=10),
    }


def _tuple_cases():
    """Small pair, triplet, quadruplet and chunk sets on standardised iris."""
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import StandardScaler

    import fastmetric as fm

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.RandomState(0)
    pairs = rng.randint(0, len(X), size=(300, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    y_pairs = np.where(y[pairs[:, 0]] == y[pairs[:, 1]], 1, -1)
    anchors = rng.randint(0, len(X), size=400)
    triplets = []
    for a in anchors:
        same = np.flatnonzero((y == y[a]) & (np.arange(len(y)) != a))
        other = np.flatnonzero(y != y[a])
        triplets.append([a, rng.choice(same), rng.choice(other)])
    triplets = np.array(triplets)
    quads = np.c_[triplets[:, :2], triplets[:, [0, 2]]]
    chunks = np.full(len(X), -1)
    chunks[rng.permutation(len(X))[:60]] = np.arange(60) // 3
    # Chunks of one class each: relabel by the class of their first member.
    chunk_ids = np.where(chunks >= 0, chunks, -1)
    chunk_ids[chunks >= 0] = y[chunks >= 0] * 100 + chunks[chunks >= 0] % 5
    cases = {
        "LDML pairs": (fm.LDML(preprocessor=X), pairs, y_pairs),
        "LDML pair points": (fm.LDML(), X[pairs], y_pairs),
        "ITML pairs": (fm.ITML(preprocessor=X), pairs, y_pairs),
        "MMC pairs": (fm.MMC(preprocessor=X), pairs, y_pairs),
        "SDML pairs": (fm.SDML(preprocessor=X), pairs, y_pairs),
        "SCML triplets": (fm.SCML(preprocessor=X), triplets, None),
        "LSML quadruplets": (fm.LSML(preprocessor=X), quads, None),
        "RCA chunks": (fm.RCA(), X, chunk_ids),
    }
    return cases


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if y is None:
            est.fit(X)
        else:
            est.fit(X, y)
    return est


def compute_hashes():
    """The hash of every pinned result, by name."""
    from fastmetric import pairwise

    out = {}
    for scale, (X, y) in _digits().items():
        for name, est in _label_learners().items():
            target = y.astype(float) if name == "MLKR" else y
            if name in ("ClusterLDML", "Covariance"):
                target = None
            est = _fit(_with_seed(est), X, target)
            out[f"{name} digits {scale}"] = array_hash(est.components_)
            if name == "ClusterLDML":
                out[f"{name} digits {scale} labels"] = array_hash(est.labels_)
    for name, (est, data, target) in _tuple_cases().items():
        est = _fit(_with_seed(est), data, target)
        out[name] = array_hash(est.components_)

    rng = np.random.RandomState(1)
    for dtype in (np.float64, np.float32):
        tag = np.dtype(dtype).name
        X = rng.randn(500, 12).astype(dtype)
        L = rng.randn(8, 12).astype(dtype)
        pairs = rng.randint(0, 500, size=(4000, 2))
        y = rng.rand(4000)
        out[f"mahalanobis_distances {tag}"] = array_hash(
            pairwise.mahalanobis_distances(X[:200], X[200:], components=L))
        out[f"paired_mahalanobis_distances {tag}"] = array_hash(
            pairwise.paired_mahalanobis_distances(X, pairs, components=L))
        loss, grad, grad_bias = pairwise.ldml_loss(X, pairs, y, L, 3.0)
        out[f"ldml_loss {tag}"] = array_hash(np.r_[loss, grad.ravel().astype(np.float64),
                                                   grad_bias])
        w = rng.randn(4000)
        out[f"weighted_pair_scatter {tag}"] = array_hash(
            pairwise.weighted_pair_scatter(X, pairs[:, 0], pairs[:, 1], w))
    labels = rng.randint(0, 7, size=3000)
    sampled = pairwise.sample_pairs(labels, 5000, 5000, random_state=3)
    out["sample_pairs"] = array_hash(np.c_[sampled[0], sampled[1]])
    out["sample_chunks"] = array_hash(pairwise.sample_chunks(labels, 200, 3, random_state=3))
    return out


def _load_pins():
    if not os.path.isfile(PIN_FILE):
        return {}
    with open(PIN_FILE) as f:
        return json.load(f)


@pytest.mark.timeout(600)
def test_results_match_the_pinned_hashes():
    tables = _load_pins()
    fingerprint = machine_fingerprint()
    if fingerprint not in tables:
        pytest.skip(f"no pinned hashes for this machine (fingerprint {fingerprint}); "
                    "record them with: python tests/test_pinned_behaviour.py --record")
    expected = tables[fingerprint]
    got = compute_hashes()
    assert sorted(got) == sorted(expected), "the set of pinned cases changed"
    moved = [name for name in expected if got[name] != expected[name]]
    assert not moved, f"results moved (not bitwise equal to the pinned ones): {moved}"


def test_hashes_see_a_one_ulp_change():
    a = np.linspace(0, 1, 50)
    b = a.copy()
    b[17] = np.nextafter(b[17], 2)
    assert array_hash(a) != array_hash(b)
    assert array_hash(a) != array_hash(a.astype(np.float32))


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit("usage: python tests/test_pinned_behaviour.py --record")
    tables = _load_pins()
    tables[machine_fingerprint()] = compute_hashes()
    with open(PIN_FILE, "w") as f:
        json.dump(tables, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"recorded {len(tables[machine_fingerprint()])} hashes for {machine_fingerprint()}")
