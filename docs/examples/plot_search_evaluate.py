"""
Search and evaluate in the learned metric
=========================================

:class:`fastmetric.neighbors.MahalanobisNeighbors` searches the nearest
neighbours in a learned metric (exactly, ties to the lower index), and
:func:`fastmetric.metrics.evaluate` scores a metric by retrieval: each test
digit queries the training digits, and the scores say how many of the
returned neighbours are the same digit.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fastmetric import LFDA, NCA, MahalanobisNeighbors, evaluate

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                    random_state=0)
metrics = {
    "Euclidean": None,
    "NCA": NCA(n_components=16, max_iter=30, random_state=0).fit(X_train, y_train),
    "LFDA": LFDA(n_components=16).fit(X_train, y_train),
}

# %%
# The five nearest training digits of one test digit, in the NCA metric.
index = MahalanobisNeighbors(n_neighbors=5, metric=metrics["NCA"]).fit(X_train)
dist, ind = index.kneighbors(X_test[:1])
fig, axes = plt.subplots(1, 6, figsize=(9, 1.9))
axes[0].imshow(X_test[0].reshape(8, 8), cmap="gray_r")
axes[0].set_title("query")
for ax, j, d in zip(axes[1:], ind[0], dist[0]):
    ax.imshow(X_train[j].reshape(8, 8), cmap="gray_r")
    ax.set_title(f"d = {d:.1f}")
for ax in axes:
    ax.set_axis_off()

# %%
# Retrieval scores of each metric
scores = {name: evaluate(m, X_test, y_test, X_train, y_train, clustering=False)
          for name, m in metrics.items()}
for name, s in scores.items():
    print(name, {k: round(v, 3) for k, v in s.items()})

keys = ["precision@1", "precision@5", "r_precision", "map@r", "mrr"]
fig, ax = plt.subplots(figsize=(7, 3.6))
width = 0.8 / len(scores)
for i, (name, s) in enumerate(scores.items()):
    ax.bar(np.arange(len(keys)) + i * width, [s[k] for k in keys], width, label=name)
ax.set_xticks(np.arange(len(keys)) + width * (len(scores) - 1) / 2, keys)
ax.set_ylim(0, 1)
ax.legend()
ax.set_title("test digits querying the training digits")
fig.tight_layout()
plt.show()
