"""
ClusterLDML: the clustering round by round
==========================================

:class:`fastmetric.ClusterLDML` learns a metric without labels: it clusters
the data with k-means, learns one LDML metric per cluster from pairs inside
and across clusters, moves the global metric toward their combination, and
clusters again.  Here the digits' labels are used only to *score* each
round: the adjusted Rand index (ARI) between the clustering and the true
digits, recorded by a ``callback`` after every round.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score

from fastmetric import ClusterLDML

X, y = load_digits(return_X_y=True)
X, y = X[::2], y[::2]  # half the digits keep the example quick

aris = [adjusted_rand_score(y, KMeans(10, n_init=10, random_state=0).fit_predict(X))]


def record(estimator, round_, loss):
    # After each round labels_ holds the clustering in the new metric.
    aris.append(adjusted_rand_score(y, estimator.labels_))


model = ClusterLDML(n_clusters=10, max_rounds=4, tol=1.0, ldml_max_iter=15,
                    random_state=0, callback=record).fit(X)
for h in model.history_:
    print(f"round {h['round']}: ARI to the previous clustering {h['ari_previous']:.3f}, "
          f"mean cluster loss {h['loss']:.4f}")

# %%
# The ARI against the true digits, from Euclidean k-means (round 0) on.
fig, ax = plt.subplots(figsize=(6, 3.8))
ax.plot(np.arange(len(aris)), aris, "o-")
ax.set_xticks(np.arange(len(aris)))
ax.set_xlabel("round (0: Euclidean k-means)")
ax.set_ylabel("ARI against the true digits")
ax.set_title("ClusterLDML on the digits, without labels")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
