"""Covariance statistics shared by the closed-form learners.

Covariance, RCA and LFDA estimate second moments and take (inverse) square
roots of them; this module holds what they share: the shrinkage intensity
(a number in [0, 1], checked by the learners' parameter constraints, or a
Ledoit-Wolf / OAS estimate, :func:`estimate_shrinkage`), shrunk covariances
(:func:`shrunk_inverse_covariance`, toward the diagonal, Covariance's metric; :func:`shrunk_toward_identity`,
toward a multiple of the identity, RCA's, from its within-chunk residuals
:func:`chunk_residuals`), constant features
(:func:`constant_features`), points centred and scaled for safe arithmetic
(:func:`as_float64_centred`), symmetric (inverse) square roots
(:func:`eigh_psd`, :func:`inv_sqrt`) and deterministic signs of the rows of
a map (:func:`fix_signs`).
"""
import numpy as np
import scipy.linalg

__all__ = ["MIN_SHRINKAGE", "SHRINKAGE_NAMES", "as_float64_centred", "chunk_residuals",
           "constant_features", "eigh_psd", "estimate_shrinkage", "fix_signs", "inv_sqrt",
           "shrunk_inverse_covariance", "shrunk_toward_identity"]

# Smallest shrinkage intensity actually used: with 0 a singular covariance
# has no inverse; 1e-10 keeps the metric finite while changing nothing
# measurable on well-conditioned data.
MIN_SHRINKAGE = 1e-10

SHRINKAGE_NAMES = ("ledoit_wolf", "oas")


def estimate_shrinkage(Z, rule):
    """Ledoit-Wolf or OAS intensity for centred samples ``Z`` (rows)."""
    from sklearn.covariance import ledoit_wolf_shrinkage, oas

    if Z.shape[0] < 2 or Z.shape[1] < 2:
        # One sample (or one feature): no information on the estimation
        # error; shrink fully toward the target.
        return 1.0 if Z.shape[1] >= 2 else 0.0
    if rule == "ledoit_wolf":
        a = ledoit_wolf_shrinkage(Z, assume_centered=True)
    else:
        a = oas(Z, assume_centered=True)[1]
    a = float(a)
    return min(max(a, 0.0), 1.0) if np.isfinite(a) else 1.0


def eigh_psd(S):
    """Eigen-decomposition of a symmetric PSD matrix, round-off negatives clipped."""
    w, V = scipy.linalg.eigh((S + S.T) * 0.5)
    return np.maximum(w, 0.0), V


def inv_sqrt(S, floor):
    """Symmetric ``S^{-1/2}`` with eigenvalues floored at ``floor`` (> 0)."""
    w, V = eigh_psd(S)
    return (V * (1.0 / np.sqrt(np.maximum(w, floor)))) @ V.T


def fix_signs(L):
    """Make the largest-magnitude entry of each row positive (deterministic output)."""
    if L.size == 0:
        return L
    idx = np.argmax(np.abs(L), axis=1)
    signs = np.sign(L[np.arange(L.shape[0]), idx])
    signs[signs == 0] = 1.0
    return L * signs[:, None]


def as_float64_centred(X):
    """``(Z, scale)``: float64 points centred and divided by ``scale > 0``.

    ``Z = (X - mean) / scale`` with ``max |Z| = 1`` (``scale = 1`` when all
    points coincide).  The closed forms are equivariant under a global
    scaling (``L`` scales by ``1 / scale``), and working on ``Z`` keeps
    squares and products far from overflow and underflow for data of any
    magnitude (1e-300 to 1e300).
    """
    X64 = np.asarray(X, dtype=np.float64)
    s0 = float(np.max(np.abs(X64))) if X64.size else 0.0
    if not (np.isfinite(s0) and s0 > 0):
        s0 = 1.0
    Y = X64 / s0
    Y -= Y.mean(axis=0)
    s1 = float(np.max(np.abs(Y))) if Y.size else 0.0
    if not s1 > 0:
        return Y, s0
    Y /= s1
    return Y, s0 * s1


def constant_features(X):
    """Boolean mask of the features without variation (at the input's precision).

    A feature is constant when its range (max - min) is at most 4 machine
    epsilons (of the input dtype) times its largest magnitude: all its values
    are equal up to the last bits.  (Testing the computed variance instead
    would be fooled by the rounding of the mean.)
    """
    X = np.asarray(X)
    eps = np.finfo(X.dtype if X.dtype.kind == "f" else np.float64).eps
    hi, lo = X.max(axis=0), X.min(axis=0)
    scale = np.maximum(np.abs(hi), np.abs(lo)).astype(np.float64)
    return (hi.astype(np.float64) - lo.astype(np.float64)) <= 4.0 * eps * scale


def shrunk_toward_identity(S, Z, shrinkage):
    """``(S_a, a, floor)``: ``S_a = (1 - a_eff) S + a_eff mu I``, mu = trace(S) / d.

    ``a`` is ``shrinkage``, or estimated (Ledoit-Wolf / OAS) from the
    samples ``Z`` whose scatter S is; ``a_eff = max(a, MIN_SHRINKAGE)``, and
    ``floor = a_eff mu`` bounds the eigenvalues of ``S_a`` from below (for
    :func:`inv_sqrt`).  RCA shrinks its within-chunk covariance this way.
    """
    d = S.shape[0]
    a = estimate_shrinkage(Z, shrinkage) if isinstance(shrinkage, str) else float(shrinkage)
    a_eff = max(a, MIN_SHRINKAGE)
    mu = np.trace(S) / d
    S_a = (1.0 - a_eff) * S
    S_a[np.diag_indices(d)] += a_eff * mu
    return S_a, a, a_eff * mu


