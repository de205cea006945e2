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

When the kernels cannot be imported (not built yet), ``setup`` raises
``NotImplementedError``, which asv reports as a skipped benchmark.
"""
import numpy as np

from ._shared import DTYPES, N_JOBS, SEED, OptionalImports, fit_quietly

IMPORTS = OptionalImports("kernels")
with IMPORTS:  # the suites are skipped when an extension is not built
    from fastmetric import LDML_Supervised
    from fastmetric._core.threads import effective_n_threads
    from fastmetric._core.distances import mahalanobis_distances, paired_mahalanobis_distances
    from fastmetric._core.objectives.pair_loss import PairLossProblem, ldml_loss
    from fastmetric._core.sampling import sample_pairs


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

TRANSFORM_SIZES = {
    "n=20000,d=k=32": (20_000, 32, 32),
    "n=200000,d=k=64": (200_000, 64, 64),
}


class _KernelSuite:
    """What the suites share: the parameter names, the timeout, and a
    ``setup`` that hands a generator seeded with ``SEED`` (the same inputs on
    every commit) and the numbers of ``sizes[size]`` to the suite's ``draw``."""

    param_names = ("size", "dtype", "n_jobs")
    timeout = 120

    def setup(self, size, *params):
        IMPORTS.require()
        self.draw(np.random.default_rng(SEED), *self.sizes[size], *params)


class MahalanobisDistances(_KernelSuite):
    """All pairwise distances ||L x_i - L y_j|| between two sets of rows."""

    sizes = PAIRWISE_SIZES
    params = (list(sizes), DTYPES, N_JOBS)

    def draw(self, rng, n, m, d, k, dtype, n_jobs):
        self.X = _points(rng, n, d, dtype)
        self.Y = _points(rng, m, d, dtype)
        self.L = _components(rng, k, d, dtype)

    def time_mahalanobis_distances(self, size, dtype, n_jobs):
        mahalanobis_distances(self.X, self.Y, components=self.L, n_jobs=n_jobs)

    def time_mahalanobis_distances_squared(self, size, dtype, n_jobs):
        mahalanobis_distances(self.X, self.Y, components=self.L, squared=True, n_jobs=n_jobs)

    def peakmem_mahalanobis_distances(self, size, dtype, n_jobs):
        mahalanobis_distances(self.X, self.Y, components=self.L, n_jobs=n_jobs)


class _PairedSuite(_KernelSuite):
    """The suites on index pairs: the points ``X``, the components ``L`` and
    the ``pairs`` of ``PAIRED_SIZES[size]`` and, with ``targets``, LDML
    targets ``y`` and a ``bias``."""

    sizes = PAIRED_SIZES
    params = (list(sizes), DTYPES, N_JOBS)
    targets = False

    def draw(self, rng, n, n_pairs, d, k, dtype, n_jobs):
        self.X = _points(rng, n, d, dtype)
        self.L = _components(rng, k, d, dtype)
        self.pairs = _random_pairs(rng, n, n_pairs)
        if self.targets:
            # Targets: about half similar pairs, as the sampler produces.
            self.y = (rng.random(n_pairs) < 0.5).astype(np.float64)
            # The bias near the typical squared distance 2k keeps p = sigmoid(b - D)
            # away from 0 and 1, where the loss is flat and uninformative.
            self.bias = 2.0 * k


class PairedMahalanobisDistances(_PairedSuite):
    """Distances ||L(x_a - x_b)|| over a list of index pairs."""

    def time_paired_mahalanobis_distances(self, size, dtype, n_jobs):
        paired_mahalanobis_distances(self.X, self.pairs, components=self.L, n_jobs=n_jobs)

    def peakmem_paired_mahalanobis_distances(self, size, dtype, n_jobs):
        paired_mahalanobis_distances(self.X, self.pairs, components=self.L, n_jobs=n_jobs)


class LDMLLoss(_PairedSuite):
    """LDML log-loss over pairs, with its gradient in L and in the bias."""

    targets = True

    def time_ldml_loss_and_gradient(self, size, dtype, n_jobs):
        ldml_loss(self.X, self.pairs, self.y, self.L, self.bias, n_jobs=n_jobs)

    def time_ldml_loss_only(self, size, dtype, n_jobs):
        ldml_loss(self.X, self.pairs, self.y, self.L, self.bias, return_gradient=False, n_jobs=n_jobs)

    def peakmem_ldml_loss_and_gradient(self, size, dtype, n_jobs):
        ldml_loss(self.X, self.pairs, self.y, self.L, self.bias, n_jobs=n_jobs)


class LDMLLossPrepared(_PairedSuite):
    """Repeated loss+gradient evaluation on fixed pairs (what learners do).

    ``PairLossProblem`` prepares the pair structure once in ``setup``; the
    benchmark times one ``loss_grad`` call, without validation overhead.
    """

    targets = True

    def draw(self, rng, n, n_pairs, d, k, dtype, n_jobs):
        super().draw(rng, n, n_pairs, d, k, dtype, n_jobs)
        self.problem = PairLossProblem(self.X, self.pairs[:, 0].copy(), self.pairs[:, 1].copy(),
                                       self.y)
        del self.X, self.pairs, self.y  # only the prepared problem is kept, as ever
        self.n_threads = effective_n_threads(n_jobs)

    def time_loss_grad(self, size, dtype, n_jobs):
        self.problem.loss_grad(self.L, self.bias, self.n_threads)

    def peakmem_loss_grad(self, size, dtype, n_jobs):
        self.problem.loss_grad(self.L, self.bias, self.n_threads)


class SamplePairs(_KernelSuite):
    """Drawing similar/dissimilar index pairs from class labels.

    The sampler only reads integer labels, so there is no floating dtype
    parameter; ``balanced`` (equal positives per class) replaces it.
    """

    sizes = SAMPLING_SIZES
    params = (list(sizes), [False, True], N_JOBS)
    param_names = ("size", "balanced", "n_jobs")

    def draw(self, rng, n, n_labels, n_pairs, balanced, n_jobs):
        self.labels = rng.integers(0, n_labels, size=n)
        self.n_positive = n_pairs // 2
        self.n_negative = n_pairs - n_pairs // 2

    def _sample(self, balanced, n_jobs):
        sample_pairs(self.labels, self.n_positive, self.n_negative,
                     balanced=balanced, random_state=0, n_jobs=n_jobs)

    def time_sample_pairs(self, size, balanced, n_jobs):
        self._sample(balanced, n_jobs)

    def peakmem_sample_pairs(self, size, balanced, n_jobs):
        self._sample(balanced, n_jobs)


class Transform(_KernelSuite):
    """A fitted learner's ``transform``: the rows mapped through L (the
    AVX-512 small-product kernel where the CPU has it, else BLAS; see
    ``fastmetric.show_config()``), input validation included."""

    sizes = TRANSFORM_SIZES
    params = (list(sizes), DTYPES, N_JOBS)

    def draw(self, rng, n, d, k, dtype, n_jobs):
        self.X = _points(rng, n, d, dtype)
        labels = rng.integers(0, 4, size=2000)
        # Two iterations do not converge: fit_quietly silences the warning.
        self.model = fit_quietly(LDML_Supervised(n_components=k, n_pairs=2000, max_iter=2,
                                                 random_state=0, n_jobs=n_jobs),
                                 self.X[:2000], labels)

    def time_transform(self, size, dtype, n_jobs):
        self.model.transform(self.X)

    def peakmem_transform(self, size, dtype, n_jobs):
        self.model.transform(self.X)
