"""
The classic learners side by side
=================================

ITML, MMC, SDML, LSML, SCML, RCA, LFDA and Covariance, each fitted from the
labels of the wine data (their ``_Supervised`` forms draw the pairs,
quadruplets, triplets or chunks; LFDA uses the labels directly, Covariance
none).  The bar chart gives the 3-NN accuracy of each learned metric on a
held-out part, against the Euclidean distance; the scatter plots show the
held-out points in four of the metrics, on their first two principal axes.
"""

import time
import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_wine
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from fastmetric import (
    LFDA,
    Covariance,
    ITML_Supervised,
    LSML_Supervised,
    MMC_Supervised,
    RCA_Supervised,
    SCML_Supervised,
    SDML_Supervised,
)

X, y = load_wine(return_X_y=True)
X = StandardScaler().fit_transform(X)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, stratify=y,
                                                    random_state=0)

learners = {
    "ITML": ITML_Supervised(random_state=0),
    "MMC": MMC_Supervised(random_state=0),
    "SDML": SDML_Supervised(random_state=0),
    "LSML": LSML_Supervised(random_state=0),
    "SCML": SCML_Supervised(random_state=0),
    "RCA": RCA_Supervised(n_chunks=40, random_state=0),  # 106 training rows: at most 52 pairs
    "LFDA": LFDA(n_components=2),
    "Covariance": Covariance(),
}


def knn3(Z_train, Z_test):
    return KNeighborsClassifier(n_neighbors=3).fit(Z_train, y_train).score(Z_test, y_test)


scores = {"Euclidean": knn3(X_train, X_test)}
embedded = {"Euclidean": X_test}
for name, learner in learners.items():
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # Default iteration budgets on a tiny problem: the accuracy, not
        # the solver's convergence, is the point here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if name == "Covariance":
            learner.fit(X_train)
        else:
            learner.fit(X_train, y_train)
    print(f"{name:>10}: fit {time.perf_counter() - t0:.3f} s")
    scores[name] = knn3(learner.transform(X_train), learner.transform(X_test))
    embedded[name] = learner.transform(X_test)

# %%
# 3-NN accuracy on the held-out part
fig, ax = plt.subplots(figsize=(8, 3.8))
names = list(scores)
ax.bar(names, [scores[n] for n in names], color=["0.6"] + ["C0"] * (len(names) - 1))
ax.set_ylim(0.8, 1.005)
ax.set_ylabel("3-NN accuracy (held out)")
ax.tick_params(axis="x", rotation=30)
fig.tight_layout()

# %%
# The held-out points in four of the metrics
fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
for ax, name in zip(axes, ["Euclidean", "ITML", "LFDA", "RCA"]):
    Z = embedded[name]
    Z2 = PCA(n_components=2, random_state=0).fit_transform(Z) if Z.shape[1] > 2 else Z
    ax.scatter(Z2[:, 0], Z2[:, 1], c=y_test, cmap="viridis", s=12)
    ax.set_title(f"{name}: 3-NN {scores[name]:.2f}")
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()
