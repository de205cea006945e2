"""
NCA, LMNN and MLKR: embeddings before and after
===============================================

The neighbour-based learners shape the neighbourhoods directly.
:class:`fastmetric.NCA` and :class:`fastmetric.LMNN` learn from class
labels, :class:`fastmetric.MLKR` from a regression target.  Each learns a
two-component map here, so the learned space can be drawn as it is, next to
the first two principal axes of the data (the "before" picture).
"""

import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from fastmetric import LMNN, MLKR, NCA

X, y = load_digits(n_class=5, return_X_y=True)
X = StandardScaler().fit_transform(X[::2])
y = y[::2]

embeddings = [("PCA (before)", PCA(n_components=2, random_state=0).fit_transform(X))]
for name, learner, target in [
    ("NCA", NCA(n_components=2, max_iter=50, random_state=0), y),
    ("LMNN", LMNN(n_components=2, n_neighbors=3, max_iter=50, random_state=0), y),
    # MLKR regresses the digit's value: a one-dimensional order of the classes.
    ("MLKR", MLKR(n_components=2, max_iter=50, random_state=0), y.astype(float)),
]:
    with warnings.catch_warnings():
        # 50 iterations draw the picture; full convergence would change little.
        warnings.simplefilter("ignore", ConvergenceWarning)
        embeddings.append((name, learner.fit(X, target).transform(X)))

colours = plt.get_cmap("tab10")
fig, axes = plt.subplots(1, 4, figsize=(13, 3.9))
for ax, (name, Z) in zip(axes, embeddings):
    for digit in range(5):
        ax.scatter(Z[y == digit, 0], Z[y == digit, 1], color=colours(digit), s=8,
                   label=str(digit))
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, title="digit", loc="lower center", ncol=5, frameon=False)
fig.tight_layout(rect=(0, 0.12, 1, 1))
plt.show()
