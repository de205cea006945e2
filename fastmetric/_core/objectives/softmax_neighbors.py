"""NCA's and MLKR's objective on fixed data: :class:`SoftmaxNeighborsProblem`,
prepared once and evaluated many times through the kernel
:func:`fastmetric.kernels.softmax_neighbors.softmax_neighbors_evaluate` (whose
module docstring gives the math and the cost).  This module checks the data,
centres it, sizes the chunks and keeps the work arrays between evaluations.
"""
import numpy as np

from fastmetric._core.threads import single_threaded_blas
from fastmetric.kernels.softmax_neighbors import (
    DEF_BUFFER_BYTES,
    DEF_MAX_CHUNK,
    DEF_MAX_GROUPS,
    DEF_MAX_PARTIALS,
    DEF_POINT_CHUNK,
    DEF_TILE,
    DEF_TILE_RATIO,
    softmax_neighbors_evaluate,
)

__all__ = ["SoftmaxNeighborsProblem", "default_chunk_size"]


class _Workspace:
    """Arrays one evaluation needs, kept between evaluations.

    Allocating them afresh would page-fault tens of MB per evaluation.
    """

    def __init__(self, n, d, k, dtype, n_groups, n_chunks):
        # Partial d x d products of M = X^T B: at most DEF_MAX_PARTIALS, at
        # most ~64 MB of them, blocks of at least DEF_POINT_CHUNK rows; all
        # fixed by n and d (not by the threads).
        itemsize = np.dtype(dtype).itemsize
        n_blocks = min(-(-n // DEF_POINT_CHUNK), DEF_MAX_PARTIALS,
                       max(1, (64 * 2**20) // (d * d * itemsize)))
        block = -(-n // n_blocks)
        self.key = (k, np.dtype(dtype))
        self.Z = np.empty((n, k), dtype=dtype)
        self.zn = np.empty(n, dtype=np.float64)
        self.A = np.empty((n, d), dtype=dtype)
        self.row_sums = np.empty(n, dtype=np.float64)
        self.col_sums = np.zeros((n_groups, n), dtype=np.float64)
        self.chunk_loss = np.zeros(n_chunks, dtype=np.float64)
        self.chunk_window = np.zeros(n_chunks, dtype=np.intp)
        self.ZL = np.empty((n, k + 2), dtype=np.float32)
        self.ZR = np.empty((n, k + 2), dtype=np.float32)
        self.block = block
        self.partials = np.empty(((n + block - 1) // block, d, d), dtype=dtype)
        self.no_offsets = np.zeros(1, dtype=np.intp)
        self.no_index = np.zeros(1, dtype=np.int32)


def default_chunk_size(n_samples, itemsize):
    """Rows per chunk: the thread-local chunk x n blocks stay near 24 MB.

    Per row of a chunk a thread holds n entries of the data's dtype, n
    float32 (screening), n int32 and n float64; at most 64 rows.
    """
    per_row = max(1, int(n_samples)) * (int(itemsize) + 4 + 4 + 8)
    return int(max(1, min(DEF_MAX_CHUNK, DEF_BUFFER_BYTES // per_row)))


class SoftmaxNeighborsProblem:
    """NCA's or MLKR's objective on fixed data, prepared for many evaluations.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        Validated points (at least 2).  They are centred once here (a copy
        in X's dtype): distances, hence the objective, do not change.
    labels : ndarray of shape (n_samples,), intp, optional
        Class indices (NCA).  Exactly one of ``labels`` and ``targets``.
    targets : ndarray of shape (n_samples,), float64, optional
        Real targets (MLKR).
    chunk_size : int, optional
        Rows per work unit (default: :func:`default_chunk_size`).  Each
        thread holds ``chunk_size x n_samples`` entries of X's dtype, of
        float32, of int32 and of float64.
    tiles : bool, default=True
        Allow the tile strategy (see the module docstring) once an
        evaluation has given nearest-neighbour hints.  It changes the speed
        only: the results are bitwise those of the row strategy.
    tile_size : int, optional
        Side of the tiles (default 512).

    Attributes
    ----------
    n_window_pairs : int or None
        Pairs inside the softmax window at the last evaluation.
    used_tiles : bool or None
        Whether the last evaluation found its candidates by tiles.
    team_threads : int
        Threads of fm_team.h's team for the main pass, 0 (the default) for
        OpenMP's threads; a fit sets it from the machine's load
        (:func:`fastmetric._core.threads.team_threads`).  The results do not
        depend on it.

    Notes
    -----
    :meth:`loss_grad` returns the objective to *minimise*: ``-sum_i p_i``
    for NCA, ``sum_i (yhat_i - y_i)^2`` for MLKR (the module docstring
    gives the math).  Results do not depend on the number of threads, nor
    on the evaluations before (the hints only change which superset of
    the window is screened).
    """

    def __init__(self, X, labels=None, targets=None, chunk_size=None, tiles=True,
                 tile_size=None):
        if (labels is None) == (targets is None):
            raise ValueError("give exactly one of labels (NCA) and targets (MLKR).")
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64) or X.ndim != 2:
            raise TypeError("X must be a 2-D float32 or float64 array.")
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"at least 2 samples are needed; got n_samples={n}.")
        if n >= 2**31 - 1:
            raise ValueError(f"n_samples={n} is too large (at most 2**31 - 2).")
        mean = X.mean(axis=0, dtype=np.float64)
        self.X = np.ascontiguousarray(X - mean.astype(X.dtype), dtype=X.dtype)
        self.dtype = X.dtype
        self.regression = targets is not None
        if self.regression:
            self.targets = np.ascontiguousarray(targets, dtype=np.float64)
            self.labels = np.zeros(1, dtype=np.intp)
            if self.targets.shape != (n,):
                raise ValueError(f"targets must have shape ({n},); got {self.targets.shape}.")
        else:
            self.labels = np.ascontiguousarray(labels, dtype=np.intp)
            self.targets = np.zeros(1, dtype=np.float64)
            if self.labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},); got {self.labels.shape}.")
        self.chunk_size = int(chunk_size) if chunk_size else default_chunk_size(
            n, X.dtype.itemsize)
        n_chunks = -(-n // self.chunk_size)
        self.chunks_per_group = -(-n_chunks // DEF_MAX_GROUPS)
        # The work units of the main pass (each adds its own column sums).
        self.n_groups = -(-n_chunks // self.chunks_per_group)
        self.tiles = bool(tiles)
        self.tile_size = int(tile_size) if tile_size else DEF_TILE
        self.n_samples = n
        self._nearest = np.full(n, -1, dtype=np.intp)
        self._workspace = None
        self.n_window_pairs = None
        self.used_tiles = None
        self.team_threads = 0

    def loss_grad(self, L, n_threads=1, compute_gradient=True, team_threads=None):
        """Objective and its gradient in L.

        Parameters
        ----------
        L : ndarray of shape (n_components, n_features)
        n_threads : int, default=1
        compute_gradient : bool, default=True
        team_threads : int, optional
            Run the main pass on fm_team.h's team of this many threads (for
            machines where other processes hold cores); default: the
            problem's ``team_threads`` attribute.  The same result.

        Returns
        -------
        loss : float
        grad : ndarray of shape (n_components, n_features), float64, or None
        """
        L64 = np.asarray(L, dtype=np.float64)
        if L64.ndim != 2 or L64.shape[1] != self.X.shape[1] or L64.shape[0] < 1:
            raise ValueError(
                f"L must have shape (n_components, {self.X.shape[1]}); got {L64.shape}.")
        Lw = np.ascontiguousarray(L64, dtype=self.dtype)
        n = self.n_samples
        # Tiles pay off when the window is small: try them when the last
        # evaluation's was, and every point has a hint.
        try_tiles = (
            self.tiles
            and self.n_window_pairs is not None
            and self.n_window_pairs * DEF_TILE_RATIO <= n * n
            and self._nearest.min() >= 0
        )
        k = Lw.shape[0]
        if self._workspace is None or self._workspace.key != (k, self.dtype):
            n_chunks = -(-n // self.chunk_size)
            self._workspace = _Workspace(n, self.X.shape[1], k, self.dtype,
                                         self.n_groups, n_chunks)
        with single_threaded_blas():
            loss, H, n_window, used = softmax_neighbors_evaluate(
                self.X, self.labels, self.targets, self.regression, Lw,
                compute_gradient, self._nearest, try_tiles, self.tile_size,
                self.chunk_size, self.chunks_per_group, int(n_threads), self._workspace,
                int(self.team_threads if team_threads is None else team_threads))
            self.n_window_pairs = n_window
            self.used_tiles = bool(used)
            if H is None:
                return float(loss), None
            # df/dL = 2 L H (the sign of NCA's -sum p_i is in the weights).
            grad = 2.0 * (L64 @ H)
        return float(loss), grad
