"""
ClusterLDML: the clustering round by round
==========================================

:class:`fastmetric.ClusterLDML` learns a metric without labels: it clusters
the data with k-means, learns one LDML metric per cluster from pairs inside
and across clusters, moves the global metric toward their combination, and
clusters again.  Here the digits' labels are used only to *score* each
round, by the adjusted Rand index (ARI) against the true digits, recorded by
a ``callback`` after every round:

* of ClusterLDML's own clustering (``labels_``), and
* of a fresh k-means (10 restarts) in the metric of that round, the measure
  of the Euclidean starting point (round 0).
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score

from fastmetric import ClusterLDML

X, y = load_digits(return_X_y=True)


def kmeans_ari(Z):
    return adjusted_rand_score(y, KMeans(10, n_init=10, random_state=0).fit_predict(Z))


fresh, own = [kmeans_ari(X)], []


def record(estimator, round_, loss):
    # After each round, components_ and labels_ hold the new metric and
    # ClusterLDML's clustering in it.
    fresh.append(kmeans_ari(estimator.transform(X)))
    own.append(adjusted_rand_score(y, estimator.labels_))


# tol=1.0 runs every round (the default stops once the clustering is stable).
model = ClusterLDML(n_clusters=10, max_rounds=5, tol=1.0, random_state=0,
                    callback=record).fit(X)
for h in model.history_:
    print(f"round {h['round']}: ARI to the previous clustering {h['ari_previous']:.3f}, "
          f"mean cluster LDML loss {h['loss']:.4f}")

# %%
# The ARI against the true digits, from Euclidean k-means (round 0) on.
fig, ax = plt.subplots(figsize=(6.5, 4))
rounds = np.arange(len(fresh))
ax.plot(rounds, fresh, "o-", label="k-means (10 restarts) in the round's metric")
ax.plot(rounds[1:], own, "s--", label="ClusterLDML's clustering (labels_)")
ax.set_xticks(rounds)
ax.set_xlabel("round (0: Euclidean)")
ax.set_ylabel("ARI against the true digits")
ax.set_title("ClusterLDML on the digits, without labels")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