def chunk_residuals(Xc, chunks):
    """Independent within-chunk residuals (Helmert contrasts) and chunked count.

    A chunk of s points gives s - 1 residuals ``r_j = sqrt(j / (j + 1))
    (mean(x_1..x_j) - x_{j+1})``: mutually orthogonal contrasts whose outer
    products sum to the chunk's scatter ``sum_i (x_i - m)(x_i - m)^T``.
    Under RCA's model (chunk members share a mean, with i.i.d. noise) they
    are i.i.d. samples of the noise, which is what shrinkage estimators
    expect.

    Returns
    -------
    R : ndarray (n_residuals, d)
    n_chunked : int
        Samples in a chunk (singletons included, as metric-learn counts them).
    n_multi : int
        Chunks with at least 2 samples.
    """
    idx = np.flatnonzero(chunks >= 0)
    d = Xc.shape[1]
    if idx.size == 0:
        return np.empty((0, d)), 0, 0
    ids = chunks[idx]
    order = np.argsort(ids, kind="stable")
    idx, ids = idx[order], ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sizes = np.diff(np.r_[starts, ids.shape[0]])
    P = Xc[idx]
    # Centre each chunk first: the residuals do not change, and the running
    # sums below stay near zero instead of growing along the whole array.
    means = np.add.reduceat(P, starts, axis=0) / sizes[:, None]
    P -= np.repeat(means, sizes, axis=0)
    pos = np.arange(ids.shape[0]) - np.repeat(starts, sizes)
    cs = np.cumsum(P, axis=0)
    base = np.zeros((starts.shape[0], d))
    base[1:] = cs[starts[1:] - 1]
    before = cs - P - np.repeat(base, sizes, axis=0)  # sum of earlier rows of the chunk
    sel = pos >= 1
    p = pos[sel].astype(np.float64)
    R = np.sqrt(p / (p + 1.0))[:, None] * (before[sel] / p[:, None] - P[sel])
    return R, int(idx.shape[0]), int(np.count_nonzero(sizes >= 2))


# Variances below this (in the unit of as_float64_centred) have lost
# precision to underflow; the features are measured in their own unit.
_SMALLEST_VARIANCE = np.finfo(np.float64).tiny * 2.0**52


def shrunk_inverse_covariance(X, shrinkage):
    """(L, C_a, a) of :class:`fastmetric.Covariance` for validated points X.

    ``C_a = (1 - a) C + a diag(C)``: the correlation matrix ``R`` shrunk
    toward the identity, ``R_a = (1 - a) R + a I``, and ``L = R_a^{-1/2}
    D^{-1/2}`` with ``D = diag(C)`` (so ``L^T L = C_a^{-1}``).  Constant
    features get the mean variance of the others and no correlation; with
    every feature constant the metric is the identity.  ``a`` is
    ``shrinkage``, or estimated (Ledoit-Wolf / OAS) from the standardised
    points.
    """
    n, d = X.shape
    Xc, unit = as_float64_centred(X)
    const = constant_features(X)
    Xc[:, const] = 0.0
    var = np.einsum("ij,ij->j", Xc, Xc) / (n - 1)
    live = ~const
    if not live.any():
        # Every feature constant: no spread to measure in; the identity.
        a = 1.0 if isinstance(shrinkage, str) else float(shrinkage)
        return np.eye(d), np.eye(d), a
    # A live feature far smaller than the largest one (1e-100 beside 1e100)
    # has squares below the float range in the common unit: its spread is
    # measured in its own unit instead (in the common unit its standard
    # deviation is still representable, its variance not).
    underflow = live & ~(var >= _SMALLEST_VARIANCE)
    typical = float(np.mean(var[live]))
    var = np.where(const, typical, var)
    scale = np.sqrt(var)
    if underflow.any():
        own = np.max(np.abs(Xc[:, underflow]), axis=0)
        Y = Xc[:, underflow] / own
        scale[underflow] = own * np.sqrt(np.einsum("ij,ij->j", Y, Y) / (n - 1))
    Z = Xc / scale
    Z[:, const] = 0.0
    R = (Z.T @ Z) / (n - 1)
    R[np.diag_indices(d)] = 1.0  # exact for live features; constant ones by rule
    if isinstance(shrinkage, str):
        a = estimate_shrinkage(Z[:, live], shrinkage) if live.sum() >= 2 else 1.0
    else:
        a = float(shrinkage)
    a_eff = max(a, MIN_SHRINKAGE)
    R_a = (1.0 - a_eff) * R
    R_a[np.diag_indices(d)] = 1.0  # (1 - a) * 1 + a
    L = inv_sqrt(R_a, a_eff) / (scale[None, :] * unit)
    with np.errstate(over="ignore"):  # only for data beyond 1e154: inf entries
        C_a = R_a * np.outer(scale * unit, scale * unit)
    return L, C_a, a
