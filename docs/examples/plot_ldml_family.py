"""
LDML: the pair probability and the learned metric
=================================================

LDML models the probability that two points are similar as
``p = sigmoid(b - d^2)``, with ``d`` the learned distance and ``b`` a learned
bias.  Here a pair is labelled similar at random, the more often the closer
its first features are (with probability ``exp(-(x_0 - x'_0)^2 / 0.5)``); the
other features are noise.  We fit :class:`fastmetric.LDML` on
index pairs and draw

* the fitted curve ``p(d^2)`` over the share of similar pairs observed at
  each squared distance (the model is calibrated when they agree);
* the weight the learned map gives each feature;
* :class:`fastmetric.LDML_Supervised` on three labelled classes: the points
  before and after learning.
"""

# %%
# Pairs labelled, at random, by their first feature
# -------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np

from fastmetric import LDML, LDML_Supervised

rng = np.random.RandomState(0)
X = rng.randn(600, 5)
pairs = rng.randint(0, 600, size=(4000, 2))  # row indices into X
gap = X[pairs[:, 0], 0] - X[pairs[:, 1], 0]
y = np.where(rng.rand(len(pairs)) < np.exp(-gap**2 / 0.5), 1, -1)

ldml = LDML(preprocessor=X, random_state=0).fit(pairs, y)
d2 = ldml.pair_distance(pairs) ** 2
print(f"bias b = {ldml.bias_:.3f}, pair ROC AUC = {ldml.score(pairs, y):.3f}")

# %%
# The probability curve against the observed share of similar pairs
# ------------------------------------------------------------------
# Pairs are grouped into bins of squared distance (each bin holds a twentieth
# of the pairs closer than 3 b); in each bin, the share of similar pairs is
# what a calibrated model should predict.
near = d2 < 3 * ldml.bias_
edges = np.quantile(d2[near], np.linspace(0, 1, 21))
centres = 0.5 * (edges[1:] + edges[:-1])
which = np.clip(np.searchsorted(edges, d2, side="right") - 1, 0, 19)
observed = np.array([np.mean(y[near & (which == k)] == 1) for k in range(20)])
grid = np.linspace(0, 3 * ldml.bias_, 200)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
ax1.plot(grid, 1 / (1 + np.exp(-(ldml.bias_ - grid))), label="LDML: sigmoid(b - d²)")
ax1.plot(centres, observed, "o", label="observed share of similar pairs")
ax1.axvline(ldml.bias_, color="0.6", linestyle=":", label="d² = b (p = 1/2)")
ax1.set_xlabel("learned squared distance d²")
ax1.set_ylabel("probability that the pair is similar")
ax1.legend()
ax2.bar(np.arange(5), np.abs(ldml.components_).sum(axis=0))
ax2.set_xticks(np.arange(5), [f"feature {i}" for i in range(5)])
ax2.set_ylabel("column norm of |L|")
ax2.set_title("the metric attends to feature 0")
fig.tight_layout()

# %%
# LDML_Supervised: pairs drawn from class labels
# ----------------------------------------------
# Three classes differ along one direction hidden under two noisier ones.
n = 200
labels = np.repeat(np.arange(3), n)
Z = rng.randn(3 * n, 3) * [3.0, 3.0, 0.4]
Z[:, 2] += 1.2 * labels
model = LDML_Supervised(n_components=2, n_pairs=4000, random_state=0).fit(Z, labels)
embedded = model.transform(Z)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
ax1.scatter(Z[:, 0], Z[:, 1], c=labels, cmap="viridis", s=8)
ax1.set_title("before: the first two features")
ax2.scatter(embedded[:, 0], embedded[:, 1], c=labels, cmap="viridis", s=8)
ax2.set_title("after: LDML_Supervised, 2 components")
for ax in (ax1, ax2):
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()
