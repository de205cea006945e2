"""
Features in different units
===========================

The wine data as measured: proline in the hundreds to thousands, the other
columns near 1 (column ranges from 0.53 to 1,402).  From a start in these units the small
columns carry no part of the distances, so a learner's steps never reach
them.  With ``feature_scaling='auto'`` (the default) a learner whose data's
column ranges are more than 100 times apart works on the features divided by
their ranges and returns the metric of the raw features; the bars compare
the 3-NN accuracy on a held-out part with ``feature_scaling=None`` (the
data's own units, metric-learn's behaviour), with the default, and with the
same learner fitted after a ``StandardScaler``.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastmetric import NCA, LDML_Supervised, MMC_Supervised, SDML_Supervised

X, y = load_wine(return_X_y=True)
ranges = np.ptp(X, axis=0)
print(f"column ranges from {ranges.min():.2f} to {ranges.max():.0f}")
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                    random_state=0)


def knn3(model):
    """3-NN accuracy on the held-out part, in the metric of ``model``."""
    pipe = make_pipeline(model, KNeighborsClassifier(n_neighbors=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return pipe.fit(X_train, y_train).score(X_test, y_test)


learners = {"NCA": NCA, "LDML_Supervised": LDML_Supervised,
            "MMC_Supervised": MMC_Supervised, "SDML_Supervised": SDML_Supervised}
euclidean = KNeighborsClassifier(n_neighbors=3).fit(X_train, y_train).score(X_test, y_test)
settings = ["feature_scaling=None", "feature_scaling='auto'", "StandardScaler first"]
scores = {}
for name, cls in learners.items():
    fitted = cls(random_state=0).fit(X_train, y_train)
    scores[name] = [
        knn3(cls(random_state=0, feature_scaling=None)),
        knn3(cls(random_state=0)),
        knn3(make_pipeline(StandardScaler(), cls(random_state=0))),
    ]
    print(f"{name:16s}", "  ".join(f"{s:.3f}" for s in scores[name]),
          f"(scales from {fitted.feature_scales_.min():.3g} to {fitted.feature_scales_.max():.0f})")

fig, ax = plt.subplots(figsize=(8, 4))
width = 0.25
positions = np.arange(len(learners))
for k, label in enumerate(settings):
    ax.bar(positions + (k - 1) * width, [scores[name][k] for name in learners], width,
           label=label)
ax.axhline(euclidean, color="black", linestyle="--", linewidth=1,
           label=f"Euclidean distance ({euclidean:.3f})")
ax.set_xticks(positions, list(learners))
ax.set_ylim(0.5, 1.02)
ax.set_ylabel("3-NN accuracy, held-out 30 %")
ax.set_title("Raw wine: learners with and without feature scaling")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
plt.show()
