"""The performance page's plots, drawn from the figures of its tables.

Each function draws one figure for matplotlib's ``plot`` directive; the
numbers are copied from the tables on the page (docs/performance.md), which
also give the command that produced each of them.
"""
import matplotlib.pyplot as plt
import numpy as np

# (name, speed-up, goal or None, what it is compared with)
SPEEDUPS = [
    ("kernel: paired distances", 11.5, 10, "numpy"),
    ("kernel: LDML log-loss, whole call", 14.2, 10, "numpy"),
    ("kernel: LDML log-loss, prepared pairs", 37.8, 10, "numpy"),
    ("kernel: pair sampling", 29.5, 20, "numpy"),
    ("kernel: pairwise distances", 2.4, None, "numpy"),
    ("LDML fit", 15.4, 10, "numpy/scipy"),
    ("LDML_Supervised fit", 14.3, 10, "numpy/scipy"),
    ("NCA", 10.4, 10, "scikit-learn"),
    ("NCA", 14.9, None, "metric-learn"),
    ("MLKR", 10.0, None, "metric-learn"),
    ("LMNN", 75.0, None, "metric-learn"),
    ("ITML_Supervised", 22.5, 10, "metric-learn"),
    ("MMC_Supervised", 164.7, 50, "metric-learn"),
    ("LSML_Supervised", 245.3, 5, "metric-learn"),
    ("SCML_Supervised", 48.5, 20, "metric-learn"),
    ("RCA_Supervised", 3.7, None, "metric-learn"),
    ("LFDA", 1.8, None, "metric-learn"),
    ("Covariance", 2.5, None, "metric-learn"),
]

# A 10M-row memmap: rows, data size (GB), median epoch (s), peak RSS (GB).
MEMMAP = [
    (100_000, 0.026, 0.09, 0.19),
    (1_000_000, 0.256, 0.98, 0.47),
    (10_000_000, 2.560, 10.70, 3.40),
]

COLOURS = {"numpy": "C0", "numpy/scipy": "C1", "scikit-learn": "C2", "metric-learn": "C3"}


def speedups():
    """Horizontal bars: fastmetric's speed-up per kernel and learner."""
    fig, ax = plt.subplots(figsize=(8, 6.5))
    rows = SPEEDUPS[::-1]
    pos = np.arange(len(rows))
    ax.barh(pos, [r[1] for r in rows], color=[COLOURS[r[3]] for r in rows])
    for p, (_, value, goal, _) in zip(pos, rows):
        ax.text(value * 1.08, p, f"{value:g}x", va="center", fontsize=8)
        if goal is not None:
            ax.plot([goal, goal], [p - 0.4, p + 0.4], color="0.35", linewidth=2)
    ax.set_yticks(pos, [f"{r[0]} (vs {r[3]})" for r in rows], fontsize=9)
    ax.set_xscale("log")
    ax.set_xlim(1, 600)
    ax.axvline(1, color="0.2", linewidth=0.8)
    ax.set_xlabel("speed-up of fastmetric (times faster; grey tick: the issue's goal)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    ax.legend(handles, [f"against {k}" for k in COLOURS], loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()


def scaling():
    """Epoch time and peak memory of a memmapped fit against the rows."""
    n = np.array([r[0] for r in MEMMAP], dtype=float)
    data = np.array([r[1] for r in MEMMAP])
    epoch = np.array([r[2] for r in MEMMAP])
    peak = np.array([r[3] for r in MEMMAP])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.loglog(n, epoch, "o-", label="LDML_Supervised, adam, 2 threads")
    ax1.loglog(n, epoch[0] * n / n[0], ":", color="0.5", label="linear in n")
    ax1.set_xlabel("rows n (float32, d = 64, on a memmap)")
    ax1.set_ylabel("seconds per epoch (n_pairs = 2 n)")
    ax1.legend(fontsize=8)
    ax2.loglog(data, peak, "o-", label="peak RSS")
    ax2.loglog(data, 1.5 * data, ":", color="0.5", label="1.5 x the data (goal: below)")
    ax2.set_xlabel("data size (GB)")
    ax2.set_ylabel("peak resident memory (GB)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
