"""asv benchmarks of fastmetric's kernels.

One suite per kernel, each with a ``time_`` and a ``peakmem_`` benchmark,
parametrised over a problem size, the floating dtype and ``n_jobs``.  Inputs
are made in ``setup`` from a fixed seed, so every commit is timed on the
same data.  Sizes are kept modest so that ``asv run --quick`` over the whole
file takes a couple of minutes on a 2-core machine; the full-size
comparison against numpy lives in ``benchmarks/compare_kernels.py``.

``peakmem_`` reports the peak resident memory of the benchmark process,
which includes the inputs built in ``setup``; compare it across commits,
not against the size of the output.

A kernel module that cannot be imported (not built yet) makes ``setup``
raise ``NotImplementedError``, which asv reports as a skipped benchmark.
"""
import importlib

import numpy as np

from ._shared import DTYPES, N_JOBS, SEED


def _load(module, name):
    """Return ``fastmetric.<module>.<name>``, or None when it cannot be imported."""
    try:
        return getattr(importlib.import_module("fastmetric." + module), name)
    except (ImportError, AttributeError):
        return None


mahalanobis_distances = _load("_core.distances", "mahalanobis_distances")
paired_mahalanobis_distances = _load("_core.distances", "paired_mahalanobis_distances")
ldml_loss = _load("_core.objectives.pair_loss", "ldml_loss")
PairLossProblem = _load("_core.objectives.pair_loss", "PairLossProblem")
sample_pairs = _load("_core.sampling", "sample_pairs")
effective_n_threads = _load("_core.threads", "effective_n_threads")


def _require(func, what):
    if func is None:
        raise NotImplementedError(f"fastmetric kernel {what} is not available in this build")


def _points(rng, n, d, dtype):
    return rng.standard_normal((n, d)).astype(dtype)


def _components(rng, k, d, dtype):
    # Scaled by 1/sqrt(d) so that ||L(x - y)||^2 stays O(k) for standard
    # normal points, whatever d: the log-loss then works on sensible values.
    return (rng.standard_normal((k, d)) / np.sqrt(d)).astype(dtype)


def _random_pairs(rng, n, n_pairs):
    a = rng.integers(0, n, size=n_pairs)
    # b = a + offset (mod n) with offset in [1, n): never a self pair.
    b = (a + rng.integers(1, n, size=n_pairs)) % n
    return np.ascontiguousarray(np.stack([a, b], axis=1).astype(np.intp))


# Sizes are given as strings so asv prints readable parameter values.
PAIRWISE_SIZES = {
    "1000x1000,d=k=32": (1000, 1000, 32, 32),
    "4000x1000,d=k=64": (4000, 1000, 64, 64),
}

PAIRED_SIZES = {
    "n=20000,P=100000,d=k=32": (20_000, 100_000, 32, 32),
    "n=100000,P=400000,d=k=64": (100_000, 400_000, 64, 64),
}

SAMPLING_SIZES = {
    "n=20000,10 labels,P=100000": (20_000, 10, 100_000),
    "n=200000,100 labels,P=1000000": (200_000, 100, 1_000_000),
}


