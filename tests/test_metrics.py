"""fastmetric.metrics: retrieval scores against numpy twins and hand-worked cases."""
import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastmetric import NCA
from fastmetric.metrics import (
    evaluate,
    kmeans_scores,
    knn_accuracy,
    make_retrieval_scorer,
    map_at_r,
    map_at_r_scorer,
    mean_reciprocal_rank,
    neighbor_labels,
    precision_at_1_scorer,
    precision_at_k,
    r_precision,
    recall_at_k,
    relevant_counts,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# ---------------------------------------------------------------------------
# Plain twins: one query at a time, straight from the definitions
# ---------------------------------------------------------------------------
def twin_scores(yq, labels, R, k):
    """Per-query definitions averaged over queries with R > 0."""
    out = {"p": [], "r": [], "rp": [], "map": [], "mrr": []}
    for y, row, r in zip(yq, labels, R):
        if r == 0:
            continue
        rel = [lab == y for lab in row]
        out["p"].append(sum(rel[:k]) / k)
        out["r"].append(sum(rel[:k]) / r)
        out["rp"].append(sum(rel[:r]) / r)
        ap, hits = 0.0, 0
        for i in range(r):
            if rel[i]:
                hits += 1
                ap += hits / (i + 1)
        out["map"].append(ap / r)
        first = next((i for i, x in enumerate(rel) if x), None)
        out["mrr"].append(0.0 if first is None else 1.0 / (first + 1))
    return {key: np.mean(v) for key, v in out.items()}


def twin_knn_accuracy(yq, labels, k):
    hits = []
    for y, row in zip(yq, labels):
        row = list(row[:k])
        if not row:
            hits.append(False)
            continue
        counts = {lab: row.count(lab) for lab in row}
        best = max(counts.values())
        hits.append(min(lab for lab, c in counts.items() if c == best) == y)
    return np.mean(hits)


def test_scores_match_twins_on_random_lists():
    rng = np.random.default_rng(0)
    y_db = rng.integers(0, 4, size=60)
    y_q = rng.integers(0, 5, size=40)  # class 4 is absent from the database: R = 0
    R = relevant_counts(y_q, y_db)
    idx = np.stack([rng.permutation(60) for _ in range(40)])
    labels = neighbor_labels(idx, y_db)
    ref = twin_scores(y_q, labels, R, 3)
    assert_allclose(precision_at_k(y_q, labels, 3, n_relevant=R), ref["p"])
    assert_allclose(recall_at_k(y_q, labels, R, 3), ref["r"])
    assert_allclose(r_precision(y_q, labels, R), ref["rp"])
    assert_allclose(map_at_r(y_q, labels, R), ref["map"])
    assert_allclose(mean_reciprocal_rank(y_q, labels, n_relevant=R), ref["mrr"])
    for k in (1, 4, 7):
        assert_allclose(knn_accuracy(y_q, labels, k), twin_knn_accuracy(y_q, labels, k))


def test_relevant_counts():
    y = np.array([0, 0, 1, 2, 2, 2])
    assert relevant_counts(y).tolist() == [1, 1, 0, 2, 2, 2]  # leave-one-out
    assert relevant_counts([0, 1, 3], y).tolist() == [2, 1, 0]


# ---------------------------------------------------------------------------
# Hand-worked cases
# ---------------------------------------------------------------------------
def test_hand_worked_map_at_r_and_friends():
    # Query of class 0 with R = 3 and ranks 0 1 0 0:
    # P@1 = 1, P@2 = 1/2, R-precision = 2/3,
    # MAP@R = (1/3)(P(1) + P(3)) = (1/3)(1 + 2/3) = 5/9, MRR = 1, recall@2 = 1/3.
    yq, lab, R = [0], np.array([[0, 1, 0, 0]]), [3]
    assert precision_at_k(yq, lab, 1) == 1.0
    assert precision_at_k(yq, lab, 2) == 0.5
    assert_allclose(r_precision(yq, lab, R), 2 / 3)
    assert_allclose(map_at_r(yq, lab, R), 5 / 9)
    assert mean_reciprocal_rank(yq, lab) == 1.0
    assert_allclose(recall_at_k(yq, lab, R, 2), 1 / 3)
    # R = 1 and the relevant item second: MAP@R and R-precision see only rank 1.
    lab = np.array([[1, 0, 1]])
    assert map_at_r([0], lab, [1]) == 0.0 and r_precision([0], lab, [1]) == 0.0
    assert mean_reciprocal_rank([0], lab) == 0.5
    assert_allclose(precision_at_k([0], lab, 3), 1 / 3)


def test_single_member_classes_are_left_out():
    # Second query: the only member of its class (R = 0).
    yq, lab, R = [0, 5], np.array([[0, 1], [0, 1]]), [1, 0]
    assert map_at_r(yq, lab, R) == 1.0
    assert r_precision(yq, lab, R) == 1.0
    assert precision_at_k(yq, lab, 1, n_relevant=R) == 1.0
    assert precision_at_k(yq, lab, 1) == 0.5  # without R every query counts
    assert mean_reciprocal_rank(yq, lab, n_relevant=R) == 1.0
    assert np.isnan(map_at_r([5], np.array([[0]]), [0]))


def test_k_larger_than_the_class():
    # Class of 2 relevant items: precision@5 cannot exceed 2/5.
    lab = np.array([[0, 0, 1, 1, 1]])
    assert_allclose(precision_at_k([0], lab, 5), 2 / 5)
    assert recall_at_k([0], lab, [2], 5) == 1.0
    assert map_at_r([0], lab, [2]) == 1.0


def test_knn_accuracy_ties_go_to_the_smallest_label():
    lab = np.array([[2, 1], [2, 1], [3, 3]])
    assert_allclose(knn_accuracy([1, 2, 3], lab), 2 / 3)


def test_empty_results_under_a_radius():
    # Ragged lists (from radius_neighbors); the second query found nothing.
    lab = [np.array([0, 0, 1]), np.array([], dtype=int), np.array([1])]
    yq, R = [0, 0, 1], [2, 2, 3]
    assert_allclose(precision_at_k(yq, lab, 1, n_relevant=R), 2 / 3)
    assert_allclose(mean_reciprocal_rank(yq, lab), 2 / 3)
    # Ranks past a short list are misses: the third query has 1 of R = 3.
    assert_allclose(r_precision(yq, lab, R), (1 + 0 + 1 / 3) / 3)
    assert_allclose(map_at_r(yq, lab, R), (1 + 0 + 1 / 3) / 3)
    assert_allclose(knn_accuracy(yq, lab), 2 / 3)
    from fastmetric.neighbors import radius_neighbors

    X = np.array([[0.0], [0.1], [5.0]])
    ind = radius_neighbors(X, radius=0.5, return_distance=False)
    labels = neighbor_labels(ind, [0, 0, 1])
    assert len(labels[2]) == 0
    assert_allclose(precision_at_k([0, 0, 1], labels, 1), 2 / 3)


def test_ties_in_the_search_follow_the_lower_index():
    # Query at 0 (leave-one-out); points at +1 and -1 tie: the lower index (1,
    # of class 1) ranks first, so precision@1 of the query is 0.
    X = np.array([[0.0], [1.0], [-1.0], [10.0], [11.0]])
    y = np.array([0, 1, 0, 1, 1])
    scores = evaluate(None, X[:3], y[:3], X[1:], y[1:], ks=(1, 2), clustering=False)
    # Queries 0, 1, 2 against the database rows 1..4 (classes 1, 0, 1, 1):
    # query 0 -> ranks [row 1 (class 1), row 2 (class 0)] -> P@1 = 0, MRR = 1/2;
    # query 1 -> itself first (class 1) -> P@1 = 1; query 2 -> itself -> 1.
    assert_allclose(scores["precision@1"], 2 / 3)
    assert_allclose(scores["mrr"], (0.5 + 1 + 1) / 3)


def test_input_errors():
    with pytest.raises(ValueError, match="columns"):
        precision_at_k([0], np.array([[0]]), 2)
    with pytest.raises(ValueError, match="first 3 neighbours"):
        map_at_r([0], np.array([[0, 1]]), [3])
    with pytest.raises(ValueError, match="rows"):
        precision_at_k([0, 1], np.array([[0]]), 1)
    with pytest.raises(ValueError, match="k must"):
        precision_at_k([0], np.array([[0]]), 0)
    with pytest.raises(ValueError, match="unknown retrieval score"):
        make_retrieval_scorer("accuracy")


def test_missing_labels_are_named():
    with pytest.raises(ValueError, match=r"y_query: labels contains a missing .* at index 0"):
        relevant_counts(np.array([np.nan, np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"y_query: labels contains a missing .* at index 1"):
        relevant_counts(np.array(["a", None], dtype=object), ["a", "b"])
    with pytest.raises(ValueError, match=r"y_db: labels contains a missing .* at index 2"):
        relevant_counts([0, 1], [0, 1, np.nan])
    X = np.random.RandomState(0).randn(20, 3)
    with pytest.raises(ValueError, match=r"y_query: labels contains a missing .* at index 0"):
        evaluate(None, X, np.r_[np.nan, np.arange(19) % 3])


def test_neighbor_labels_checks_the_indices():
    y = np.arange(20)
    with pytest.raises(ValueError, match=r"in \[0, 20\).*got 100 at position \(0, 1\)"):
        neighbor_labels(np.array([[0, 100]]), y)
    with pytest.raises(ValueError, match=r"got -2 at position \(0, 0\)"):
        neighbor_labels(np.array([[-2, 1]]), y)
    with pytest.raises(TypeError, match="integer row numbers.*float64"):
        neighbor_labels(np.array([[0, 1.5]]), y)
    with pytest.raises(ValueError, match="got 20 at position 1 in the list of query 1"):
        neighbor_labels([np.array([0]), np.array([3, 20])], y)
    with pytest.raises(TypeError, match="float64 in the list of query 0"):
        neighbor_labels([np.array([0.0, 1.0])], y)
    # -1 marks a missing entry in ragged lists too (not the last label).
    out = neighbor_labels([np.array([2, -1]), np.array([], dtype=int)], y)
    assert [r.tolist() for r in out] == [[2], []]


def test_mean_reciprocal_rank_needs_a_column():
    with pytest.raises(ValueError, match="mean reciprocal rank needs the first 1 neighbours.*"
                                         "0 columns"):
        mean_reciprocal_rank(np.array([0, 1]), np.zeros((2, 0), int))


def test_evaluate_checks_ks_and_knn_k():
    X = np.random.RandomState(0).randn(20, 3)
    y = np.arange(20) % 3
    with pytest.raises(ValueError, match="ks is empty"):
        evaluate(None, X, y, ks=())
    with pytest.raises(ValueError, match="each k of ks must be a positive integer; got 0"):
        evaluate(None, X, y, ks=(1, 0))
    with pytest.raises(TypeError, match="ks must be a sequence"):
        evaluate(None, X, y, ks=5)
    with pytest.raises(ValueError, match="knn_k must be a positive integer; got 0"):
        evaluate(None, X, y, knn_k=0)


@pytest.mark.parametrize("n_clusters", [0, -1, 5, 2.5, True])
def test_kmeans_scores_rejects_bad_n_clusters(n_clusters):
    Z = np.array([[0.0], [0.1], [10.0], [10.1]])
    with pytest.raises(ValueError, match=r"n_clusters must be an integer in \[1, 4\]"):
        kmeans_scores(Z, [0, 0, 1, 1], n_clusters=n_clusters)


def test_kmeans_scores_checks_the_rows():
    with pytest.raises(ValueError, match="one row per label"):
        kmeans_scores(np.zeros((3, 2)), [0, 0, 1, 1])


@pytest.mark.parametrize(("R", "shown"), [([1.5, 2, 2], "1.5 at index 0"),
                                          ([1, np.nan, 2], "nan at index 1"),
                                          ([1, 2, -1], "-1 at index 2")])
def test_n_relevant_must_be_counts(R, shown):
    yq, lab = [0, 1, 1], np.array([[0, 1], [1, 1], [1, 0]])
    match = f"n_relevant must hold integer counts >= 0; got {shown}"
    for score in (map_at_r, r_precision, lambda *a: recall_at_k(*a, k=1),
                  lambda *a: precision_at_k(*a[:2], n_relevant=a[2]),
                  lambda *a: mean_reciprocal_rank(*a[:2], n_relevant=a[2])):
        with pytest.raises(ValueError, match=match):
            score(yq, lab, np.array(R))
    with pytest.raises(TypeError, match="integer counts"):
        map_at_r(yq, lab, [1, None, 2])
    # Whole numbers stored as floats are counts.
    assert map_at_r(yq, lab, np.array([1.0, 2.0, 2.0])) == map_at_r(yq, lab, [1, 2, 2])


# ---------------------------------------------------------------------------
# evaluate and scorers
# ---------------------------------------------------------------------------
@pytest.fixture
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_evaluate_matches_a_numpy_twin(iris):
    X, y = iris
    rng = np.random.default_rng(0)
    perm = rng.permutation(150)
    tr, te = perm[:100], perm[100:]
    nca = NCA(max_iter=20, random_state=0).fit(X[tr], y[tr])
    scores = evaluate(nca, X[te], y[te], X[tr], y[tr], ks=(1, 5))
    Zq, Zd = nca.transform(X[te]), nca.transform(X[tr])
    D = ((Zq[:, None] - Zd[None]) ** 2).sum(-1)
    order = np.stack([np.lexsort((np.arange(100), row)) for row in D])
    labels = y[tr][order]
    R = relevant_counts(y[te], y[tr])
    ref = twin_scores(y[te], labels, R, 5)
    assert_allclose(scores["precision@5"], ref["p"])
    assert_allclose(scores["recall@5"], ref["r"])
    assert_allclose(scores["r_precision"], ref["rp"])
    assert_allclose(scores["map@r"], ref["map"])
    assert_allclose(scores["mrr"], ref["mrr"])
    assert_allclose(scores["knn_accuracy@5"], twin_knn_accuracy(y[te], labels, 5))
    assert set(scores) >= {"precision@1", "recall@1", "nmi", "ami"}
    assert 0 <= scores["ami"] <= 1 and 0 <= scores["nmi"] <= 1
    # Leave-one-out within the queries.
    loo = evaluate(nca, X[te], y[te], clustering=False)
    assert "nmi" not in loo and 0 <= loo["map@r"] <= 1


def test_kmeans_scores_perfect_clusters():
    Z = np.array([[0.0], [0.1], [10.0], [10.1]])
    s = kmeans_scores(Z, [0, 0, 1, 1])
    assert_allclose([s["nmi"], s["ami"]], [1.0, 1.0])


def test_scorers_in_grid_search_and_cross_val_score(iris):
    X, y = iris
    search = GridSearchCV(NCA(max_iter=10, random_state=0), {"n_components": [1, 2]},
                          scoring=map_at_r_scorer, cv=3).fit(X, y)
    assert set(search.cv_results_["params"][0]) == {"n_components"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    pipe = make_pipeline(StandardScaler(), NCA(max_iter=10, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3, scoring=precision_at_1_scorer)
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 1)).all()
    # The scorer's value is leave-one-out retrieval on the given fold.
    nca = NCA(max_iter=10, random_state=0).fit(X, y)
    direct = evaluate(nca, X[:50], y[:50], clustering=False)
    assert_allclose(map_at_r_scorer(nca, X[:50], y[:50]), direct["map@r"])
    assert_allclose(make_retrieval_scorer("knn_accuracy@3")(nca, X[:50], y[:50]),
                    evaluate(nca, X[:50], y[:50], knn_k=3, clustering=False)["knn_accuracy@3"])


def test_evaluate_precision_at_k_beyond_the_database():
    """With fewer database rows than k, precision@k counted only the rows
    there are (precision@5 of 3 relevant rows was 1.0): ranks past the end
    count as misses, as in precision_at_k."""
    from fastmetric.metrics import evaluate, precision_at_k

    X_db, y_db = np.array([[0.0], [1.0], [2.0]]), np.array([0, 0, 0])
    scores = evaluate(None, np.array([[0.5]]), np.array([0]), X_db, y_db, ks=(1, 5),
                      clustering=False)
    assert scores["precision@1"] == 1.0 and scores["precision@5"] == pytest.approx(0.6)
    assert scores["precision@5"] == pytest.approx(
        precision_at_k(np.array([0]), [np.array([0, 0, 0])], k=5))
    assert scores["recall@5"] == 1.0


def test_mrr_is_over_the_whole_ranking():
    """evaluate searched K = max(ks, knn_k, R) neighbours and scored a query
    whose first point of its class ranked below K as 0, so "mrr" changed
    with ks (0.583 with ks=(1,), 0.65 with ks=(5,)); it is now the rank over
    the whole ranking, checked against numpy in both modes."""
    from fastmetric.metrics import evaluate

    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [10.0]])
    y = np.array([0, 1, 1, 1, 1, 0])
    for ks in [(1,), (5,)]:
        assert evaluate(None, X, y, ks=ks, knn_k=1, clustering=False)["mrr"] == \
            pytest.approx(0.65)
    rng = np.random.RandomState(0)
    for _ in range(10):
        Xq, yq = rng.randn(25, 2), rng.randint(0, 3, 25)
        Xd, yd = rng.randn(30, 2), rng.randint(0, 3, 30)
        for db in (True, False):
            B, yb = (Xd, yd) if db else (Xq, yq)
            D = ((Xq[:, None] - B[None]) ** 2).sum(-1)
            if not db:
                np.fill_diagonal(D, np.inf)
            ref = []
            for i in range(25):
                order = np.lexsort((np.arange(len(yb)), D[i]))
                order = order[np.isfinite(D[i][order])]
                hits = np.flatnonzero(yb[order] == yq[i])
                if hits.size:
                    ref.append(1.0 / (hits[0] + 1))
            args = (Xd, yd) if db else ()
            got = evaluate(None, Xq, yq, *args, ks=(1,), knn_k=1, clustering=False)["mrr"]
            assert got == pytest.approx(np.mean(ref), abs=1e-12)


def test_knn_accuracy_is_named_by_the_k_asked_for(iris):
    """With fewer database rows than knn_k, the key was knn_accuracy@<rows>:
    scores['knn_accuracy@10'] raised a KeyError, and the keys changed across
    folds of different sizes.  'precision@05' was accepted as a scorer name
    and raised a KeyError when called."""
    X, y = iris
    scores = evaluate(np.eye(4), X[:20], y[:20], X[:5], y[:5], knn_k=10, clustering=False)
    assert "knn_accuracy@10" in scores and not any(k == "knn_accuracy@5" for k in scores)
    assert_allclose(scores["knn_accuracy@10"],
                    evaluate(np.eye(4), X[:20], y[:20], X[:5], y[:5], knn_k=5,
                             clustering=False)["knn_accuracy@5"])
    with pytest.raises(ValueError, match="unknown retrieval score 'precision@05'"):
        make_retrieval_scorer("precision@05")