class MahalanobisDistances:
    """All pairwise distances ||L x_i - L y_j|| between two sets of rows."""

    params = [list(PAIRWISE_SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    timeout = 120

    def setup(self, size, dtype, n_jobs):
        _require(mahalanobis_distances, "mahalanobis_distances")
        n, m, d, k = PAIRWISE_SIZES[size]
        rng = np.random.default_rng(SEED)
        self.X = _points(rng, n, d, dtype)
        self.Y = _points(rng, m, d, dtype)
        self.L = _components(rng, k, d, dtype)

    def time_mahalanobis_distances(self, size, dtype, n_jobs):
        mahalanobis_distances(self.X, self.Y, components=self.L, n_jobs=n_jobs)

    def time_mahalanobis_distances_squared(self, size, dtype, n_jobs):
        mahalanobis_distances(self.X, self.Y, components=self.L, squared=True, n_jobs=n_jobs)

    def peakmem_mahalanobis_distances(self, size, dtype, n_jobs):
        mahalanobis_distances(self.X, self.Y, components=self.L, n_jobs=n_jobs)


class PairedMahalanobisDistances:
    """Distances ||L(x_a - x_b)|| over a list of index pairs."""

    params = [list(PAIRED_SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    timeout = 120

    def setup(self, size, dtype, n_jobs):
        _require(paired_mahalanobis_distances, "paired_mahalanobis_distances")
        n, n_pairs, d, k = PAIRED_SIZES[size]
        rng = np.random.default_rng(SEED)
        self.X = _points(rng, n, d, dtype)
        self.L = _components(rng, k, d, dtype)
        self.pairs = _random_pairs(rng, n, n_pairs)

    def time_paired_mahalanobis_distances(self, size, dtype, n_jobs):
        paired_mahalanobis_distances(self.X, self.pairs, components=self.L, n_jobs=n_jobs)

    def peakmem_paired_mahalanobis_distances(self, size, dtype, n_jobs):
        paired_mahalanobis_distances(self.X, self.pairs, components=self.L, n_jobs=n_jobs)


class LDMLLoss:
    """LDML log-loss over pairs, with its gradient in L and in the bias."""

    params = [list(PAIRED_SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    timeout = 120

    def setup(self, size, dtype, n_jobs):
        _require(ldml_loss, "ldml_loss")
        n, n_pairs, d, k = PAIRED_SIZES[size]
        rng = np.random.default_rng(SEED)
        self.X = _points(rng, n, d, dtype)
        self.L = _components(rng, k, d, dtype)
        self.pairs = _random_pairs(rng, n, n_pairs)
        # Targets: about half similar pairs, as the sampler produces.
        self.y = (rng.random(n_pairs) < 0.5).astype(np.float64)
        # The bias near the typical squared distance 2k keeps p = sigmoid(b - D)
        # away from 0 and 1, where the loss is flat and uninformative.
        self.bias = 2.0 * k

    def time_ldml_loss_and_gradient(self, size, dtype, n_jobs):
        ldml_loss(self.X, self.pairs, self.y, self.L, self.bias, n_jobs=n_jobs)

    def time_ldml_loss_only(self, size, dtype, n_jobs):
        ldml_loss(self.X, self.pairs, self.y, self.L, self.bias, return_gradient=False, n_jobs=n_jobs)

    def peakmem_ldml_loss_and_gradient(self, size, dtype, n_jobs):
        ldml_loss(self.X, self.pairs, self.y, self.L, self.bias, n_jobs=n_jobs)


class LDMLLossPrepared:
    """Repeated loss+gradient evaluation on fixed pairs (what learners do).

    ``PairLossProblem`` prepares the pair structure once in ``setup``; the
    benchmark times one ``loss_grad`` call, without validation overhead.
    """

    params = [list(PAIRED_SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    timeout = 120

    def setup(self, size, dtype, n_jobs):
        _require(PairLossProblem, "_pair_loss.PairLossProblem")
        n, n_pairs, d, k = PAIRED_SIZES[size]
        rng = np.random.default_rng(SEED)
        X = _points(rng, n, d, dtype)
        self.L = _components(rng, k, d, dtype)
        pairs = _random_pairs(rng, n, n_pairs)
        y = (rng.random(n_pairs) < 0.5).astype(np.float64)
        self.problem = PairLossProblem(X, pairs[:, 0].copy(), pairs[:, 1].copy(), y)
        self.bias = 2.0 * k
        self.n_threads = effective_n_threads(n_jobs)

    def time_loss_grad(self, size, dtype, n_jobs):
        self.problem.loss_grad(self.L, self.bias, self.n_threads)

    def peakmem_loss_grad(self, size, dtype, n_jobs):
        self.problem.loss_grad(self.L, self.bias, self.n_threads)


class SamplePairs:
    """Drawing similar/dissimilar index pairs from class labels.

    The sampler only reads integer labels, so there is no floating dtype
    parameter; ``balanced`` (equal positives per class) replaces it.
    """

    params = [list(SAMPLING_SIZES), [False, True], N_JOBS]
    param_names = ["size", "balanced", "n_jobs"]
    timeout = 120

    def setup(self, size, balanced, n_jobs):
        _require(sample_pairs, "sample_pairs")
        n, n_labels, n_pairs = SAMPLING_SIZES[size]
        rng = np.random.default_rng(SEED)
        self.labels = rng.integers(0, n_labels, size=n)
        self.n_positive = n_pairs // 2
        self.n_negative = n_pairs - n_pairs // 2

    def time_sample_pairs(self, size, balanced, n_jobs):
        sample_pairs(
            self.labels, self.n_positive, self.n_negative,
            balanced=balanced, random_state=0, n_jobs=n_jobs,
        )

    def peakmem_sample_pairs(self, size, balanced, n_jobs):
        sample_pairs(
            self.labels, self.n_positive, self.n_negative,
            balanced=balanced, random_state=0, n_jobs=n_jobs,
        )


TRANSFORM_SIZES = {
    "n=20000,d=k=32": (20_000, 32, 32),
    "n=200000,d=k=64": (200_000, 64, 64),
}


class Transform:
    """A fitted learner's ``transform``: the rows mapped through L (the
    AVX-512 small-product kernel where the CPU has it, else BLAS; see
    ``fastmetric.show_config()``), input validation included."""

    params = [list(TRANSFORM_SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    timeout = 120

    def setup(self, size, dtype, n_jobs):
        import warnings

        try:
            from fastmetric import LDML_Supervised
        except ImportError as exc:
            raise NotImplementedError(f"fastmetric LDML_Supervised is not available: {exc}")
        n, d, k = TRANSFORM_SIZES[size]
        rng = np.random.default_rng(SEED)
        self.X = _points(rng, n, d, dtype)
        labels = rng.integers(0, 4, size=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # two iterations do not converge
            self.model = LDML_Supervised(n_components=k, n_pairs=2000, max_iter=2,
                                         random_state=0, n_jobs=n_jobs).fit(self.X[:2000], labels)

    def time_transform(self, size, dtype, n_jobs):
        self.model.transform(self.X)

    def peakmem_transform(self, size, dtype, n_jobs):
        self.model.transform(self.X)
